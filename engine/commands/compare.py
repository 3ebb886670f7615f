"""`traitrl compare`: per-benchmark deltas (item-paired, cluster-robust intervals and tests, Holm-adjusted),
cross-domain matrix, persistence panel."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import tyro

from engine.commands.main import Command
from engine.errors import UserError
from evals.compare import CompareConfig


@dataclasses.dataclass(frozen=True)
class CompareCommand:
    """Compare runs: the first is the control, each later one is compared with it."""

    runs: Annotated[tuple[Path, ...], tyro.conf.Positional]  # run directories (control first)
    out: Path | None = None  # output directory for report.md, compare.json, plots (default: LAST_RUN/compare)
    step: int | None = None  # eval step read in every run (default: each run's latest)
    stats: Annotated[CompareConfig, tyro.conf.arg(name="")] = CompareConfig()  # resamples, seed, alpha

    def __post_init__(self):
        if len(self.runs) < 2:
            raise UserError(f"compare: expected two or more run directories (control first), got {len(self.runs)}")


def run(cfg: CompareCommand) -> None:
    from evals.compare import compare_runs

    report = compare_runs(cfg.runs, cfg.out, cfg.step, cfg.stats)
    for c in report.comparisons:
        s = c.summary()
        print(f"{c.treatment} vs {c.control}: improved on {s['improved']} of {s['n']} "
              f"(significant: {s['significant']}, Holm: {s['holm']}); worse on {s['worse']} "
              f"(significant: {s['significant_worse']})")
    print(f"wrote {report.out_dir / 'report.md'}")


COMMAND = Command(CompareCommand, run)
