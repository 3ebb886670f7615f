"""Orbax checkpointing: async saves, keep-last-K plus best-by-metric, atomic, exact resume.

A checkpoint holds two items: `state` (the train state pytree: params, optimizer state, step, RNG
key data) and `extra` (JSON: data-iterator state, config echo, anything small). Orbax writes each
step into a temporary directory and renames it only when every item (and, multi-host, every
process) has finished, so a process killed mid-save leaves no directory that `latest_step` would
pick: resume always finds the last complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from pathlib import Path
from typing import Any, Literal

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as sdp

from engine.errors import UserError

log = logging.getLogger(__name__)

# Fault injection for the crash-safety tests (and for users checking their own storage): when set to a step,
# the process SIGKILLs itself right after that step's save has started, i.e. with the checkpoint half written.
KILL_IN_SAVE = "TRAITRL_KILL_IN_SAVE"


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """When and what to keep."""

    save_every: int | None = None  # save every N optimizer steps (0 = only when forced, at the end; None = a
    # quarter of the run, set by the command from its step count)
    keep: int = 3  # keep the K most recent checkpoints
    best_metric: str | None = None  # also keep the best checkpoint by this logged metric (e.g. eval/mean/score)
    best_mode: Literal["max", "min"] = "max"  # whether the best checkpoint has the largest or smallest best_metric
    async_save: bool = True  # write in a background thread while training continues

    def __post_init__(self):
        if self.save_every is not None and self.save_every < 0:
            raise UserError(f"checkpoint.save_every: expected >= 0, got {self.save_every}")
        if self.keep < 1:
            raise UserError(f"checkpoint.keep: expected >= 1, got {self.keep}")
        if self.best_mode not in ("max", "min"):
            raise UserError(f"checkpoint.best_mode: expected max or min, got {self.best_mode}")


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` with our two items and policies."""

    def __init__(self, directory: str | Path, cfg: CheckpointConfig = CheckpointConfig(), read_only: bool = False):
        """`read_only`: restore only (an eval of a run that may still be training); nothing is written or removed."""
        self.directory = Path(directory).absolute()
        self.cfg = cfg
        policies: list[Any] = [pp.LatestN(cfg.keep)]
        if cfg.best_metric is not None:
            metric = cfg.best_metric
            policies.append(pp.BestN(get_metric_fn=lambda m: m[metric], reverse=cfg.best_mode == "min", n=1,
                                     keep_checkpoints_without_metrics=False))
        saves = [sdp.FixedIntervalPolicy(cfg.save_every)] if cfg.save_every else []
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp.AnyPreservationPolicy(policies),
            save_decision_policy=sdp.AnySavePolicy(saves) if saves else None,
            enable_async_checkpointing=cfg.async_save,
            cleanup_tmp_directories=not read_only,  # leftovers of a killed save are removed on the next start
            read_only=read_only,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "extra"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, extra: dict, metrics: dict | None = None, force: bool = False) -> bool:
        """Starts a (possibly async) save; returns whether one was started."""
        if metrics is not None and self.cfg.best_metric is not None and self.cfg.best_metric not in metrics:
            metrics = None  # a checkpoint without the metric is kept only as one of the latest K
        saved = self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                 extra=ocp.args.JsonSave(extra)),
                                  metrics=metrics, force=force)
        if saved:
            log.info("checkpoint %d -> %s%s", step, self.directory, " (async)" if self.cfg.async_save else "")
            if os.environ.get(KILL_IN_SAVE) == str(step):  # fault injection: die while this save is in flight
                os.kill(os.getpid(), signal.SIGKILL)
        return saved

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
        """Restores `state` with the shardings / dtypes of `abstract_state` (arrays or ShapeDtypeStructs) and the
        `extra` JSON of checkpoint `step` (default: the latest)."""
        steps = self.all_steps()
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"{self.directory}: no complete checkpoint to resume from")
        if step not in steps:
            raise UserError(f"step {step}: no checkpoint at that step in {self.directory} (steps: {sorted(steps)})")
        target = jax.tree.map(_abstract, abstract_state)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                  extra=ocp.args.JsonRestore()))
        return out.state, out.extra, step

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _abstract(x):
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x
