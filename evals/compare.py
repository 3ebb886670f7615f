"""`traitrl compare`: did the treatment arms beat the control, where, and does it persist?

The first arm is the control; every later arm is compared with it benchmark by benchmark. An arm is
one run directory, or several (one per training seed: `compare_arms`, `compare_runs([[c0, c1], [t0,
t1]])`). Per item, an arm's score is the mean over its seeds; the delta (treatment - control) is the
mean over the item ids every run of both arms scored (the same prompts, so per-item differences cancel
the items' difficulty). Items are grouped in clusters (items from one bank fact or template are not
independent; `ItemResult.cluster`), and all statistics are over clusters -- see evals/stats.py:

- p: two-sided paired cluster-level t test: cluster-robust SE of the paired differences plus the
  between-seed variance of each arm (with >= 2 seeds), Welch-Satterthwaite degrees of freedom. It is
  the decision rule: "significant" = p < alpha, before any correction. Its size and power are checked
  by simulation in tests/evals/test_stats.py.
- Holm: many benchmarks are tested at once, so the report gives the raw count of significant
  improvements next to a Holm-corrected one (step-down within each condition, family-wise error alpha),
  and the Holm-adjusted p of every row.
- interval: two-level bootstrap (clusters of paired items, and each arm's seeds), coverage 1 - alpha.
- MDE: the effect this comparison detects with 80% power at two-sided alpha, from the same SE. A
  non-significant row is only evidence of "no effect" for effects well above its MDE.
With one seed per arm none of these contains seed-to-seed variance, and the report says so; rows with
fewer than stats.FEW_CLUSTERS clusters are flagged (anti-conservative there). When the arms scored
mostly different items the comparison falls back to an unpaired one (each arm's clusters on their own).

The report (Markdown + PNG plots) also has the cross-domain matrix (each treatment's trained
trait domains, from its config.json, against the domains of the evaluated items: does training on
health move law?) and the persistence panel (plain score, score under harmful steering and the
retention ratio, helpful-steering compliance, score after the harmful-fine-tuning attack).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import UserError
from evals import stats
from evals.attack import latest_step
from evals.results import CONDITIONS, BenchmarkResult, domain_order, read_results
from evals.stats import holm

log = logging.getLogger(__name__)

PLAIN = "plain"
__all__ = ["Arm", "CompareConfig", "Comparison", "Delta", "Report", "Run", "bootstrap_delta", "compare_arms",
           "compare_pair", "compare_runs", "holm", "item_clusters", "item_scores", "load_arm", "load_run",
           "persistence", "seeds_delta"]


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """How deltas are estimated and tested."""

    resamples: int = 10_000  # bootstrap resamples per delta interval
    seed: int = 0  # bootstrap seed: the same runs always give the same report
    alpha: float = 0.05  # test level, 1 - interval coverage, and the family-wise error rate of the Holm correction
    min_paired_fraction: float = 0.5  # pair by item id when this share of the smaller arm's ids is shared

    def __post_init__(self):
        if self.resamples < 100:
            raise UserError(f"compare.resamples: expected >= 100, got {self.resamples}")
        if not 0 < self.alpha < 1:
            raise UserError(f"compare.alpha: expected a number in (0, 1), got {self.alpha}")
        if not 0 < self.min_paired_fraction <= 1:
            raise UserError(f"compare.min_paired_fraction: expected a number in (0, 1], got {self.min_paired_fraction}")


@dataclasses.dataclass(frozen=True)
class Delta:
    """One treatment-minus-control difference: its test, interval and minimum detectable effect."""

    name: str  # benchmark name (or evaluated domain, in the cross-domain matrix)
    family: str  # benchmark family ("" for domains)
    condition: str  # plain | harmful-steering | helpful-steering | after-attack
    a: float  # control mean over the compared items (each item's score averaged over the arm's seeds)
    b: float  # treatment mean over the compared items
    delta: float  # b - a
    ci_low: float  # two-level bootstrap interval of delta (clusters, seeds), coverage 1 - alpha; NaN if < 2 clusters
    ci_high: float
    p: float  # two-sided p-value of "delta = 0" (paired cluster-level t test, evals.stats.paired_test)
    n: int  # items compared (pairs when paired; both arms' items when not)
    paired: bool  # paired by item id (else the arms' items resampled independently)
    clusters: int  # clusters among the compared items (the smaller arm's when unpaired)
    seeds_a: int  # runs (training seeds) of the control arm
    seeds_b: int  # runs of the treatment arm
    se: float  # standard error of delta (cluster part + between-seed part)
    se_seeds: float  # the between-seed part of se (0 when seed_variance is "none")
    df: float  # degrees of freedom of the t reference (Welch-Satterthwaite)
    mde: float  # minimum detectable effect, 80% power at two-sided alpha
    seed_variance: str  # "own" (each arm's seeds), "borrowed" (a one-seed arm assumed like the other), "none"
    alpha: float = 0.05  # level of `significant`
    p_holm: float | None = None  # Holm-adjusted p within its condition (None for cross-domain cells)

    @property
    def significant(self) -> bool:
        """The decision rule, before multiple-comparison correction: p < alpha."""
        return self.p < self.alpha

    @property
    def few_clusters(self) -> bool:
        """Fewer than stats.FEW_CLUSTERS clusters: p and interval are anti-conservative."""
        return self.clusters < stats.FEW_CLUSTERS


@dataclasses.dataclass(frozen=True)
class Run:
    """One run's results at one step, plus what trait data it trained on."""

    name: str  # label in the report (the directory name, made unique)
    path: Path
    step: int
    results: dict[tuple[str, str], BenchmarkResult]  # (condition, benchmark) -> result
    trained: str  # trained trait domains, in words ("all", "health", "all but health", "none", "unknown")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm: the runs of one training config, one per seed (a single run is an arm of one seed)."""

    name: str  # label in the report
    runs: tuple[Run, ...]  # one per seed

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def trained(self) -> str:
        labels = list(dict.fromkeys(r.trained for r in self.runs))
        return labels[0] if len(labels) == 1 else " / ".join(labels)

    @property
    def keys(self) -> list[tuple[str, str]]:
        """(condition, benchmark) every seed has."""
        common = set.intersection(*(set(r.results) for r in self.runs))
        return [k for k in self.runs[0].results if k in common]

    @property
    def scores(self) -> dict[tuple[str, str], tuple[float, str]]:
        """(condition, benchmark) -> (score averaged over the seeds, family), over the keys every seed has."""
        return {k: (float(np.mean([r.results[k].score for r in self.runs])), self.runs[0].results[k].family)
                for k in self.keys}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A treatment arm against the control arm."""

    control: str
    treatment: str
    deltas: list[Delta]  # every (condition, benchmark) both arms have
    holm: dict[tuple[str, str], bool]  # (condition, benchmark) -> significant after Holm (within its condition)
    domains: list[Delta]  # plain-condition delta per evaluated domain (cross-domain matrix row)
    seeds: tuple[int, int] = (1, 1)  # runs of the control and treatment arms
    skipped: list[str] = dataclasses.field(default_factory=list)  # "(condition) benchmark: why" not compared

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


def _common_ids(runs: Sequence[dict[str, float]]) -> set[str]:
    return set.intersection(*(set(r) for r in runs))


def seeds_delta(a_runs: Sequence[dict[str, float]], b_runs: Sequence[dict[str, float]],
                clusters: dict[str, str | None] | None = None, cfg: CompareConfig = CompareConfig(),
                name: str = "", family: str = "", condition: str = PLAIN) -> Delta:
    """Delta of two arms given as one {item id: score} per seed run, and each id's cluster (None = its own).

    Paired over the ids every run of both arms scored, when that is at least `cfg.min_paired_fraction`
    of the smaller arm's ids (ids every run of that arm scored); else unpaired. ValueError when an arm
    has no item all its runs scored.
    """
    if not a_runs or not b_runs:
        raise ValueError(f"{name}: expected at least one run per arm")
    ids_a, ids_b = _common_ids(a_runs), _common_ids(b_runs)
    if not ids_a or not ids_b:
        raise ValueError(f"{name}: the runs of the {'control' if not ids_a else 'treatment'} arm share no scored "
                         "item (evaluate every seed on the same items: the same eval seed and limit)")
    clusters = clusters or {}
    shared = sorted(ids_a & ids_b)
    paired = len(shared) >= 2 and len(shared) >= cfg.min_paired_fraction * min(len(ids_a), len(ids_b))
    if paired:
        ya = np.array([[r[k] for k in shared] for r in a_runs])
        yb = np.array([[r[k] for k in shared] for r in b_runs])
        idx, _ = stats.cluster_index(shared, [clusters.get(k) for k in shared])
        t = stats.paired_test(ya, yb, idx, cfg.alpha)
        lo, hi = stats.paired_bootstrap_ci(ya, yb, idx, resamples=cfg.resamples, seed=cfg.seed, alpha=cfg.alpha,
                                           df=t.df)
    else:
        sa, sb = sorted(ids_a), sorted(ids_b)
        ya = np.array([[r[k] for k in sa] for r in a_runs])
        yb = np.array([[r[k] for k in sb] for r in b_runs])
        ia, _ = stats.cluster_index(sa, [clusters.get(k) for k in sa])
        ib, _ = stats.cluster_index(sb, [clusters.get(k) for k in sb])
        t = stats.unpaired_test(ya, ia, yb, ib, cfg.alpha)
        lo, hi = stats.unpaired_bootstrap_ci(ya, ia, yb, ib, resamples=cfg.resamples, seed=cfg.seed, alpha=cfg.alpha,
                                             df=t.df)
    return Delta(name, family, condition, t.a, t.b, t.delta, lo, hi, t.p, t.n, t.paired, t.clusters, t.seeds_a,
                 t.seeds_b, t.se, t.se_seeds, t.df, t.mde, t.seed_variance, cfg.alpha)


def bootstrap_delta(a: dict[str, float], b: dict[str, float], cfg: CompareConfig = CompareConfig(),
                    name: str = "", family: str = "", condition: str = PLAIN,
                    clusters: dict[str, str | None] | None = None) -> Delta:
    """Delta of means b - a of one run each ({item id: score}); `seeds_delta` with one seed per arm."""
    if not a or not b:
        raise ValueError(f"{name}: bootstrap needs items on both sides ({len(a)} vs {len(b)})")
    return seeds_delta([a], [b], clusters, cfg, name, family, condition)


# ---------------------------------------------------------------- runs and arms


def item_scores(result: BenchmarkResult) -> dict[str, float]:
    """id -> score (the mean when an id repeats, e.g. several samples of one prompt)."""
    acc: dict[str, list[float]] = {}
    for it in result.items:
        acc.setdefault(it.id, []).append(float(it.score))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def item_clusters(results: Sequence[BenchmarkResult], qualify: str = "") -> dict[str, str | None]:
    """id -> cluster over several runs' results of one benchmark (the first run that names one wins)."""
    out: dict[str, str | None] = {}
    for r in results:
        for it in r.items:
            if out.get(qualify + it.id) is None:
                out[qualify + it.id] = None if it.cluster is None else qualify + it.cluster
    return out


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


