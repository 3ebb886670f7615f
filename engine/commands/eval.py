"""`traitrl eval`: the eval suite on any model: a run directory's Orbax checkpoint, an HF directory, a GGUF file.

A run directory (config.json + checkpoints/) is evaluated at its latest checkpoint (or --step): the base
model named in its config.json is built and the checkpoint's parameters restored into it (read-only:
a run that is still training is not disturbed). Results go to the run directory by default (so
`traitrl compare` sees them with the in-loop ones), else to runs/eval/<model name>.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

from engine.commands.common import check_finite, check_mesh
from engine.commands.main import Command
from engine.errors import UserError
from rl.graders.http_judge import JudgeConfig

Condition = Literal["plain", "harmful-steering", "helpful-steering", "after-attack"]


@dataclasses.dataclass(frozen=True)
class EvalCommand:
    """Run eval benchmarks on a model and write RUN/evals.jsonl plus per-item files."""

    model: str = ""  # a run directory (or its checkpoints/ or checkpoints/STEP), an HF directory, a .gguf, a known name
    benchmarks: tuple[str, ...] = ()  # registry names (default: the in-loop set; --list-benchmarks shows all)
    limit: int | None = None  # items per benchmark (a fixed subset; default all)
    conditions: tuple[Condition, ...] = ("plain",)  # adversarial personas / benign instructions / after an attack
    max_new_tokens: int | None = None  # greedy reply budget: None = each benchmark's own; a number caps them all
    batch_size: int = 64  # sequences per jitted call
    seed: int = 0  # picks item subsets and held-out pools
    out: Path | None = None  # output directory (default: the run directory, else runs/eval/<model name>)
    step: int | None = None  # checkpoint step of a run directory (default: the latest)
    benchmarks_dir: Path | None = None  # folder of the shipped public files (default: $TRAITRL_BENCHMARKS or the copy
    # in the package)
    benchmark_file: tuple[str, ...] = ()  # FORMAT=PATH: register (and run) user files; formats: anthropic-ab,
    # truthfulqa, xstest, healthbench, em-yaml, strongreject, harmbench, sycophancy-eval, records
    judge: JudgeConfig = JudgeConfig()  # OpenAI-compatible judge for judge-scored benchmarks (--judge.base-url, ...)
    mesh: tuple[int, int, int] | None = None  # (data, fsdp, tensor) device mesh; default one device
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype
    list_benchmarks: bool = False  # print the registry and exit

    def __post_init__(self):
        check_mesh(self.mesh)
        check_finite(self)
        if self.limit is not None and self.limit < 1:
            raise UserError(f"option '--limit': expected >= 1 items per benchmark, got {self.limit}")
        if (self.max_new_tokens is not None and self.max_new_tokens < 1) or self.batch_size < 1:
            raise UserError("options '--max-new-tokens' and '--batch-size' must be >= 1")


def make_judge(cfg: JudgeConfig):
    if not cfg.enabled:
        return None
    from evals.judges import HTTPChatJudge

    return HTTPChatJudge(cfg)


def run(cfg: EvalCommand) -> None:
    import jax

    from engine.commands.common import enable_compile_cache, load_any, on_mesh
    from evals import registry
    from evals.results import write_results
    from evals.suite import run_suite

    added = []
    for spec in cfg.benchmark_file:
        fmt, sep, path = spec.partition("=")
        if not sep or not path:
            raise UserError(f"option '--benchmark-file': expected FORMAT=PATH, got {spec!r}")
        added += registry.register_file(fmt.strip(), path.strip())
    if cfg.list_benchmarks:
        for name in registry.names():
            b = registry.get(name)
            print(f"{name:28s} {b.family:22s} {b.kind:9s} {b.description}")
        return
    if not cfg.model:
        raise UserError("option '--model': required (a run dir, HF dir, .gguf file or known name)")
    names = list(cfg.benchmarks) or None
    if added:
        names = list(dict.fromkeys((names or []) + added))
    for n in names or ():
        registry.get(n)  # an unknown name stops here, before any model is loaded
    judge = make_judge(cfg.judge)
    enable_compile_cache()
    with on_mesh(cfg.mesh) as mesh:
        policy, at, run_dir = load_any(cfg.model, cfg.step, mesh, cfg.dtype)
        if policy.tokenizer is None:
            raise UserError(f"{cfg.model}: has no tokenizer; evals need one (with a chat template)")
        results = run_suite(policy, names, limit=cfg.limit, conditions=cfg.conditions, judge=judge, seed=cfg.seed,
                            max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                            benchmarks_dir=cfg.benchmarks_dir)
    out_dir = cfg.out or run_dir or Path("runs/eval") / Path(str(cfg.model).rstrip("/")).name
    if jax.process_index() == 0:
        write_results(out_dir, at, results)
    print_results(results)
    print(f"wrote {len(results)} results (step {at}) to {out_dir}")


def print_results(results) -> None:
    from evals.conditions import selective_persistence

    print(f"{'benchmark':28s} {'condition':17s} {'score':>6s}  {'95% CI':15s} {'n':>5s}")
    for r in results:
        print(f"{r.benchmark:28s} {r.condition:17s} {r.score:6.3f}  [{r.ci_low:.3f}, {r.ci_high:.3f}] {r.n:5d}")
    if len({r.condition for r in results}) > 1:
        s = selective_persistence(results)
        shown = {k: v for k, v in s.items() if isinstance(v, float) and math.isfinite(v)}
        if shown:
            print("selective persistence: " + ", ".join(f"{k}={v:.3f}" for k, v in shown.items()))


COMMAND = Command(EvalCommand, run)
