"""Orbax checkpointing: async saves, keep-last-K plus best-by-metric, atomic, exact resume.

A checkpoint holds two items: `state` (the train state pytree: params, optimizer state, step, RNG
key data) and `extra` (JSON: data-iterator state, config echo, anything small). Orbax writes each
step into a temporary directory and renames it only when every item (and, multi-host, every
process) has finished, so a process killed mid-save leaves no directory that `latest_step` would
pick: resume always finds the last complete checkpoint.

A complete checkpoint can still be damaged later (a truncated file, a deleted `_METADATA`, an
emptied `extra/metadata`): `restore()` without a step verifies the newest one by restoring it
(structure, metadata, finite values) and falls back to the newest one that restores, saying which
in one log line; the damaged ones are moved aside to `checkpoints.damaged/` (kept, not deleted) so
the run can save those steps again. A save refuses a state with a non-finite tensor.

Fault injection (the crash-safety tests, or users checking their own storage): `TRAITRL_FAULTS` is a
comma-separated list of POINT@STEP, e.g. `kill-step@3`:
  kill-save@N   SIGKILL right after checkpoint N's save has started (the checkpoint half written)
  kill-step@N   SIGKILL inside step N, after its rollout and rewards, before the update
  kill-eval@N   SIGKILL right after step N's hooks (evals) ran and its rows were logged, before its save
  nan-loss@N    the loss of step N is NaN (the learner poisons its advantages): the update must be skipped
`TRAITRL_KILL_IN_SAVE=N` is the older spelling of `kill-save@N`.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as sdp

from engine.errors import UserError
from engine.train_state import nonfinite_paths

log = logging.getLogger(__name__)

FAULTS = "TRAITRL_FAULTS"  # fault injection points, see the module docstring
KILL_IN_SAVE = "TRAITRL_KILL_IN_SAVE"  # older spelling of kill-save@N
FAULT_POINTS = ("kill-save", "kill-step", "kill-eval", "nan-loss")


def fault(point: str, step: int) -> bool:
    """Whether fault `point` is injected at `step` (`TRAITRL_FAULTS`, see the module docstring)."""
    if point == "kill-save" and os.environ.get(KILL_IN_SAVE) == str(step):
        return True
    spec = os.environ.get(FAULTS, "")
    return any(item.strip() == f"{point}@{step}" for item in spec.split(",")) if spec else False


def kill_if(point: str, step: int) -> None:
    """Fault injection: SIGKILLs this process (no cleanup, no flush: a real crash) when `point@step` is set."""
    if fault(point, step):
        log.warning("fault injection: %s@%d, killing the process", point, step)
        os.kill(os.getpid(), signal.SIGKILL)


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
        self.cfg, self.read_only = cfg, read_only
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
        """Starts a (possibly async) save; returns whether one was started. A non-finite tensor is refused."""
        if metrics is not None and self.cfg.best_metric is not None and self.cfg.best_metric not in metrics:
            metrics = None  # a checkpoint without the metric is kept only as one of the latest K
        if not (force or self.manager.should_save(step)):
            return False
        bad = nonfinite_paths(state)  # one small device -> host transfer per save
        if bad:
            raise UserError(f"checkpoint {step}: refusing to save non-finite values ({len(bad)} tensor(s), first "
                            f"{bad[0]}); the last checkpoint is {self.latest_step()}")
        saved = self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                 extra=ocp.args.JsonSave(extra)),
                                  metrics=metrics, force=force)
        if saved:
            log.info("checkpoint %d -> %s%s", step, self.directory, " (async)" if self.cfg.async_save else "")
            kill_if("kill-save", step)  # fault injection: die while this save is in flight
        return saved

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
        """Restores `state` with the shardings / dtypes of `abstract_state` (arrays or ShapeDtypeStructs) and the
        `extra` JSON of checkpoint `step`.

        Without a step: the newest checkpoint that restores. A damaged newer one is reported in one log line and
        moved aside (unless read-only); none restoring is a `UserError` listing why each failed.
        """
        steps = sorted(self.all_steps(), reverse=True)
        if step is not None:
            if step not in steps:
                raise UserError(f"step {step}: no checkpoint at that step in {self.directory} (steps: {sorted(steps)})")
            try:
                return self._restore(abstract_state, step)
            except Exception as e:  # noqa: BLE001 - Orbax / TensorStore fail in many types on a damaged file
                raise UserError(f"checkpoint {step} in {self.directory} does not restore: {_why(e)}") from None
        if not steps:
            raise UserError(f"{self.directory}: no complete checkpoint to resume from")
        failed: list[tuple[int, str]] = []
        for s in steps:
            try:
                out = self._restore(abstract_state, s)
            except Exception as e:  # noqa: BLE001 - Orbax / TensorStore fail in many types on a damaged file
                failed.append((s, _why(e)))
                out = None
            if out is None:
                _collect_failed_reads()
                continue
            if failed:
                moved = "" if self.read_only else f"; moved aside to {self._set_aside([f for f, _ in failed])}"
                log.warning("checkpoint %s does not restore (%s): resuming from checkpoint %d%s",
                            ", ".join(str(f) for f, _ in failed), "; ".join(f"{f}: {w}" for f, w in failed), s, moved)
            return out
        raise UserError(f"{self.directory}: no checkpoint restores (" + "; ".join(f"{f}: {w}" for f, w in failed) + ")")

    def _restore(self, abstract_state: Any, step: int) -> tuple[Any, dict, int]:
        """One checkpoint, verified: it restores onto the target's structure, its metadata names its step, and
        every tensor is finite (saves refuse non-finite ones, so one here means damage)."""
        target = jax.tree.map(_abstract, abstract_state)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                  extra=ocp.args.JsonRestore()))
        extra = out.extra
        if not isinstance(extra, dict):
            raise ValueError(f"extra/metadata: expected a JSON object, got {type(extra).__name__}")
        if extra.get("step", step) != step:
            raise ValueError(f"extra/metadata names step {extra.get('step')}")
        saved_step = getattr(out.state, "step", None)
        if saved_step is not None and int(np.asarray(jax.device_get(saved_step))) != step:
            raise ValueError(f"state.step is {int(np.asarray(jax.device_get(saved_step)))}")
        bad = nonfinite_paths(out.state)
        if bad:
            raise ValueError(f"non-finite values in {bad[0]}")
        return out.state, extra, step

    def _set_aside(self, steps: list[int]) -> Path:
        """Moves damaged step directories to `<checkpoints>.damaged/` (kept for inspection, out of Orbax's way)."""
        aside = self.directory.with_name(self.directory.name + ".damaged")
        if jax.process_index() == 0:
            aside.mkdir(exist_ok=True)
            for s in steps:
                dest, n = aside / str(s), 1
                while dest.exists():
                    dest, n = aside / f"{s}.{n}", n + 1
                shutil.move(str(self.directory / str(s)), str(dest))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("traitrl damaged checkpoints set aside")
        self.manager.reload()
        return aside

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _collect_failed_reads() -> None:
    """Collects what a failed restore left behind, now. Orbax reads a tensor once per device; when one read fails
    the others end in asyncio tasks nobody awaits, kept alive in reference cycles. Collected at some later moment
    they log a page of TensorStore spec ("Task exception was never retrieved") from whatever code runs then, and
    inside CPython 3.11's `ast.parse` that logging breaks the parse ("AST constructor recursion depth mismatch").
    The damage is already reported in one line, so they are collected here with asyncio's logger quiet."""
    quiet = logging.getLogger("asyncio")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        gc.collect()
    finally:
        quiet.setLevel(level)


def _why(e: BaseException) -> str:
    """An exception as a short one-line reason. Orbax wraps TensorStore's error (which names the file and the byte
    range) in a bare `Exception` with a page of spec: the wrapped one is the reason."""
    while type(e) is Exception and (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text[:200] + '...' if len(text) > 200 else text}"


def _abstract(x):
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x
