"""`traitrl eval`: the eval suite on any model: a run directory's Orbax checkpoint, an HF directory, a GGUF file.

A run directory (config.json + checkpoints/) is evaluated at its latest checkpoint (or --step): the base
model named in its config.json is built and the checkpoint's parameters restored into it (read-only:
a run that is still training is not disturbed). Results go to the run directory by default (so
`traitrl compare` sees them with the in-loop ones), else to runs/eval/<model name>.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from engine.errors import UserError

log = logging.getLogger(__name__)


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


def load_checkpoint(run_dir: Path, step: int | None = None, mesh=None, dtype: str | None = None):
    """The policy of a training run at a checkpoint step: base model from config.json + restored parameters."""
    import orbax.checkpoint as ocp
    from flax import nnx

    from engine.checkpoint import _abstract
    from engine.train import PRESETS, _policy
    from rl.train_step import OptimConfig, init_state

    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        base, optim = cfg["model"], OptimConfig(**cfg["optim"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{run_dir / 'config.json'}: not a traitrl run config ({type(e).__name__}: {e})") from None
    tc = dataclasses.replace(PRESETS["default"], model=base, dtype=dtype or cfg.get("dtype", "float32"))
    policy = _policy(tc, mesh)
    _, state = init_state(policy.model, optim, 0, mesh)  # the saved pytree's structure and shardings
    manager = ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "extra"),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    steps = sorted(manager.all_steps())
    if not steps:
        raise UserError(f"{run_dir / 'checkpoints'}: no complete checkpoint")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise UserError(f"--step {step}: no checkpoint at that step in {run_dir / 'checkpoints'} (steps: {steps})")
    import jax

    target = jax.tree.map(_abstract, state)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    nnx.update(policy.model, restored.state.params)
    manager.close()
    log.info("restored %s step %d onto %s", run_dir, step, base)
    return policy, step


def _judge(url: str | None, model: str | None, api_key_env: str, cache: str):
    if url is None:
        return None
    if not model:
        raise UserError("--judge-url needs --judge-model")
    from evals.judges import HTTPChatJudge
    from rl.graders.http_judge import JudgeConfig

    return HTTPChatJudge(JudgeConfig(base_url=url, model=model, api_key_env=api_key_env, cache_dir=cache))


def eval_cmd(model: str = "", benchmarks: tuple[str, ...] = (), limit: int | None = None,
             conditions: tuple[str, ...] = ("plain",), max_new_tokens: int = 64, batch_size: int = 64, seed: int = 0,
             out: Path | None = None, step: int | None = None, benchmarks_dir: Path | None = None,
             benchmark_file: tuple[str, ...] = (), judge_url: str | None = None, judge_model: str | None = None,
             judge_api_key_env: str = "", judge_cache: str = "", mesh: tuple[int, int, int] | None = None,
             dtype: str = "float32", list_benchmarks: bool = False) -> None:
    """Run eval benchmarks on a model and write RUN/evals.jsonl plus per-item files.

    Args:
        model: a run directory (or its checkpoints/ or checkpoints/STEP), an HF directory, a .gguf file, or a known name.
        benchmarks: registry names (default: the in-loop set; --list-benchmarks shows all).
        limit: items per benchmark (a fixed subset; default all).
        conditions: plain, harmful-steering (adversarial personas), helpful-steering (benign instructions).
        max_new_tokens: greedy reply budget for generation benchmarks.
        batch_size: sequences per jitted call.
        seed: picks item subsets and held-out pools.
        out: output directory (default: the run directory, else runs/eval/<model name>).
        step: checkpoint step of a run directory (default: the latest).
        benchmarks_dir: folder of the shipped public files (default $TRAITRL_BENCHMARKS or the copy in evals/benchmarks).
        benchmark_file: FORMAT=PATH (one or more): register (and run) user files; formats: anthropic-ab, truthfulqa,
            xstest, healthbench, em-yaml, strongreject, harmbench, sycophancy-eval, records.
        judge_url: OpenAI-compatible judge endpoint, for judge-scored benchmarks (em-first-plot, healthbench).
        judge_model: the judge's model name.
        judge_api_key_env: environment variable with the judge's bearer token.
        judge_cache: directory of the judge's verdict cache.
        mesh: (data, fsdp, tensor) device mesh; default one device.
        dtype: compute dtype (float32 | bfloat16).
        list_benchmarks: print the registry and exit.
    """
    from evals import registry

    added = []
    for spec in benchmark_file:
        fmt, sep, path = spec.partition("=")
        if not sep or not path:
            raise UserError(f"--benchmark-file: expected FORMAT=PATH, got {spec!r}")
        added += registry.register_file(fmt.strip(), path.strip())
    if list_benchmarks:
        for name in registry.names():
            b = registry.get(name)
            print(f"{name:28s} {b.family:22s} {b.kind:9s} {b.description}")
        return
    if not model:
        raise UserError("eval: --model is required (a run dir, HF dir, .gguf file or known name)")
    names = list(benchmarks) or None
    if added:
        names = list(dict.fromkeys((names or []) + added))
    results, out_dir, at = _run(model, names, limit, conditions, max_new_tokens, batch_size, seed, out, step,
                                benchmarks_dir, _judge(judge_url, judge_model, judge_api_key_env, judge_cache), mesh,
                                dtype)
    _print(results)
    print(f"wrote {len(results)} results (step {at}) to {out_dir}")


def _run(model, names, limit, conditions, max_new_tokens, batch_size, seed, out, step, benchmarks_dir, judge, mesh,
         dtype):
    import contextlib

    import jax

    from engine.sharding import make_mesh
    from evals.results import write_results
    from evals.suite import run_suite

    m = make_mesh(*mesh) if mesh is not None else None
    with jax.set_mesh(m) if m is not None else contextlib.nullcontext():
        run_dir, at = find_run_dir(model)
        if run_dir is not None:
            policy, at = load_checkpoint(run_dir, step if step is not None else at, m, dtype)
        else:
            if step is not None:
                raise UserError("--step applies to a run directory's checkpoints only")
            import models

            policy, at = models.load(model, mesh=m, dtype=dtype), 0
        if policy.tokenizer is None:
            raise UserError(f"{model}: has no tokenizer; evals need one (with a chat template)")
        results = run_suite(policy, names, limit=limit, conditions=conditions, judge=judge, seed=seed,
                            max_new_tokens=max_new_tokens, batch_size=batch_size, benchmarks_dir=benchmarks_dir)
    out_dir = out or run_dir or Path("runs/eval") / Path(str(model).rstrip("/")).name
    if jax.process_index() == 0:
        write_results(out_dir, at, results)
    return results, out_dir, at


def _print(results) -> None:
    from evals.steering import selective_persistence

    print(f"{'benchmark':28s} {'condition':17s} {'score':>6s}  {'95% CI':15s} {'n':>5s}")
    for r in results:
        print(f"{r.benchmark:28s} {r.condition:17s} {r.score:6.3f}  [{r.ci_low:.3f}, {r.ci_high:.3f}] {r.n:5d}")
    if len({r.condition for r in results}) > 1:
        s = selective_persistence(results)
        shown = {k: v for k, v in s.items() if isinstance(v, float) and math.isfinite(v)}
        if shown:
            print("selective persistence: " + ", ".join(f"{k}={v:.3f}" for k, v in shown.items()))
