"""`traitrl compare`: did the treatment runs beat the control, where, and does it persist?

The first run is the control; every later run is compared with it benchmark by benchmark. A
delta (treatment - control) gets a bootstrap 95% interval from a PAIRED bootstrap over the item
ids both runs scored (the same prompts, so per-item differences cancel the items' difficulty and
the interval is much tighter than two independent ones); when the runs scored different items
it falls back to an unpaired bootstrap of the two means. "Significant" means the interval excludes
0. Many benchmarks are tested at once, so the report gives the raw count of significant
improvements next to a Holm-corrected one (family-wise error `alpha`, p-values from the same
bootstrap distribution).

The report (Markdown + PNG plots) also has the cross-domain matrix (each treatment's trained
trait domains, from its config.json, against the domains of the evaluated items: does training on
health move law?) and the persistence panel (plain score, score under harmful steering and the
retention ratio, helpful-steering compliance, score after the harmful-fine-tuning attack).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import UserError
from evals.attack import latest_step
from evals.results import CONDITIONS, BenchmarkResult, domain_order, read_results

PLAIN = "plain"


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """How deltas are estimated and tested."""

    resamples: int = 10_000  # bootstrap resamples per delta (p-values resolve down to 1 / resamples, for Holm)
    seed: int = 0  # bootstrap seed: the same runs always give the same report
    alpha: float = 0.05  # 1 - interval coverage, and the family-wise error rate of the Holm correction
    min_paired_fraction: float = 0.5  # pair by item id when this share of the smaller run's ids is shared

    def __post_init__(self):
        if self.resamples < 100:
            raise UserError(f"compare.resamples: expected >= 100, got {self.resamples}")
        if not 0 < self.alpha < 1:
            raise UserError(f"compare.alpha: expected a number in (0, 1), got {self.alpha}")
        if not 0 < self.min_paired_fraction <= 1:
            raise UserError(f"compare.min_paired_fraction: expected a number in (0, 1], got {self.min_paired_fraction}")


@dataclasses.dataclass(frozen=True)
class Delta:
    """One treatment-minus-control difference with its bootstrap interval."""

    name: str  # benchmark name (or evaluated domain, in the cross-domain matrix)
    family: str  # benchmark family ("" for domains)
    condition: str  # plain | harmful-steering | helpful-steering | after-attack
    a: float  # control mean over the compared items
    b: float  # treatment mean over the compared items
    delta: float  # b - a
    ci_low: float  # bootstrap interval of delta (percentile, coverage 1 - alpha)
    ci_high: float
    p: float  # two-sided bootstrap p-value of "delta = 0"
    n: int  # items compared (pairs when paired)
    paired: bool  # paired by item id (else two independent resamples)

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


@dataclasses.dataclass(frozen=True)
class Run:
    """One run's results at one step, plus what trait data it trained on."""

    name: str  # label in the report (the directory name, made unique)
    path: Path
    step: int
    results: dict[tuple[str, str], BenchmarkResult]  # (condition, benchmark) -> result
    trained: str  # trained trait domains, in words ("all", "health", "all but health", "none", "unknown")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A treatment against the control."""

    control: str
    treatment: str
    deltas: list[Delta]  # every (condition, benchmark) both runs have
    holm: dict[tuple[str, str], bool]  # (condition, benchmark) -> significant after Holm (within its condition)
    domains: list[Delta]  # plain-condition delta per evaluated domain (cross-domain matrix row)

    def summary(self, condition: str = PLAIN) -> dict[str, int]:
        ds = [d for d in self.deltas if d.condition == condition]
        up = [d for d in ds if d.delta > 0]
        down = [d for d in ds if d.delta < 0]
        return {"n": len(ds), "improved": len(up), "worse": len(down),
                "significant": sum(d.significant for d in up),
                "significant_worse": sum(d.significant for d in down),
                "holm": sum(self.holm[(d.condition, d.name)] for d in up),
                "holm_worse": sum(self.holm[(d.condition, d.name)] for d in down)}


# ---------------------------------------------------------------- statistics


