"""`traitrl attack`: the harmful fine-tuning persistence probe (k SFT steps, then the evals as "after-attack")."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import tyro

from engine.commands.main import Command
from engine.errors import UserError
from evals.attack import AttackConfig


@dataclasses.dataclass(frozen=True)
class AttackCommand:
    """Harmful fine-tuning attack: k SFT steps on harmful demonstrations, then the evals again ("after-attack")."""

    model: str | None = None  # the policy to attack (HF directory, .gguf, or known name); results go to --out
    run: Path | None = None  # a training run directory: attacks RUN/hf and writes results into RUN (or --out)
    out: Path | None = None  # run directory for the results (required with --model; default with --run: the run)
    attack: Annotated[AttackConfig, tyro.conf.arg(name="")] = AttackConfig()  # steps, learning rate, data
    benchmarks: tuple[str, ...] = ()  # default: those the run already has plain results for, else the default set
    limit: int | None = None  # items per benchmark (a fixed subset)
    max_new_tokens: int | None = None  # greedy reply budget: None = each benchmark's own; a number caps them all
    save: bool = False  # also write the attacked model as an HF directory (OUT/attacked-hf)

    def __post_init__(self):
        if (self.model is None) == (self.run is None):
            raise UserError("attack: give exactly one of --model or --run")
        if self.model is not None and self.out is None:
            raise UserError("attack: --model needs --out (the run directory the results are written to)")


def run(cfg: AttackCommand) -> None:
    import models
    from evals.attack import CONDITION, format_table, run_attack

    if cfg.run is not None:
        if not (cfg.run / "hf").is_dir():
            raise UserError(f"{cfg.run}: no exported model (hf/ missing); train with export on, or use --model")
        source, out = cfg.run / "hf", cfg.out if cfg.out is not None else cfg.run
    else:
        source, out = cfg.model, cfg.out
    policy = models.load(str(source))
    res = run_attack(policy, out, cfg.attack, cfg.benchmarks or None, cfg.limit, progress=True,
                     max_new_tokens=cfg.max_new_tokens)
    print(format_table(res))
    if cfg.save:
        models.save_hf(policy, out / "attacked-hf")
    print(f"wrote {CONDITION} results at step {res.step} to {out}")


COMMAND = Command(AttackCommand, run)
