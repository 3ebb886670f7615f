"""The in-loop eval hook: the suite at step 0 and every N steps, on the learner's mesh.

`EvalHook(cfg, run_dir, last_step)` is a learner hook (`hook(step, policy) -> metrics`): it runs `run_suite` on
the current weights, writes RUN/evals.jsonl and the per-item files of the step, and returns
`eval/<benchmark>/score|ci_low|ci_high` (plus `time/eval`, and retention summaries when steering
conditions run) for the learner to log to metrics.jsonl and TensorBoard.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import jax

from evals.config import EvalConfig
from evals.results import metrics_for, write_results

log = logging.getLogger(__name__)


class EvalHook:
    """Runs the eval suite when due (`last_step`: the run's final step, evaluated when `at_end`); the judge
    (optional) is for judge-scored benchmarks."""

    def __init__(self, cfg: EvalConfig, run_dir: str | Path | None, last_step: int = 0, judge=None):
        self.cfg, self.run_dir, self.judge = cfg, None if run_dir is None else Path(run_dir), judge
        self.last_step = last_step
        self.history: list[tuple[int, float]] = []  # (step, seconds) of each run

    def due(self, step: int, last_step: int) -> bool:
        every = self.cfg.every
        return bool(every and self.cfg.benchmarks) and (step % every == 0 or (self.cfg.at_end and step == last_step))

    def __call__(self, step: int, policy) -> dict[str, float]:
        from evals.conditions import selective_persistence
        from evals.suite import run_suite

        if not self.due(step, self.last_step):
            return {}
        t0 = time.perf_counter()
        cfg = self.cfg
        from evals import registry

        limits = {n: cfg.limit or registry.get(n).loop_items for n in cfg.benchmarks}
        results = run_suite(policy, cfg.benchmarks, limit=limits, conditions=cfg.conditions,
                            judge=self.judge, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                            batch_size=cfg.batch_size)
        seconds = time.perf_counter() - t0
        self.history.append((step, seconds))
        if self.run_dir is not None and jax.process_index() == 0:
            write_results(self.run_dir, step, results)
        metrics = {**metrics_for(results), "time/eval": seconds}
        if len(cfg.conditions) > 1:
            summary = selective_persistence(results)
            metrics.update({f"eval/persistence/{k}": v for k, v in summary.items()
                            if isinstance(v, float) and math.isfinite(v)})
        log.info("step %d evals (%.1fs): %s", step, seconds,
                 ", ".join(f"{r.benchmark}={r.score:.2f}" for r in results if r.condition == "plain"))
        return metrics