def bootstrap_delta(a: dict[str, float], b: dict[str, float], cfg: CompareConfig = CompareConfig(),
                    name: str = "", family: str = "", condition: str = PLAIN) -> Delta:
    """Delta of means b - a, paired over shared ids when enough are shared, else unpaired."""
    if not a or not b:
        raise ValueError(f"{name}: bootstrap needs items on both sides ({len(a)} vs {len(b)})")
    rng = np.random.default_rng(cfg.seed)
    shared = sorted(set(a) & set(b))
    paired = len(shared) >= 2 and len(shared) >= cfg.min_paired_fraction * min(len(a), len(b))
    if paired:
        xa = np.array([a[k] for k in shared])
        xb = np.array([b[k] for k in shared])
        boot = _boot_means(xb - xa, cfg.resamples, rng)
        ma, mb = float(xa.mean()), float(xb.mean())
    else:
        xa, xb = np.array(list(a.values())), np.array(list(b.values()))
        boot = _boot_means(xb, cfg.resamples, rng) - _boot_means(xa, cfg.resamples, rng)
        ma, mb = float(xa.mean()), float(xb.mean())
    lo, hi = np.quantile(boot, [cfg.alpha / 2, 1 - cfg.alpha / 2])
    # p: how far into either tail 0 lies (the interval excludes 0 exactly when p < alpha, up to resampling).
    # The +1 keeps p > 0, since a p of exactly 0 would pass any Holm threshold on too few resamples.
    tail = min(np.sum(boot <= 0), np.sum(boot >= 0))
    p = min(1.0, 2 * (tail + 1) / (cfg.resamples + 1))
    return Delta(name, family, condition, ma, mb, mb - ma, float(lo), float(hi), p,
                 len(shared) if paired else len(a) + len(b), paired)


def _boot_means(x: np.ndarray, resamples: int, rng: np.random.Generator, chunk: int = 1000) -> np.ndarray:
    """Means of `resamples` resamples with replacement (chunked so R x N indices stay small)."""
    out = np.empty(resamples)
    for s in range(0, resamples, chunk):
        k = min(chunk, resamples - s)
        out[s:s + k] = x[rng.integers(0, len(x), (k, len(x)))].mean(axis=1)
    return out


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down: rejects the i-th smallest p while p <= alpha / (m - i); controls family-wise error."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    reject = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        reject[i] = True
    return reject


# ---------------------------------------------------------------- runs


def _item_scores(result: BenchmarkResult) -> dict[str, float]:
    """id -> score (the mean when an id repeats, e.g. several samples of one prompt)."""
    acc: dict[str, list[float]] = {}
    for it in result.items:
        acc.setdefault(it.id, []).append(float(it.score))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def trained_domains(run_dir: Path) -> str:
    """What trait data the run trained on, from config.json's data section, in words."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return "unknown"
    try:
        data = json.loads(path.read_text()).get("data", {})
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{path}: not a JSON object") from None
    if data.get("trait_fraction", 0.05) == 0:
        return "none"
    label = ", ".join(data.get("trait_domains") or ()) or "all"
    if data.get("exclude_trait_domains"):
        label += " but " + ", ".join(data["exclude_trait_domains"])
    if data.get("traits"):
        label += " (" + ", ".join(data["traits"]) + ")"
    return label


def load_run(run_dir: Path, step: int | None = None, name: str | None = None) -> Run:
    """A run's results (latest eval step, or `step`); UserError when it has none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run directory not found")
    if not (run_dir / "evals.jsonl").is_file():
        raise UserError(f"{run_dir}: no eval results (evals.jsonl missing); run the evals on this run first "
                        "(`traitrl eval`, or train with in-loop evals)")
    results = read_results(run_dir, step)
    if not results:
        where = f"at step {step}" if step is not None else "in evals.jsonl"
        raise UserError(f"{run_dir}: no eval results {where}")
    found = step if step is not None else latest_step(run_dir)
    return Run(name or run_dir.name, run_dir, found, {(r.condition, r.benchmark): r for r in results},
               trained_domains(run_dir))


def compare_pair(control: Run, treatment: Run, cfg: CompareConfig = CompareConfig()) -> Comparison:
    """Deltas for every (condition, benchmark) both runs have, Holm within each condition, and domain deltas."""
    deltas = []
    for key in sorted(set(control.results) & set(treatment.results), key=lambda k: (_cond_key(k[0]), k[1])):
        ra, rb = control.results[key], treatment.results[key]
        a, b = _item_scores(ra), _item_scores(rb)
        if a and b:
            deltas.append(bootstrap_delta(a, b, cfg, ra.benchmark, ra.family, ra.condition))
    flags: dict[tuple[str, str], bool] = {}
    for cond in {d.condition for d in deltas}:
        ds = [d for d in deltas if d.condition == cond]
        flags.update({(d.condition, d.name): f for d, f in zip(ds, holm([d.p for d in ds], cfg.alpha))})
    return Comparison(control.name, treatment.name, deltas, flags, _domain_deltas(control, treatment, cfg))


def _by_domain(run: Run) -> dict[str, dict[str, float]]:
    """domain -> {benchmark/id: score} over the plain condition (ids qualified so benchmarks do not collide)."""
    out: dict[str, dict[str, float]] = {}
    for (cond, bench), r in run.results.items():
        if cond != PLAIN:
            continue
        for it in r.items:
            if it.domain:
                out.setdefault(it.domain, {})[f"{bench}/{it.id}"] = float(it.score)
    return out


