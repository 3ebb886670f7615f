"""Every shipped benchmark on one model: family, source, n items, clusters, score, 95% CI half-width, MDE and cost.

    python benchmarks/eval_table.py [--model smollm2-135m-instruct] [--limit 100] [--out table.json]

For each benchmark the whole pool is loaded (n items, distinct clusters), then a fixed subset of `--limit` items
is scored twice: a first call (compilation of its shapes), then the timed call, which gives seconds per 100
items. From the subset's scores: the cluster-robust standard error of the mean, scaled to the full pool
(SE_full = SE_subset * sqrt(clusters_subset / clusters_full)), the 95% CI half-width 1.96 * SE_full at this
model's score, and the minimum detectable effect of a paired two-arm comparison at 80% power, two-sided 0.05:
MDE = 2.80 * SE_full * sqrt(2 * (1 - rho)), with rho = 0.5 the assumed correlation of an item's score across the
two arms (so MDE = 2.80 * SE_full; a real comparison's MDE is printed by `traitrl compare`). Prints a Markdown
table, the host's load average and CPU steal; `--out` keeps the rows as JSON. Judge-scored benchmarks and user
files are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from hostload import cpu_ticks, steal_pct  # benchmarks/hostload.py, beside this script

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, not benchmarks/data.py


def _se(scores: np.ndarray, idx: np.ndarray) -> float:
    c = int(idx.max()) + 1
    if c < 2:
        return math.nan
    resid = np.bincount(idx, scores, c) - scores.mean() * np.bincount(idx, minlength=c)
    return float(math.sqrt(c / (c - 1) * np.sum(resid**2)) / scores.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--limit", type=int, default=100, help="items scored per benchmark")
    ap.add_argument("--benchmarks", nargs="*", default=None, help="default: every shipped, judge-free benchmark")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=None)
    ap.add_argument("--once", action="store_true", help="score each subset once: seconds per 100 items then include "
                    "compilation (a warm persistent compile cache makes that small); half the time")
    args = ap.parse_args()

    from engine.commands.common import build_policy
    from evals import registry
    from evals.stats import cluster_index
    from evals.suite import run_suite

    names = args.benchmarks or [n for n in registry.names()
                                if not registry.get(n).needs_judge and n not in registry.USER_FILES
                                and n not in ("sycophancy-eval", "healthbench", "strongreject")]
    load0, ticks0 = os.getloadavg(), cpu_ticks()
    policy = build_policy(args.model, None)  # "tiny" for a dry run
    rows = []
    for name in names:
        b = registry.get(name)
        try:
            pool = b.load(registry.LoadContext(None, 0))
        except Exception as e:  # a user file that is not there, etc.
            print(f"skip {name}: {e}")
            continue
        n_all = len(pool)
        c_all = len({it.cluster or it.id for it in pool})
        t0 = time.perf_counter()
        if not args.once:
            run_suite(policy, [name], limit=args.limit, batch_size=args.batch_size)  # compiles this subset's shapes
        t1 = time.perf_counter()
        (res,) = run_suite(policy, [name], limit=args.limit, batch_size=args.batch_size)
        t2 = time.perf_counter()
        scores = np.asarray([it.score for it in res.items])
        idx, c_sub = cluster_index([it.id for it in res.items], [it.cluster for it in res.items])
        se_full = _se(scores, idx) * math.sqrt(c_sub / c_all)
        rows.append({"benchmark": name, "family": b.family, "kind": b.kind, "n": n_all, "clusters": c_all,
                     "scored": res.n, "score": res.score, "ci_half_scored": (res.ci_high - res.ci_low) / 2,
                     "ci_half_full": 1.96 * se_full, "mde_full": 2.80 * se_full,
                     "s_per_100": 100 * (t2 - t1) / max(1, res.n), "compile_s": t1 - t0,
                     "description": b.description})
        print(json.dumps(rows[-1]), flush=True)
    load1, ticks1 = os.getloadavg(), cpu_ticks()
    steal = steal_pct(ticks0, ticks1)
    print(f"\nmodel {args.model}; {args.limit} items scored per benchmark; load average before {load0[0]:.2f}, "
          f"after {load1[0]:.2f}; CPU steal {steal:.1f}%" if steal is not None else "")
    print("\n| benchmark | family | n items | clusters | score (n scored) | 95% CI half-width (full n) | MDE (full n) "
          "| s / 100 items |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['family']} | {r['n']} | {r['clusters']} | {r['score']:.3f} ({r['scored']}) | "
              f"±{r['ci_half_full']:.3f} | {r['mde_full']:.3f} | {r['s_per_100']:.1f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"model": args.model, "limit": args.limit, "load_before": load0, "load_after": load1,
                       "steal_pct": steal, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
