"""Wiring every command shares: the run-directory guard, the mesh, building or restoring the policy.

Kept here once so `train`, `sft`, `eval`, `attack`, `serve` and the rest load models, check run
directories and restore checkpoints the same way (one restore path: `engine.checkpoint.Checkpointer`).

Commands validate everything they can before their first write (`check_run_dir`, `check_resume_config`,
`check_finite`, the inputs themselves): a command that fails validation leaves nothing behind, so the
corrected command can simply be run again.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax

from engine.errors import UserError
from engine.sharding import make_mesh

log = logging.getLogger("traitrl")

TINY = "tiny"  # the model name of a random tiny decoder with a toy tokenizer (smoke runs, tests)


def check_mesh(mesh: tuple[int, int, int] | None) -> None:
    if mesh is not None and (len(mesh) != 3 or any(m < 1 for m in mesh)):
        raise UserError(f"option 'mesh': expected three positive sizes (data, fsdp, tensor), got {mesh}")


@contextlib.contextmanager
def on_mesh(mesh: tuple[int, int, int] | None) -> Iterator[Any]:
    """The (data, fsdp, tensor) device mesh entered with `jax.set_mesh` (None = one device, no mesh)."""
    check_mesh(mesh)
    m = make_mesh(*mesh) if mesh is not None else None
    with jax.set_mesh(m) if m is not None else contextlib.nullcontext():
        yield m


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A fresh run needs an empty (or missing) directory; `--resume` needs an existing run."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.json").is_file():
            raise UserError(f"option '--resume': {run_dir} is not a run directory (no config.json); "
                            "drop --resume to start a new run there")
        return
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"{run_dir}: run directory is not empty (pass --resume to continue it, or another --run-dir)")


def check_finite(cfg: Any, prefix: str = "") -> None:
    """Every float of a config tree (nested dataclasses, tuples of floats included) is finite: one line naming the
    option otherwise. The sub-configs check their own ranges; this closes the gaps (an infinite temperature)."""
    for f in dataclasses.fields(cfg):
        value, name = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_finite(value, name + ".")
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"option '{flag(name)}': expected a finite number, got {v}")


def flag(name: str) -> str:
    """A dotted config field as the command-line option tyro gives it (`optim.learning_rate` ->
    `--optim.learning-rate`)."""
    return "--" + name.replace("_", "-")


def check_resume_config(run_dir: Path, now: dict, derived: Collection[str], steps: str,
                        ignore: Collection[str] = ()) -> None:
    """`--resume` continues the run its `config.json` describes: any option given differently is an error naming it.

    `now` is the resolved config as `config.json` holds it; `derived` the fields its `__post_init__` filled. A field
    derived in both the saved run and now follows other fields (which are compared) and is not compared itself:
    an explicit larger `steps` (the dotted name of the step count) extends the run, and the schedule and cadences
    derived from it follow; that is logged. `ignore` holds options that cannot change what the run computes
    (where outputs go, progress bars, the launch of a pod); a field the saved config lacks (added to traitrl since)
    takes its default.
    """
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict):
            raise ValueError(f"expected a JSON object, got {type(saved).__name__}")
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a traitrl run config ({type(e).__name__}: {e})") from None
    saved_derived, derived = set(saved.pop("derived", ())), set(derived)
    old, new = _flatten(saved), _flatten({k: v for k, v in now.items() if k != "derived"})
    skip = lambda key: any(key == i or key.startswith(i + ".") for i in ignore)  # noqa: E731
    for key in sorted(set(old) & set(new)):
        if key == steps or skip(key) or (key in saved_derived and key in derived):
            continue
        if old[key] != new[key]:
            given = "derived" if key in derived else "given"
            raise UserError(f"option '--resume': option '{flag(key)}' is {new[key]!r} ({given}) but the run in "
                            f"{run_dir} has {old[key]!r} (its config.json); a resumed run keeps its config, only "
                            f"'{flag(steps)}' may grow")
    if steps in old and steps in new and old[steps] != new[steps]:
        if new[steps] < old[steps]:
            raise UserError(f"option '{flag(steps)}': {new[steps]} is fewer than the {old[steps]} steps of the run "
                            f"in {run_dir}; a resumed run can only be extended")
        log.info("resume: extending the run from %d to %d steps (option '%s'); the fields derived from it follow",
                 old[steps], new[steps], flag(steps))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def as_json(cfg: Any) -> dict:
    """A config dataclass as the JSON data `config.json` holds (paths as strings, tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def enable_compile_cache(directory: str | Path | None = None) -> Path:
    """The persistent XLA compilation cache (default $TRAITRL_CACHE/jax_cache): programs compile once per machine."""
    root = Path(os.environ.get("TRAITRL_CACHE", Path.home() / ".cache" / "traitrl"))
    path = Path(directory) if directory is not None else root / "jax_cache"
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the environment's choice (tests share one per session)
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return path
    jax.config.update("jax_compilation_cache_dir", str(path.absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def _tiny_config(tok, dtype: str = "float32", remat: bool | str = False):
    import models

    return models.ModelConfig(family="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              attention_bias=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                              dtype=dtype, remat=remat)


def policy_config(model: str, dtype: str = "float32", remat: bool | str = False):
    """The ModelConfig `build_policy` would build, without loading weights (for the memory plan)."""
    import models

    if model != TINY:
        return models.load_config(model, dtype=dtype, remat=remat)
    from data.toy_tokenizer import build_toy_tokenizer

    return _tiny_config(build_toy_tokenizer(vocab_size=1024), dtype, remat)


def build_policy(model: str, mesh, dtype: str = "float32", seed: int = 0, remat: bool | str = False):
    """A known name, HF directory or .gguf file loaded on the mesh; "tiny" = a random tiny decoder + toy tokenizer."""
    import models

    if model != TINY:
        return models.load(model, mesh=mesh, dtype=dtype, remat=remat)
    from data.toy_tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer(vocab_size=1024)
    cfg = _tiny_config(tok, dtype, remat)
    return models.Policy(models.init(cfg, mesh=mesh, seed=seed), tok, cfg, "", mesh)


def find_run_dir(model: str) -> tuple[Path | None, int | None]:
    """(run dir, step) when `model` is a run dir, its checkpoints/ dir or one step's dir; else (None, None)."""
    p = Path(model)
    if p.parent.name == "checkpoints" and p.name.isdigit():
        return p.parent.parent, int(p.name)
    if p.name == "checkpoints":
        p = p.parent
    if (p / "checkpoints").is_dir() and (p / "config.json").is_file():
        return p, None
    return None, None


def restore_policy(run_dir: Path, step: int | None = None, mesh=None, dtype: str | None = None):
    """The policy of a training run at a checkpoint (default the newest that restores): base model + parameters.

    Read-only: a run that is still training is not disturbed.
    """
    from engine.checkpoint import Checkpointer
    from engine.train_state import OptimConfig, init_state

    run_dir = Path(run_dir)
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        base = cfg["model"]
        optim = OptimConfig(**{k: v for k, v in cfg["optim"].items() if k in {f.name for f in
                                                                             dataclasses.fields(OptimConfig)}})
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{run_dir / 'config.json'}: not a traitrl run config ({type(e).__name__}: {e})") from None
    policy = build_policy(base, mesh, dtype or cfg.get("dtype", "float32"), seed=cfg.get("data", {}).get("seed", 0))
    graphdef, state = init_state(policy.model, optim, 0, mesh)  # the saved pytree's structure and shardings
    ckpt = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        restored, _, step = ckpt.restore(state, step)
    finally:
        ckpt.close()
    from flax import nnx

    log.info("restored %s step %d onto %s", run_dir, step, base)
    return dataclasses.replace(policy, model=nnx.merge(graphdef, restored.params)), step


def load_any(model: str, step: int | None, mesh, dtype: str):
    """(policy, step, run dir or None) from a run directory (any checkpoint), an HF directory, a GGUF or a name."""
    import models

    run_dir, at = find_run_dir(model)
    if run_dir is not None:
        policy, at = restore_policy(run_dir, step if step is not None else at, mesh, dtype)
        return policy, at, run_dir
    if step is not None:
        raise UserError("option '--step' applies to a run directory's checkpoints only")
    return models.load(model, mesh=mesh, dtype=dtype), 0, None


def write_json(path: Path, obj: Any) -> None:
    """Writes JSON atomically (temp file, then rename): a killed process never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def write_config(run_dir: Path, config: dict, resume: bool) -> None:
    """`config.json` of a run. A resumed run rewrites it only when it changes (an extended step count, a moved run
    directory), so a resume that then finds no checkpoint to restore has changed nothing."""
    path = Path(run_dir) / "config.json"
    if resume:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and {**config, "resume": saved.get("resume")} == saved:
            return
    write_json(path, config)


def unset_derived(cfg: Any) -> Any:
    """The config with the fields its `__post_init__` derived set back to None, without running `__post_init__`.

    tyro's `default=` reads a preset's field values as the defaults of the flags: derived values there would
    become explicit ones and go stale (a 12-step schedule kept for `--learner.steps 500`). Configs record what
    they derived in `derived` (dotted names); this undoes exactly those.
    """
    out = copy.copy(cfg)
    for path in cfg.derived:
        _set(out, path.split("."))
    object.__setattr__(out, "_derived", ())
    return out


def _set(obj: Any, path: Sequence[str]) -> None:
    if len(path) == 1:
        object.__setattr__(obj, path[0], None)
        return
    sub = copy.copy(getattr(obj, path[0]))
    _set(sub, path[1:])
    object.__setattr__(obj, path[0], sub)
