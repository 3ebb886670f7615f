"""Run logs: one JSON object per logged step in `metrics.jsonl` (TensorBoard scalars when tensorboardX is installed).

Only process 0 writes. `truncate(step)` keeps the logs at one row per step across a resume: rows
logged after the restored step (they will be redone) are dropped from every JSONL log of the run, and
so is a last line a kill cut in half. A restart with no checkpoint truncates to nothing (`truncate(-1)`).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

LOGS = ("metrics.jsonl", "samples.jsonl", "evals.jsonl")  # the step-keyed JSONL logs of a run directory


class MetricsWriter:
    """One JSON object per logged step in `metrics.jsonl` (and TensorBoard scalars when available)."""

    def __init__(self, run_dir: Path | None):
        self.path = None if run_dir is None else Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if self.path is not None and jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(self.path.parent / "tb"))
            except ImportError:
                self.tb = None

    def truncate(self, step: int) -> None:
        """Drops rows logged after `step` (a resume from checkpoint `step` redoes them) and torn rows (a kill in
        the middle of a write): one row per step stays."""
        if self.path is None or jax.process_index() != 0:
            return
        for path in (self.path.with_name(name) for name in LOGS):
            if path.is_file():
                rows = path.read_text().splitlines()
                keep = [r for r in rows if _step(r) is not None and _step(r) <= step]
                if len(keep) != len(rows):
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text("".join(r + "\n" for r in keep))
                    tmp.replace(path)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        """A few completions per step in `samples.jsonl`: what the rewards were given, to read beside the curves."""
        if self.path is None or jax.process_index() != 0 or not samples:
            return
        with open(self.path.with_name("samples.jsonl"), "a") as fh:
            fh.writelines(json.dumps({"step": step, **s}) + "\n" for s in samples)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.path is None or jax.process_index() != 0:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()


def _step(row: str) -> int | None:
    """The step of a JSONL row; None for a blank or torn one."""
    try:
        obj = json.loads(row)
    except ValueError:
        return None
    return obj.get("step", 0) if isinstance(obj, dict) else None
