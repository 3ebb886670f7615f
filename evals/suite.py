"""`run_suite`: a set of benchmarks under a set of conditions, batched across all of them.

All multiple-choice rows of the suite (every benchmark, every condition) go through one batched
forward pass, and all prompts to complete go through one greedy decoding call (per token budget),
so the suite costs a few large jitted calls rather than one small call per benchmark: that is what
keeps the in-loop evals cheap. Each generation benchmark decodes to its own reply budget
(`Benchmark.max_new_tokens`, sized to its reference answers, evals/registry.py BUDGETS); benchmarks with
the same budget share one decoding call, and `max_new_tokens` caps every budget. Conditions: "plain";
"harmful-steering" (adversarial personas, every benchmark); "helpful-steering" (benign instructions, generation benchmarks only, since a
log-prob answer cannot follow a format instruction): trait scores there leave out replies asked to be
in another language (the graders read English), and an extra "instruction-following" result scores
the rule checks of every instructed reply; "after-attack": plain prompts, labelled for `traitrl attack`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.errors import UserError
from evals import generation, mc, registry
from evals.config import DEFAULT_BENCHMARKS
from evals.items import Item
from evals.results import CONDITIONS, BenchmarkResult, summarize
from evals.conditions import INSTRUCTIONS, apply_condition, instruction_results

log = logging.getLogger(__name__)


def _with_clusters(results: Sequence, items: Sequence[Item]) -> list:
    """Item results carry their item's cluster (a scorer may set its own, e.g. a merged fairness pair)."""
    cluster = {it.id: it.cluster for it in items}
    return [r if r.cluster is not None or cluster.get(r.id) is None else dataclasses.replace(r, cluster=cluster[r.id])
            for r in results]


def _applies(b: registry.Benchmark, condition: str) -> bool:
    if b.conditions is not None:
        return condition in b.conditions
    return not (b.kind == "mc" and condition == "helpful-steering")


def budget(b: registry.Benchmark, cap: int | None) -> int:
    """The reply budget a generation benchmark decodes to: its own, capped by `cap` (None = no cap)."""
    return b.max_new_tokens if cap is None else min(b.max_new_tokens, cap)


def run_suite(policy, benchmarks: Sequence[str] | None = None, *, limit: int | Mapping[str, int] | None = None,
              conditions: Sequence[str] = ("plain",), judge=None, seed: int = 0,
              max_new_tokens: int | None = None, batch_size: int = 64,
              benchmarks_dir: str | Path | None = None) -> list[BenchmarkResult]:
    """Scores `policy` on `benchmarks` (None = the in-loop default set) under each condition.

    limit: items per benchmark (a fixed subset for the seed; a mapping gives each benchmark its own, a benchmark
    it leaves out gets all its items); judge: needed by judge-scored benchmarks
    (`complete` for 0-100 / XSTest classes, `judge` for rubrics); max_new_tokens: None = every generation
    benchmark decodes to its own budget (`Benchmark.max_new_tokens`), an int caps them all (e.g. to keep
    in-loop evals cheap: replies cut below a benchmark's budget may lose score, `truncated` in the item
    extras says which). Returns one result per (benchmark, condition) that had any applicable item, in
    benchmark order then condition order.
    """
    names = list(DEFAULT_BENCHMARKS if benchmarks is None else dict.fromkeys(benchmarks))
    conditions = list(dict.fromkeys(conditions))
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise UserError(f"conditions: expected some of {', '.join(CONDITIONS)}, got {conditions}")
    limits = dict(limit) if isinstance(limit, Mapping) else {n: limit for n in names}
    bad_limit = [v for v in limits.values() if v is not None and v < 1]
    if bad_limit:
        raise UserError(f"limit: expected >= 1 items per benchmark, got {bad_limit[0]}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise UserError(f"max_new_tokens: expected >= 1 (or None: each benchmark's own budget), got {max_new_tokens}")
    bms = [registry.get(n) for n in names]
    for b in bms:
        if b.needs_judge and judge is None:
            raise UserError(f"benchmark {b.name} needs a judge (traitrl eval --judge-url URL --judge-model NAME)")
    t0 = time.perf_counter()
    where = None if benchmarks_dir is None else Path(benchmarks_dir)
    tasks: list[tuple[registry.Benchmark, str, list[Item]]] = []
    for b in bms:
        items = b.load(registry.LoadContext(limits.get(b.name), seed, where))
        tasks.extend((b, c, apply_condition(items, c)) for c in conditions if _applies(b, c))
    t_load = time.perf_counter()

    scored: dict[int, list] = {}
    mc_tasks = [k for k, (b, _, _) in enumerate(tasks) if b.kind == "mc"]
    if mc_tasks:
        flat = [it for k in mc_tasks for it in tasks[k][2]]
        logps = mc.option_logps(policy, flat, batch_size)
        start = 0
        for k in mc_tasks:
            n = len(tasks[k][2])
            b, items = tasks[k][0], tasks[k][2]
            res = mc.score_from_logps(items, logps[start:start + n], b.mode)
            if b.annotate is not None:
                res = [dataclasses.replace(r, extra={**r.extra, **b.annotate(it, r)}) for it, r in zip(items, res)]
            scored[k] = res
            start += n
    t_mc = time.perf_counter()

    gen_tasks = [k for k, (b, _, _) in enumerate(tasks) if b.kind == "generate"]
    budgets: dict[int, list[int]] = {}  # one decoding call per distinct budget
    for k in gen_tasks:
        budgets.setdefault(budget(tasks[k][0], max_new_tokens), []).append(k)
    completions: dict[int, list] = {}
    for T, ks in budgets.items():
        flat = [it for k in ks for it in tasks[k][2]]
        follow = [tasks[k][0].followup(it) if tasks[k][0].followup else None for k in ks for it in tasks[k][2]]
        outs = generation.complete(policy, flat, T, batch_size, follow)
        start = 0
        for k in ks:
            completions[k] = outs[start:start + len(tasks[k][2])]
            start += len(tasks[k][2])
    follow_items: list = []
    for k in gen_tasks:
        b, cond, items = tasks[k]
        comps = completions[k]
        if cond == "helpful-steering":
            follow_items += instruction_results(b.name, items, comps)
            keep = [i for i, it in enumerate(items) if not INSTRUCTIONS[it.data["instruction"]].language]
            items, comps = [items[i] for i in keep], [comps[i] for i in keep]
        scored[k] = [r for r in b.score(items, comps, judge) if r is not None] if items else []
    t_gen = time.perf_counter()

    results = []
    for k, (b, cond, items) in enumerate(tasks):
        r = summarize(b.name, b.family, cond, _with_clusters(scored[k], items))
        if r is None:
            log.warning("%s (%s): no applicable items, no result", b.name, cond)
        else:
            results.append(r)
    if follow_items:
        results.append(summarize("instruction-following", "helpful steerability", "helpful-steering", follow_items))
    log.info("evals: %d results in %.1fs (load %.1fs, multiple choice %.1fs, generation %.1fs at budgets %s)",
             len(results), t_gen - t0, t_load - t0, t_mc - t_load, t_gen - t_mc, sorted(budgets))
    return results
