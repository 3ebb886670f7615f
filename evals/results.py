"""Eval results: per-item and per-benchmark records, the bootstrap interval, and their on-disk layout.

The contract other tools (`traitrl compare`, `traitrl experiment`) read:

- `RUN/evals.jsonl`: one line per (step, condition, benchmark) with score, interval, n and clusters;
- `RUN/evals/step_XXXXXX/<condition>/<benchmark>.jsonl`: one line per item (id, score, domain, extra, and
  cluster when the item has one);
- the learner's `metrics.jsonl` gets `eval/<benchmark>/score|ci_low|ci_high` for the "plain" condition
  and `eval/<condition>/<benchmark>/...` for the others (`metrics_for`).

Item ids are stable across runs and steps, so two runs can be paired item by item. Files written before
clusters were recorded read as every item its own cluster (clusters = n).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import UserError
from evals import stats

FAMILIES = (
    "corrigibility",
    "honesty",
    "sycophancy",
    "deception",
    "reward hacking",
    "fairness",
    "health",
    "mental health",
    "harmful steering",
    "helpful steerability",
    "over-refusal",
    "emergent misalignment",
    "held-out reward",
)
CONDITIONS = ("plain", "harmful-steering", "helpful-steering", "after-attack")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclasses.dataclass(frozen=True)
class ItemResult:
    id: str  # stable item id (same across runs, so runs can be paired item by item)
    score: float  # in [0, 1], higher is better (NaN never; items that do not apply are left out)
    domain: str | None  # one of data.schema.DOMAINS when known (for the cross-domain matrix), else None
    extra: dict  # anything useful for reading (completion text, chosen option, judge numbers ...)
    cluster: str | None = None  # the item's cluster (evals.items.Item.cluster; None = its own), set by the suite


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    benchmark: str  # registry name, e.g. "corrigible-neutral-HHH", "xstest", "heldout-truthfulness"
    family: str  # one of FAMILIES
    condition: str  # one of CONDITIONS
    score: float  # mean of item scores
    ci_low: float  # cluster bootstrap 95% interval (percentile, 1000 resamples of clusters, fixed seed)
    ci_high: float
    n: int  # items
    items: list[ItemResult]
    clusters: int | None = None  # distinct clusters among the items (None given = n: every item its own cluster)

    def __post_init__(self):
        if self.clusters is None:
            object.__setattr__(self, "clusters", self.n)


def bootstrap_ci(scores: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95, clusters: Sequence[str | None] | None = None,
                 ids: Sequence[str] | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling CLUSTERS with replacement (fixed seed).

    clusters: each score's cluster (None = its own; no `clusters` = every item its own, the item
    bootstrap, draw for draw what this function always returned); ids: the items' ids, so that
    unclustered repeats of one id stay together. Deterministic, so re-running an eval reproduces the
    interval exactly. With fewer than ~30 clusters the percentile interval is too narrow (see evals.stats).
    """
    if clusters is None:
        return stats.cluster_bootstrap_ci(scores, None, resamples=resamples, seed=seed, level=level)
    idx, _ = stats.cluster_index(list(range(len(clusters))) if ids is None else ids, clusters)
    return stats.cluster_bootstrap_ci(scores, idx, resamples=resamples, seed=seed, level=level)


def summarize(benchmark: str, family: str, condition: str, items: Sequence[ItemResult]) -> BenchmarkResult | None:
    """The benchmark's result from its item results, or None when no item applied."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: expected one of {', '.join(FAMILIES)}")
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r}: expected one of {', '.join(CONDITIONS)}")
    for it in items:
        if not (math.isfinite(it.score) and 0.0 <= it.score <= 1.0):
            raise ValueError(f"{benchmark}/{it.id}: item score {it.score} is not in [0, 1]")
    if not items:
        return None
    scores = [it.score for it in items]
    idx, clusters = stats.cluster_index([it.id for it in items], [it.cluster for it in items])
    lo, hi = stats.cluster_bootstrap_ci(scores, idx, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)
    return BenchmarkResult(benchmark, family, condition, float(np.mean(scores)), lo, hi, len(items), list(items),
                           clusters)


def metric_prefix(result: BenchmarkResult) -> str:
    if result.condition == "plain":
        return f"eval/{result.benchmark}"
    return f"eval/{result.condition}/{result.benchmark}"


def metrics_for(results: Sequence[BenchmarkResult]) -> dict[str, float]:
    """Scalar metrics for the learner's metrics.jsonl / TensorBoard."""
    out: dict[str, float] = {}
    for r in results:
        p = metric_prefix(r)
        out.update({f"{p}/score": r.score, f"{p}/ci_low": r.ci_low, f"{p}/ci_high": r.ci_high})
    return out


def step_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "evals" / f"step_{step:06d}"


def write_results(run_dir: str | Path, step: int, results: Sequence[BenchmarkResult]) -> None:
    """Appends the summary lines to RUN/evals.jsonl and writes one per-item file per benchmark.

    Per-item files are written to a temporary name and renamed, so a reader never sees half a file.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        d = step_dir(run_dir, step) / r.condition
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{r.benchmark}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(_item_line(it), ensure_ascii=False, default=str) + "\n" for it in r.items)
        tmp.replace(d / f"{r.benchmark}.jsonl")
    with open(run_dir / "evals.jsonl", "a", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps({"step": step, "benchmark": r.benchmark, "family": r.family, "condition": r.condition,
                                 "score": r.score, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n,
                                 "clusters": r.clusters}) + "\n")


def _item_line(it: ItemResult) -> dict:
    """A per-item line; "cluster" only when the item has one (absent = its own cluster, as in older files)."""
    line = {"id": it.id, "score": it.score, "domain": it.domain, "extra": it.extra}
    if it.cluster is not None:
        line["cluster"] = it.cluster
    return line


def _summary_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "evals.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: no eval results (run `traitrl eval` or train with evals enabled)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return rows


def read_results(run_dir: str | Path, step: int | None = None) -> list[BenchmarkResult]:
    """All conditions' results of one step (default: the latest step in RUN/evals.jsonl), items included.

    A (condition, benchmark) written twice for the same step keeps its last line.
    """
    run_dir = Path(run_dir)
    rows = _summary_lines(run_dir)
    if not rows:
        raise UserError(f"{run_dir / 'evals.jsonl'}: empty")
    step = max(r["step"] for r in rows) if step is None else step
    latest: dict[tuple[str, str], dict] = {}
    for r in rows:
        if r["step"] == step:
            latest[(r["condition"], r["benchmark"])] = r
    if not latest:
        steps = sorted({r["step"] for r in rows})
        raise UserError(f"{run_dir / 'evals.jsonl'}: no results for step {step} (steps: {steps})")
    out = []
    for (condition, benchmark), r in latest.items():
        path = step_dir(run_dir, step) / condition / f"{benchmark}.jsonl"
        items = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    d = json.loads(line)
                    items.append(ItemResult(d["id"], float(d["score"]), d.get("domain"), d.get("extra") or {},
                                            d.get("cluster")))
        clusters = r.get("clusters")  # absent in files written before clusters were recorded
        if clusters is None:
            clusters = stats.cluster_index([it.id for it in items], [it.cluster for it in items])[1] if items else None
        out.append(BenchmarkResult(benchmark, r["family"], condition, float(r["score"]), float(r["ci_low"]),
                                   float(r["ci_high"]), int(r["n"]), items, clusters))
    return out


def domain_order(domains) -> list[str]:
    """Domains in the schema's order (health, education, ...), unknown ones after them alphabetically."""
    from data.schema import DOMAINS

    return sorted(domains, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d))
