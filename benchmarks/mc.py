"""Multiple-choice scoring throughput: the shared-prompt path vs one full row per option, same run, same items.

    python benchmarks/mc.py                         # SmolLM2-135M-Instruct, the first 64 TruthfulQA MC2 items
    python benchmarks/mc.py --items 128 --runs 5 --batch-size 64

Items: TruthfulQA's mc_task.json (../shared/benchmarks/truthfulqa), `mc2_targets`: the question as one user
turn, every answer (2-24 per question, ~7.5 on average) a text option, as evals/loaders.py builds
TruthfulQA items. Both paths score the same items through `evals.mc` with the same batch size (the eval
suite's default, 64):

  full_rows      `_full_row_option_logps`, the previous path: one row per option, prompt + option[:-1]
                 (the prompt re-runs for every option).
  shared_prompt  `option_logps`: each prompt prefilled once, every option scored from its KV cache.

Each path gets one warm-up call (trace + compile + one run) and then timed runs in alternating blocks, so
host noise hits both; compile = the seconds JAX reports for tracing, lowering and XLA compilation during
the warm-up call (jax.monitoring), so a noisy run does not leak into it. Prints items/s of each and the
ratio (of the median runs; of the best runs, the least disturbed; and of process CPU seconds, which other
tenants of a shared host disturb less), compile times, the distinct compiled shapes (counted from the jit
caches for the benchmark items, and planned without running for the whole file), the largest difference of
the two paths' log-probs, and the host's load average and CPU steal during the run (a busy or stolen host
understates both paths; the ratios are the numbers to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from evals import mc  # noqa: E402
from hostload import cpu_ticks, steal_pct  # noqa: E402  (benchmarks/hostload.py, beside this script)
from evals.items import Item  # noqa: E402
from models.tokenizer import pad_id  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "truthfulqa" / "mc_task.json"


def load_items(path: Path, n: int | None) -> list[Item]:
    rows = json.loads(path.read_text())
    items = []
    for i, row in enumerate(rows[:n]):
        targets = row["mc2_targets"]
        items.append(Item(f"truthfulqa-mc2/{i:04d}", [{"role": "user", "content": row["question"].strip()}],
                          options=tuple(targets), good=tuple(j for j, v in enumerate(targets.values()) if v)))
    return items


def planned_shapes(policy, items: list[Item], batch_size: int) -> dict[str, list]:
    """The distinct argument shapes each path's jitted functions get for `items` (what they compile), in NumPy."""
    prompts, options = mc._encode(policy, items)
    pad = pad_id(policy.tokenizer, policy.config)
    label = [mc._label_row(p, o) for p, o in zip(prompts, options)]
    text = [i for i, r in enumerate(label) if r is None]
    label_rows = [r for r in label if r is not None]
    full_rows = label_rows + [(prompts[i] + o[:-1], np.asarray(o, np.int32)[:, None]) for i in text for o in options[i]]

    def row_shapes(rows):  # _logps: (B, L, C, K)
        return {(a[0].shape + a[2].shape[1:]) for _, a in mc._row_batches(rows, batch_size, pad)} if rows else set()

    shared = set()
    if text:  # _prefill: (P, L); _option_logps: (P, L, O, C)
        for _, (ids_PxL, _), batches in mc._text_batches([prompts[i] for i in text], [options[i] for i in text],
                                                          batch_size, pad):
            shared.add(("prefill",) + ids_PxL.shape)
            shared |= {("options",) + ids_PxL.shape + a[0].shape for _, a in batches}
    return {"full_rows": sorted(row_shapes(full_rows)),
            "shared_prompt": sorted(("label",) + s for s in row_shapes(label_rows)) + sorted(shared, key=str)}


_compile_s: dict[str, float] = {}