def _domain_deltas(control: Run, treatment: Run, cfg: CompareConfig) -> list[Delta]:
    da, db = _by_domain(control), _by_domain(treatment)
    return [bootstrap_delta(da[d], db[d], cfg, d, "", PLAIN) for d in domain_order(set(da) & set(db))]


def persistence(run: Run) -> dict[str, float | None]:
    """The persistence panel of one run: each figure over the benchmarks that have both conditions involved.

    retention = harmful-steering score / plain score on the same benchmarks (1 = fully kept); without a
    harmful-steering condition, harmful_steering is the "harmful steering" family's score (no retention);
    helpful_steering = instruction compliance under benign system instructions ("helpful steerability"
    results of the helpful-steering condition, else of the plain one, e.g. helpful-instructions);
    attack_retention = after-attack score / plain score on the same benchmarks.
    """
    score = {k: r.score for k, r in run.results.items()}
    plain = {b: s for (c, b), s in score.items() if c == PLAIN}

    def side(cond: str) -> tuple[float | None, float | None]:
        other = {b: s for (c, b), s in score.items() if c == cond and b in plain}
        if not other:
            return None, None
        return float(np.mean([plain[b] for b in other])), float(np.mean(list(other.values())))

    def ratio(x, y):
        return None if x is None or y is None or x <= 0 else y / x

    def family(fam: str, cond: str) -> list[float]:
        return [r.score for (c, _), r in run.results.items() if c == cond and r.family == fam]

    p_hs, hs = side("harmful-steering")
    if hs is None and family("harmful steering", PLAIN):  # only the mixed persona benchmark: no plain twin
        hs = float(np.mean(family("harmful steering", PLAIN)))
    p_aa, aa = side("after-attack")
    helpful = family("helpful steerability", "helpful-steering") or family("helpful steerability", PLAIN)
    return {"plain": p_hs, "harmful_steering": hs, "retention": ratio(p_hs, hs),
            "helpful_steering": float(np.mean(helpful)) if helpful else None,
            "plain_before_attack": p_aa, "after_attack": aa, "attack_retention": ratio(p_aa, aa)}


# ---------------------------------------------------------------- report


@dataclasses.dataclass(frozen=True)
class Report:
    runs: list[Run]
    comparisons: list[Comparison]  # each later run vs runs[0]
    out_dir: Path
    files: list[Path]  # report.md, compare.json and the plots written


def compare_runs(run_dirs: Sequence[Path], out: Path | None = None, step: int | None = None,
                 cfg: CompareConfig = CompareConfig()) -> Report:
    """Loads the runs, compares each later one with the first, writes report.md, compare.json and PNG plots."""
    from evals import plots

    if len(run_dirs) < 2:
        raise UserError(f"compare: expected at least two runs (control first), got {len(run_dirs)}")
    names = _unique_names([Path(p) for p in run_dirs])
    runs = [load_run(Path(p), step, n) for p, n in zip(run_dirs, names)]
    comparisons = [compare_pair(runs[0], r, cfg) for r in runs[1:]]
    out_dir = Path(out) if out is not None else Path(run_dirs[-1]) / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = plots.write_all(runs, comparisons, [persistence(r) for r in runs], out_dir)
    (out_dir / "report.md").write_text(render_markdown(runs, comparisons, cfg, figures))
    (out_dir / "compare.json").write_text(json.dumps(to_json(runs, comparisons), indent=2))
    return Report(runs, comparisons, out_dir, [out_dir / "report.md", out_dir / "compare.json", *figures])