def load_arm(run_dirs: Path | Sequence[Path], step: int | None = None, name: str | None = None) -> Arm:
    """An arm from its seeds' run directories (one directory = one seed); each run's latest step, or `step`."""
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise UserError("compare: an arm needs at least one run directory")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise UserError(f"compare: a run directory is listed twice in one arm: {[str(d) for d in dirs]}")
    runs = tuple(load_run(d, step) for d in dirs)
    return Arm(name or _arm_name(dirs), runs)


def _arm_name(dirs: Sequence[Path]) -> str:
    """One run: its directory name; several: their common parent's name (arm/seed_0, arm/seed_1), else joined."""
    if len(dirs) == 1:
        return dirs[0].resolve().name or str(dirs[0])
    parents = {d.resolve().parent for d in dirs}
    if len(parents) == 1 and next(iter(parents)).name:
        return next(iter(parents)).name
    return "+".join(d.resolve().name for d in dirs)


def _as_arm(x: Run | Arm) -> Arm:
    return x if isinstance(x, Arm) else Arm(x.name, (x,))


def compare_arms(control: Arm | Run, treatment: Arm | Run, cfg: CompareConfig = CompareConfig()) -> Comparison:
    """Deltas for every (condition, benchmark) both arms have (every seed run of each), Holm within each condition,
    and the cross-domain deltas. A benchmark whose seeds share no scored item is listed in `skipped`."""
    control, treatment = _as_arm(control), _as_arm(treatment)
    deltas, skipped = [], []
    keys_b = set(treatment.keys)
    for key in sorted(set(control.keys) & keys_b, key=lambda k: (_cond_key(k[0]), k[1])):
        ra = [r.results[key] for r in control.runs]
        rb = [r.results[key] for r in treatment.runs]
        a, b = [item_scores(r) for r in ra], [item_scores(r) for r in rb]
        if not all(a) or not all(b):
            continue  # a run has the summary line but no per-item file: nothing to pair
        try:
            deltas.append(seeds_delta(a, b, item_clusters(ra + rb), cfg, ra[0].benchmark, ra[0].family, key[0]))
        except ValueError as e:
            log.warning("compare: %s", e)
            skipped.append(f"({key[0]}) {e}")
    flags: dict[tuple[str, str], bool] = {}
    for cond in {d.condition for d in deltas}:
        at = [i for i, d in enumerate(deltas) if d.condition == cond]
        ps = [deltas[i].p for i in at]
        for i, f, q in zip(at, holm(ps, cfg.alpha), stats.holm_adjusted(ps)):
            flags[(cond, deltas[i].name)] = f
            deltas[i] = dataclasses.replace(deltas[i], p_holm=q)
    return Comparison(control.name, treatment.name, deltas, flags, _domain_deltas(control, treatment, cfg),
                      (control.seeds, treatment.seeds), skipped)