def _on_event(event: str, duration: float, **kwargs) -> None:
    """Tracing, lowering and XLA compilation seconds, by event (jax.monitoring)."""
    if event in ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                 "/jax/core/compile/backend_compile_duration"):
        _compile_s[event] = _compile_s.get(event, 0.0) + duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def timed(fn, runs: int, cpu: list[float]) -> list[float]:
    """Wall seconds per run; appends process CPU seconds (all threads) per run to `cpu`."""
    out = []
    for _ in range(runs):
        c0, t0 = os.times(), time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        c1 = os.times()
        cpu.append(c1.user + c1.system - c0.user - c0.system)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", type=Path, default=DATA, help="TruthfulQA mc_task.json")
    ap.add_argument("--items", type=int, default=64, help="the first N items of the file (a fixed set)")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per forward (evals.suite's default)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per path (after one warm-up call)")
    args = ap.parse_args()

    load_before, ticks0 = os.getloadavg(), cpu_ticks()
    t0 = time.perf_counter()
    policy = models.load(args.model)
    load_s = time.perf_counter() - t0
    items = load_items(args.data, args.items)
    bs = args.batch_size
    plan = planned_shapes(policy, items, bs)
    all_items = load_items(args.data, None)
    plan_all = planned_shapes(policy, all_items, bs)

    paths = {"full_rows": lambda: mc._full_row_option_logps(policy, items, bs),
             "shared_prompt": lambda: mc.option_logps(policy, items, bs)}
    jits = (mc._logps, mc._prefill, mc._option_logps)
    first_s, compiled, compile_s, out = {}, {}, {}, {}
    for name, fn in paths.items():
        before = sum(f._cache_size() for f in jits)
        _compile_s.clear()
        t = time.perf_counter()
        out[name] = fn()
        first_s[name] = time.perf_counter() - t
        compiled[name] = sum(f._cache_size() for f in jits) - before
        compile_s[name] = sum(_compile_s.values())
    times, cpu = {k: [] for k in paths}, {k: [] for k in paths}
    half = max(1, args.runs // 2)
    while min(len(v) for v in times.values()) < args.runs:  # alternating blocks: noise hits both paths
        for k, fn in paths.items():
            times[k] += timed(fn, min(half, args.runs - len(times[k])), cpu[k])
    ticks1 = cpu_ticks()
    # Steal: the share of this VM's CPU time the hypervisor gave to other tenants during the run.
    steal = steal_pct(ticks0, ticks1)

    pairs = list(zip(out["full_rows"], out["shared_prompt"], strict=True))
    diff = max(float(np.max(np.abs(a - b))) for a, b in pairs)
    rel = max(float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30))) for a, b in pairs)
    mc2 = {k: float(np.mean([r.score for r in mc.score_from_logps(items, v, "mc2")])) for k, v in out.items()}
    n_opts = [len(it.options) for it in items]
    res = {
        "model": args.model, "items": len(items), "options": sum(n_opts),
        "options_per_item": [min(n_opts), round(float(np.mean(n_opts)), 2), max(n_opts)], "batch_size": bs,
        "device": str(jax.devices()[0].device_kind), "jax": jax.__version__, "load_s": round(load_s, 2),
        "all_items": len(all_items), "max_abs_logp_diff": float(f"{diff:.3g}"),
        "max_rel_logp_diff": float(f"{rel:.3g}"), "mc2_score": {k: round(v, 5) for k, v in mc2.items()},
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "steal_pct": None if steal is None else round(steal, 1),
    }
    for k, ts in times.items():
        med = statistics.median(ts)
        res[k] = {"items_per_s": round(len(items) / med, 3), "median_s": round(med, 3), "min_s": round(min(ts), 3),
                  "compile_s": round(compile_s[k], 2), "first_call_s": round(first_s[k], 2),
                  "compiled_programs": compiled[k],
                  "shapes": len(plan[k]), "shapes_all_items": len(plan_all[k]),
                  "cores_used": round(sum(cpu[k]) / sum(ts), 2), "cpu_s_per_run": round(sum(cpu[k]) / len(ts), 2)}
    res["ratio_items_per_s"] = round(res["shared_prompt"]["items_per_s"] / res["full_rows"]["items_per_s"], 2)
    res["ratio_best_runs"] = round(res["full_rows"]["min_s"] / res["shared_prompt"]["min_s"], 2)  # least disturbed
    # Process CPU seconds per run (all threads): on a shared host, less sensitive to other tenants than wall time.
    res["ratio_cpu_s"] = round(sum(cpu["full_rows"]) / sum(cpu["shared_prompt"]), 2)
    res["planned_shapes"] = {k: [list(s) for s in v] for k, v in plan.items()}
    res["planned_shapes_all_items"] = {k: [list(s) for s in v] for k, v in plan_all.items()}

    print(f"{len(items)} TruthfulQA MC2 items, {sum(n_opts)} options, batch size {bs}, {res['device']}")
    for k in paths:
        r = res[k]
        print(f"{k:14s} {r['items_per_s']:8.2f} items/s  (median {r['median_s']:.2f} s, min {r['min_s']:.2f} s, "
              f"{r['cores_used']} cores)  compile {r['compile_s']:.1f} s, {r['compiled_programs']} programs "
              f"({r['shapes_all_items']} shapes for all {len(all_items)} items)")
    print(f"ratio shared_prompt / full_rows: {res['ratio_items_per_s']}x of medians, "
          f"{res['ratio_best_runs']}x of best runs, {res['ratio_cpu_s']}x of process CPU seconds\n"
          f"max |logp diff| {res['max_abs_logp_diff']} (relative {res['max_rel_logp_diff']})   mc2 {res['mc2_score']}")
    print(f"load avg before {res['loadavg_before']} after {res['loadavg_after']}   steal {res['steal_pct']}%")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