def _unique_names(paths: list[Path]) -> list[str]:
    names = [p.resolve().name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{n} ({p.resolve().parent.name})" if names.count(n) > 1 else n for n, p in zip(names, paths)]


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _counts_line(s: dict[str, int], alpha: float) -> str:
    return (f"**Improved on {s['improved']} of {s['n']} (significant: {s['significant']}; "
            f"Holm-corrected at alpha {alpha:g}: {s['holm']}).** Worse on {s['worse']} "
            f"(significant: {s['significant_worse']}; Holm: {s['holm_worse']}).")


def render_markdown(runs: Sequence[Run], comparisons: Sequence[Comparison], cfg: CompareConfig,
                    figures: Sequence[Path]) -> str:
    """The report: runs, per-benchmark deltas by condition, cross-domain matrix, persistence panel."""
    shown = {f.name for f in figures}
    cov = f"{100 * (1 - cfg.alpha):g}%"
    md = ["# Run comparison", "",
          (f"Control: **{runs[0].name}**. Deltas are treatment - control; intervals are {cov} bootstrap intervals "
          f"({cfg.resamples} resamples, seed {cfg.seed}), paired over the item ids both runs scored (unpaired where "
          "the runs scored different items). Significant = the interval excludes 0; the Holm column corrects for "
          "testing every benchmark of a condition at once."), ""]
    md += _table(["run", "path", "step", "trained trait domains", "benchmarks", "conditions"],
                 [[r.name, f"`{r.path}`", str(r.step), r.trained, str(len({b for _, b in r.results})),
                   ", ".join(sorted({c for c, _ in r.results}, key=_cond_key))] for r in runs])
    for c in comparisons:
        md += ["", f"## {c.treatment} vs {c.control} (control)"]
        for cond in sorted({d.condition for d in c.deltas}, key=_cond_key):
            ds = [d for d in c.deltas if d.condition == cond]
            md += ["", f"### {cond}", "", _counts_line(c.summary(cond), cfg.alpha), ""]
            md += _table(["benchmark", "family", c.control, c.treatment, "delta", f"{cov} CI", "n", "paired", "sig",
                          "Holm"],
                         [[d.name, d.family, _f(d.a), _f(d.b), _f(d.delta, "+.3f"),
                           f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]", str(d.n), "yes" if d.paired else "no",
                           "*" if d.significant else "", "*" if c.holm[(d.condition, d.name)] else ""] for d in ds])
    if "deltas.png" in shown:
        md += ["", "![per-benchmark deltas](deltas.png)"]
    md += ["", "## Cross-domain matrix", "",
           (f"Rows: each treatment with the trait domains it trained on (control **{runs[0].name}**: "
           f"{runs[0].trained}); columns: the domain of the evaluated items (plain condition, all benchmarks "
           "pooled); cell: delta of the mean item score vs the control, * = interval excludes 0."), ""]
    domains = domain_order({d.name for c in comparisons for d in c.domains})
    if domains:
        md += _table(["run (trained on)", *domains],
                     [[f"{c.treatment} ({_trained(runs, c.treatment)})",
                       *(_cell({d.name: d for d in c.domains}.get(dom)) for dom in domains)] for c in comparisons])
        means = [_by_domain(r) for r in runs]
        md += ["", "Mean item score per domain:", ""]
        md += _table(["run", *domains], [[r.name, *(_f(np.mean(list(m[d].values()))) if d in m else "—"
                                                     for d in domains)] for r, m in zip(runs, means)])
        if "cross_domain.png" in shown:
            md += ["", "![cross-domain matrix](cross_domain.png)"]
    else:
        md += ["No item has a domain in both runs."]
    md += ["", "## Persistence", "",
           ("plain / harmful-steering: mean score over the benchmarks evaluated in both conditions; retention = "
           "harmful-steering / plain; helpful-steering: compliance with benign instructions (trait kept); after "
           "attack: the same after the harmful fine-tuning attack (`traitrl attack`), vs plain on the same "
           "benchmarks."), ""]
    panels = [persistence(r) for r in runs]
    md += _table(["run", "trained", "plain", "harmful-steering", "retention", "helpful-steering",
                  "plain (attack set)", "after attack", "attack retention"],
                 [[r.name, r.trained, *(_f(p[k]) for k in ("plain", "harmful_steering", "retention",
                                                            "helpful_steering", "plain_before_attack",
                                                            "after_attack", "attack_retention"))]
                  for r, p in zip(runs, panels)])
    if "persistence.png" in shown:
        md += ["", "![persistence](persistence.png)"]
    return "\n".join(md) + "\n"


def _cond_key(c: str):
    return (CONDITIONS.index(c) if c in CONDITIONS else len(CONDITIONS), c)


def _trained(runs: Sequence[Run], name: str) -> str:
    return next(r.trained for r in runs if r.name == name)


def _cell(d: Delta | None) -> str:
    return "—" if d is None else f"{d.delta:+.3f}{'*' if d.significant else ''}"


def to_json(runs: Sequence[Run], comparisons: Sequence[Comparison]) -> dict:
    """Everything in the report, machine-readable (for `traitrl experiment` and notebooks)."""
    return {
        "runs": [{"name": r.name, "path": str(r.path), "step": r.step, "trained": r.trained,
                  "persistence": persistence(r)} for r in runs],
        "comparisons": [{
            "control": c.control, "treatment": c.treatment,
            "summary": {cond: c.summary(cond) for cond in sorted({d.condition for d in c.deltas}, key=_cond_key)},
            "deltas": [{**dataclasses.asdict(d), "significant": d.significant, "holm": c.holm[(d.condition, d.name)]}
                       for d in c.deltas],
            "domains": [{**dataclasses.asdict(d), "significant": d.significant} for d in c.domains],
        } for c in comparisons],
    }