def compare_pair(control: Run | Arm, treatment: Run | Arm, cfg: CompareConfig = CompareConfig()) -> Comparison:
    """`compare_arms` (kept under its old name: one run is an arm of one seed)."""
    return compare_arms(control, treatment, cfg)


def _by_domain(run: Run) -> dict[str, dict[str, float]]:
    """domain -> {benchmark/id: score} over the plain condition (ids qualified so benchmarks do not collide)."""
    out: dict[str, dict[str, list[float]]] = {}
    for (cond, bench), r in run.results.items():
        if cond != PLAIN:
            continue
        for it in r.items:
            if it.domain:
                out.setdefault(it.domain, {}).setdefault(f"{bench}/{it.id}", []).append(float(it.score))
    return {d: {k: sum(v) / len(v) for k, v in m.items()} for d, m in out.items()}


def _domain_clusters(arms: Sequence[Arm]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for arm in arms:
        for r in arm.runs:
            for (cond, bench), res in r.results.items():
                if cond == PLAIN:
                    for k, c in item_clusters([res], f"{bench}/").items():
                        if out.get(k) is None:
                            out[k] = c
    return out


def _domain_deltas(control: Arm, treatment: Arm, cfg: CompareConfig) -> list[Delta]:
    da, db = [_by_domain(r) for r in control.runs], [_by_domain(r) for r in treatment.runs]
    doms = set.intersection(*(set(m) for m in da + db))
    clusters = _domain_clusters([control, treatment])
    out = []
    for d in domain_order(doms):
        try:
            out.append(seeds_delta([m[d] for m in da], [m[d] for m in db], clusters, cfg, d, "", PLAIN))
        except ValueError as e:
            log.warning("compare: domain %s", e)
    return out


def _scores(x: Run | Arm) -> dict[tuple[str, str], tuple[float, str]]:
    if isinstance(x, Arm):
        return x.scores
    return {k: (r.score, r.family) for k, r in x.results.items()}


def persistence(run: Run | Arm) -> dict[str, float | None]:
    """The persistence panel of one run (or arm: scores averaged over its seeds), each figure over the
    benchmarks that have both conditions involved.

    retention = harmful-steering score / plain score on the same benchmarks (1 = fully kept); without a
    harmful-steering condition, harmful_steering is the "harmful steering" family's score (no retention);
    helpful_steering = instruction compliance under benign system instructions ("helpful steerability"
    results of the helpful-steering condition, else of the plain one, e.g. helpful-instructions);
    attack_retention = after-attack score / plain score on the same benchmarks.
    """
    scores = _scores(run)
    score = {k: s for k, (s, _) in scores.items()}
    plain = {b: s for (c, b), s in score.items() if c == PLAIN}

    def side(cond: str) -> tuple[float | None, float | None]:
        other = {b: s for (c, b), s in score.items() if c == cond and b in plain}
        if not other:
            return None, None
        return float(np.mean([plain[b] for b in other])), float(np.mean(list(other.values())))

    def ratio(x, y):
        return None if x is None or y is None or x <= 0 else y / x

    def family(fam: str, cond: str) -> list[float]:
        return [s for (c, _), (s, f) in scores.items() if c == cond and f == fam]

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
    arms: list[Arm]  # control first
    comparisons: list[Comparison]  # each later arm vs arms[0]
    out_dir: Path
    files: list[Path]  # report.md, compare.json and the plots written

    @property
    def runs(self) -> list[Arm]:
        """The arms (the old name: each arm has a `name` and `trained` as a run did)."""
        return self.arms


def compare_runs(run_dirs: Sequence[Path | Sequence[Path]], out: Path | None = None, step: int | None = None,
                 cfg: CompareConfig = CompareConfig(), names: Sequence[str] | None = None) -> Report:
    """Loads the arms, compares each later one with the first, writes report.md, compare.json and PNG plots.

    run_dirs: one entry per arm, control first: a run directory (one seed) or a list of them (one per
    seed of that arm). names: the arms' labels (default: the directory name; for several seeds their
    common parent's name). out: default LAST_ARM's (first) run directory / "compare".
    """
    from evals import plots

    if len(run_dirs) < 2:
        raise UserError(f"compare: expected at least two runs (control first), got {len(run_dirs)}")
    groups = [[Path(p)] if isinstance(p, (str, Path)) else [Path(q) for q in p] for p in run_dirs]
    if names is not None and len(names) != len(groups):
        raise UserError(f"compare: {len(names)} names for {len(groups)} arms")
    labels = list(names) if names is not None else _unique_names(groups)
    arms = [load_arm(g, step, n) for g, n in zip(groups, labels)]
    comparisons = [compare_arms(arms[0], a, cfg) for a in arms[1:]]
    out_dir = Path(out) if out is not None else groups[-1][0] / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = plots.write_all(arms, comparisons, [persistence(a) for a in arms], out_dir)
    (out_dir / "report.md").write_text(render_markdown(arms, comparisons, cfg, figures))
    (out_dir / "compare.json").write_text(json.dumps(to_json(arms, comparisons), indent=2, allow_nan=False))
    return Report(arms, comparisons, out_dir, [out_dir / "report.md", out_dir / "compare.json", *figures])


def _unique_names(groups: list[list[Path]]) -> list[str]:
    names = [_arm_name(g) for g in groups]
    if len(set(names)) == len(names):
        return names
    return [f"{n} ({g[0].resolve().parent.name})" if names.count(n) > 1 else n for n, g in zip(names, groups)]


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _p(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "—"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _counts_line(s: dict[str, int], alpha: float) -> str:
    return (f"**Improved on {s['improved']} of {s['n']} (significant: {s['significant']}; "
            f"Holm-corrected at alpha {alpha:g}: {s['holm']}).** Worse on {s['worse']} "
            f"(significant: {s['significant_worse']}; Holm: {s['holm_worse']}).")


def _seed_note(c: Comparison) -> str:
    sa, sb = c.seeds
    if sa == 1 and sb == 1:
        return ("**One seed per arm: seed-to-seed variance is NOT in these intervals, p-values or MDEs.** They cover "
                "the item sample only; a difference between two single training runs can be seed luck. Train each "
                "arm with several seeds (`traitrl experiment --seeds N`) to include it.")
    if min(sa, sb) == 1:
        one, many = (c.control, c.treatment) if sa == 1 else (c.treatment, c.control)
        return (f"Arm {one} has one seed: its seed-to-seed variance is assumed equal to that of {many} "
                f"({max(sa, sb)} seeds) -- an assumption, and the test is somewhat anti-conservative then.")
    return (f"Seeds: {sa} (control) and {sb} (treatment); each item's score is its mean over the arm's seeds, and "
            "between-seed variance is in the intervals, p-values and MDEs.")


def _clusters_cell(d: Delta) -> str:
    return f"{d.clusters} (few)" if d.few_clusters else str(d.clusters)


def render_markdown(arms: Sequence[Arm], comparisons: Sequence[Comparison], cfg: CompareConfig,
                    figures: Sequence[Path]) -> str:
    """The report: arms, per-benchmark deltas by condition, cross-domain matrix, persistence panel."""
    shown = {f.name for f in figures}
    cov = f"{100 * (1 - cfg.alpha):g}%"
    md = ["# Run comparison", "",
          (f"Control: **{arms[0].name}**. Deltas are treatment - control over the item ids every run of both arms "
           "scored (an item's score in an arm is its mean over the arm's seeds); items that share a cluster (one "
           "bank fact, one template) count as one unit of evidence. **p**: two-sided paired cluster-level t test "
           "(cluster-robust SE of the paired differences plus between-seed variance, Welch-Satterthwaite df); "
           f"**sig** = p < {cfg.alpha:g}; **Holm p** / **Holm**: Holm-adjusted over every benchmark of the "
           f"condition (family-wise error {cfg.alpha:g}). **{cov} CI**: two-level bootstrap over clusters and "
           f"seeds ({cfg.resamples} resamples, seed {cfg.seed}). **MDE**: the effect this row detects with 80% "
           f"power at two-sided {cfg.alpha:g}; a non-significant row rules out only effects well above its MDE. "
           f"**(few)**: fewer than {stats.FEW_CLUSTERS} clusters, where the test and interval are "
           "anti-conservative: read those rows as indicative. At the margin the interval and p can disagree "
           "(resampling, skewed scores): p decides. Unpaired rows (the arms scored different items) "
           "compare the two means with each arm's clusters resampled on their own."), ""]
    md += _table(["arm", "runs (seeds)", "step", "trained trait domains", "benchmarks", "conditions"],
                 [[a.name, ", ".join(f"`{r.path}`" for r in a.runs), ", ".join(sorted({str(r.step) for r in a.runs})),
                   a.trained, str(len({b for _, b in a.keys})),
                   ", ".join(sorted({c for c, _ in a.keys}, key=_cond_key))] for a in arms])
    for c in comparisons:
        md += ["", f"## {c.treatment} vs {c.control} (control)", "", _seed_note(c)]
        for cond in sorted({d.condition for d in c.deltas}, key=_cond_key):
            ds = [d for d in c.deltas if d.condition == cond]
            md += ["", f"### {cond}", "", _counts_line(c.summary(cond), cfg.alpha), ""]
            md += _table(["benchmark", "family", c.control, c.treatment, "delta", f"{cov} CI", "p", "Holm p", "MDE",
                          "n", "clusters", "seeds", "paired", "sig", "Holm"],
                         [[d.name, d.family, _f(d.a), _f(d.b), _f(d.delta, "+.3f"),
                           f"[{_f(d.ci_low, '+.3f')}, {_f(d.ci_high, '+.3f')}]", _p(d.p), _p(d.p_holm), _f(d.mde),
                           str(d.n), _clusters_cell(d), f"{d.seeds_a}/{d.seeds_b}", "yes" if d.paired else "no",
                           "*" if d.significant else "", "*" if c.holm[(d.condition, d.name)] else ""] for d in ds])
        if c.skipped:
            md += ["", "Not compared: " + "; ".join(c.skipped)]
    if "deltas.png" in shown:
        md += ["", "![per-benchmark deltas](deltas.png)"]
    md += ["", "## Cross-domain matrix", "",
           (f"Rows: each treatment with the trait domains it trained on (control **{arms[0].name}**: "
            f"{arms[0].trained}); columns: the domain of the evaluated items (plain condition, all benchmarks "
            f"pooled, clusters kept per benchmark); cell: delta of the mean item score vs the control, * = p < "
            f"{cfg.alpha:g} (not corrected for the many cells)."), ""]
    domains = domain_order({d.name for c in comparisons for d in c.domains})
    if domains:
        md += _table(["arm (trained on)", *domains],
                     [[f"{c.treatment} ({_trained(arms, c.treatment)})",
                       *(_cell({d.name: d for d in c.domains}.get(dom)) for dom in domains)] for c in comparisons])
        md += ["", "Mean item score per domain (averaged over each arm's seeds):", ""]
        md += _table(["arm", *domains], [[a.name, *(_f(_domain_mean(a, d)) for d in domains)] for a in arms])
        if "cross_domain.png" in shown:
            md += ["", "![cross-domain matrix](cross_domain.png)"]
    else:
        md += ["No item has a domain in both arms."]
    md += ["", "## Persistence", "",
           ("plain / harmful-steering: mean score over the benchmarks evaluated in both conditions; retention = "
            "harmful-steering / plain; helpful-steering: compliance with benign instructions (trait kept); after "
            "attack: the same after the harmful fine-tuning attack (`traitrl attack`), vs plain on the same "
            "benchmarks. Arms with several seeds: scores averaged over the seeds."), ""]
    panels = [persistence(a) for a in arms]
    md += _table(["arm", "trained", "plain", "harmful-steering", "retention", "helpful-steering",
                  "plain (attack set)", "after attack", "attack retention"],
                 [[a.name, a.trained, *(_f(p[k]) for k in ("plain", "harmful_steering", "retention",
                                                            "helpful_steering", "plain_before_attack",
                                                            "after_attack", "attack_retention"))]
                  for a, p in zip(arms, panels)])
    if "persistence.png" in shown:
        md += ["", "![persistence](persistence.png)"]
    return "\n".join(md) + "\n"


def _domain_mean(arm: Arm, domain: str) -> float | None:
    means = [np.mean(list(m[domain].values())) for m in (_by_domain(r) for r in arm.runs) if domain in m]
    return float(np.mean(means)) if len(means) == arm.seeds else None


def _cond_key(c: str):
    return (CONDITIONS.index(c) if c in CONDITIONS else len(CONDITIONS), c)


def _trained(arms: Sequence[Arm], name: str) -> str:
    return next(a.trained for a in arms if a.name == name)


def _cell(d: Delta | None) -> str:
    return "—" if d is None else f"{d.delta:+.3f}{'*' if d.significant else ''}"


def _finite(x):
    """JSON has no NaN / Infinity: None instead."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _delta_json(d: Delta, **extra) -> dict:
    return {**{k: _finite(v) for k, v in dataclasses.asdict(d).items()}, "significant": d.significant,
            "few_clusters": d.few_clusters, **extra}


def to_json(arms: Sequence[Arm], comparisons: Sequence[Comparison]) -> dict:
    """Everything in the report, machine-readable (for `traitrl experiment` and notebooks).

    "runs" holds one entry per arm ("path" / "step": its first run's, "paths" / "steps": every seed's).
    """
    return {
        "runs": [{"name": a.name, "path": str(a.runs[0].path), "step": a.runs[0].step,
                  "paths": [str(r.path) for r in a.runs], "steps": [r.step for r in a.runs], "seeds": a.seeds,
                  "trained": a.trained, "persistence": persistence(a)} for a in arms],
        "comparisons": [{
            "control": c.control, "treatment": c.treatment, "seeds": list(c.seeds),
            "summary": {cond: c.summary(cond) for cond in sorted({d.condition for d in c.deltas}, key=_cond_key)},
            "deltas": [_delta_json(d, holm=c.holm[(d.condition, d.name)]) for d in c.deltas],
            "domains": [_delta_json(d) for d in c.domains],
            "skipped": c.skipped,
        } for c in comparisons],
    }
