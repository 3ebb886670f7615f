"""Statistics of eval results: cluster bootstrap of a mean, paired comparison of two arms, Holm.

Benchmark items are not independent draws: held-out items built from one bank fact, or BBQ items
from one template, share a cluster (`Item.cluster`; None = the item is its own cluster). Every
interval and test here resamples or sums over CLUSTERS, never items, so correlated items do not
pass for independent evidence.

An arm of an experiment is one training config, possibly trained with several seeds (one run each).
Two arms are compared paired by item id:

    y[X, s, i]  score of arm X's seed s on item i (X = A control, B treatment)
    d_i         = mean_s y[B, s, i] - mean_s y[A, s, i]       (per-item paired difference)
    delta       = mean_i d_i                                   (what the report calls "delta")

Variance of delta (`paired_test`), as the sum of two parts that do not overlap:

    V_cluster   cluster-robust (CR1) variance of the mean of d over clusters:
                C / (C - 1) * sum_c (D_c - delta * n_c)^2 / N^2, with D_c, n_c cluster totals / sizes.
                It covers the item sample (which clusters were drawn, effect heterogeneity across them)
                and each trained model's item-level idiosyncrasy (seed x item noise, averaged over seeds).
    V_seed[X]   between-seed variance of arm X's mean, sigma_a^2 / S_X, where sigma_a^2 is the variance
                of a seed's overall shift (one seed's model is better on everything). The spread of the
                seeds' means also contains the seed x item noise already in V_cluster, so that part is
                estimated (cluster-robust variance of each seed's deviations from the item means) and
                subtracted: sigma_a^2 = max(0, var_s(mean_i y[X, s, i]) - that part). With one seed the
                part is 0: not known, NOT "no seed variance" -- the report says so.

    SE = sqrt(V_cluster + V_seed[A] + V_seed[B])

Decision rule (`p`, "significant", Holm): a two-sided t test of delta / SE with Welch-Satterthwaite
degrees of freedom (C - 1 for the cluster part, S_X - 1 for each seed part; see `seed_terms`). It is
closed form (no resampling noise, so a simulation runs exactly the report's rule on thousands of
datasets) and its df shrink with few clusters or seeds, where a percentile bootstrap is anti-conservative.

Minimum detectable effect at 80% power, two-sided alpha: MDE = (t_{1-alpha/2, df} + t_{0.8, df}) * SE,
which is (z_0.975 + z_0.8) * SE = 2.80 * SE once df is large (and larger, honestly, when it is not).

Interval: a two-level bootstrap (`paired_bootstrap_ci`): clusters of paired items are resampled with
replacement and, independently, each arm's seeds (their centred overall shifts, scaled to sigma_a^2),
so between-seed variance enters the interval. The levels are ADDED rather than nested: resampling seeds
and items of the crossed seed x item table jointly (the "pigeonhole" bootstrap, Owen 2007) counts the
seed x item noise about three times, which with 3 seeds made 3 seeds no tighter than 1. Two
small-sample corrections (cluster level scaled by sqrt(C/(C-1)), percentile arms widened by t_df / z)
make the interval agree with the test.

Checked by simulation (500 items in 150 clusters of 3-4, rubric-like scores in quarters, cluster-level
effect heterogeneity; tests/evals/test_stats.py): power at a planted +0.05 with one seed per arm 80.7%
(400 datasets; mean MDE 0.048); false positives at nominal 5%: 4.7% (1000 datasets) and 5.3% (another
1000), against 7.5% for the same test treating items as independent; 5.0% with 3 seeds per arm whose
overall shifts have sd 0.02 (500 datasets; a single run per arm of the same data: 31%). Scratch runs
of 2000-4000 datasets: 5.5-5.9% at 2 seeds per arm, 2.4-3.5% when seeds do not differ overall;
interval coverage 93-96%.

Known limits, said where they apply:
- few clusters (< FEW_CLUSTERS = 30): the CR1 variance is biased down and the t reference only
  approximate, so the test is somewhat anti-conservative; an uncorrected percentile bootstrap (as in
  `cluster_bootstrap_ci`, the per-benchmark interval) more so. Rows with few clusters are flagged.
- few seeds (2-3): sigma_a^2 rests on 2-3 numbers; the Satterthwaite df keep the size near nominal,
  but the power is low and the MDE large. The bootstrap's seed level takes only 4-27 distinct values.
- one seed in one arm, several in the other: the one-seed arm's seed variance is assumed equal to the
  other arm's ("borrowed"); about 7% false positives at nominal 5% with 1 vs 3 seeds in simulation.
- one seed per arm: between-seed variance is NOT in the interval, p or MDE: they cover item sampling
  only, and a difference between two single training runs may be seed luck. The report says so.
- items scored by only some runs are left out (the paired set is the items every run of both arms
  scored); when the arms scored mostly different items the comparison is unpaired (each arm's own
  clusters, independently) and much less sensitive.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Sequence

import numpy as np

FEW_CLUSTERS = 30  # below this many clusters the CR1 t test and the percentile bootstrap are anti-conservative
POWER = 0.8  # power the minimum detectable effect is quoted at


# ---------------------------------------------------------------- clusters


def cluster_index(ids: Sequence[str], clusters: Sequence[str | None] | None = None) -> tuple[np.ndarray, int]:
    """Each item's cluster as an index 0..C-1 (in order of first appearance), and C.

    None (or no `clusters` at all) makes the item its own cluster -- keyed by its id, so repeated
    samples of one prompt (the same id twice) stay together.
    """
    keys: dict[Hashable, int] = {}
    clusters = [None] * len(ids) if clusters is None else clusters
    if len(clusters) != len(ids):
        raise ValueError(f"cluster_index: {len(ids)} ids but {len(clusters)} clusters")
    idx = np.fromiter((keys.setdefault(("item", i) if c is None else ("cluster", c), len(keys))
                       for i, c in zip(ids, clusters)), np.int64, len(ids))
    return idx, len(keys)


def _draw_counts(rng: np.random.Generator, resamples: int, k: int, size: int | None = None) -> np.ndarray:
    """resamples x k counts: how often each of k units is drawn in a resample of `size` (default k) with replacement.

    Row blocks keep the resamples x size index array small; bincount over row offsets is much faster than
    Generator.multinomial row by row.
    """
    size = k if size is None else size
    out = np.empty((resamples, k), np.int64)
    block = max(1, min(resamples, 4_000_000 // max(size, 1)))
    for s in range(0, resamples, block):
        r = min(block, resamples - s)
        draw = rng.integers(0, k, size=(r, size)) + k * np.arange(r)[:, None]
        out[s:s + r] = np.bincount(draw.ravel(), minlength=r * k).reshape(r, k)
    return out


def cluster_bootstrap_ci(scores: Sequence[float], cluster_idx: np.ndarray | None = None, *, resamples: int = 1000,
                         seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean: clusters resampled with replacement, all items of a cluster together.

    The resampled mean is sum(drawn clusters' totals) / sum(their sizes), the mean over the items drawn.
    With every item its own cluster (`cluster_idx` None) this is the plain item bootstrap, draw for draw.
    Deterministic for given scores and seed. With few clusters (< FEW_CLUSTERS) the interval is too
    narrow (percentile bootstrap of a mean: spread sqrt((C-1)/C) too small, normal tails).
    """
    x = np.asarray(scores, np.float64)
    if x.size == 0:
        raise ValueError("cluster_bootstrap_ci: no scores")
    idx = np.arange(x.size) if cluster_idx is None else np.asarray(cluster_idx)
    c = int(idx.max()) + 1
    totals, sizes = np.bincount(idx, x, c), np.bincount(idx, minlength=c).astype(np.float64)
    rng = np.random.default_rng(seed)
    # One draw of resamples x C indices (as the item bootstrap always did, so old intervals reproduce exactly),
    # in row blocks only when that array would be large.
    block = max(1, min(resamples, 20_000_000 // c))
    means = np.empty(resamples)
    for s in range(0, resamples, block):
        k = min(block, resamples - s)
        draw = rng.integers(0, c, size=(k, c))
        means[s:s + k] = totals[draw].sum(axis=1) / sizes[draw].sum(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _crv(values_N: np.ndarray, idx: np.ndarray, c: int) -> float:
    """Cluster-robust (CR1) variance of the mean of `values_N`: C/(C-1) * sum_c (total_c - mean * n_c)^2 / N^2."""
    n = values_N.shape[-1]
    if c < 2:
        return math.nan
    resid = np.bincount(idx, values_N, c) - values_N.mean() * np.bincount(idx, minlength=c)
    return float(c / (c - 1) * np.sum(resid**2) / n**2)


# ---------------------------------------------------------------- seeds


@dataclasses.dataclass(frozen=True)
class SeedPart:
    """One arm's between-seed variance component (see the module docstring)."""

    seeds: int  # S, runs of the arm
    var_shift: float  # sigma_a^2: variance of a seed's overall shift (0 with one seed: not estimable)
    raw: float  # sample variance of the seeds' means (includes seed x item noise); 0 with one seed
    shifts: np.ndarray  # S: each seed's mean minus the arm's mean, over the compared items

    @property
    def var(self) -> float:
        """Its part of Var(delta): sigma_a^2 / S."""
        return self.var_shift / self.seeds


def seed_part(y_SxN: np.ndarray, idx: np.ndarray, c: int) -> SeedPart:
    """sigma_a^2 of one arm: spread of the seeds' means, less the seed x item noise that V_cluster already has.

    Each seed's deviation from the item means, r_si = y_si - mean_s y_si, has cluster-robust variance
    (S-1)/S * Var(mean_i eps_si) in expectation, so Var(mean_i eps_si) is estimated as S/(S-1) times
    its average over seeds and taken off the raw variance of the seeds' means (floored at 0).
    """
    s = y_SxN.shape[0]
    means = y_SxN.mean(axis=1)
    shifts = means - means.mean()
    if s < 2:
        return SeedPart(s, 0.0, 0.0, shifts)
    raw = float(np.var(means, ddof=1))
    resid = y_SxN - y_SxN.mean(axis=0, keepdims=True)
    noise = s / (s - 1) * float(np.mean([_crv(r, idx, c) for r in resid])) if c >= 2 else 0.0
    return SeedPart(s, max(0.0, raw - noise), raw, shifts)


# ---------------------------------------------------------------- the test


def seed_terms(sa: SeedPart, sb: SeedPart) -> tuple[list[tuple[float, float]], str]:
    """The seed parts of Var(delta) as (variance, Satterthwaite denominator term), and how they were got.

    "own": both arms have >= 2 seeds, each its own sigma_a^2 / S. "borrowed": one arm has a single seed,
    so its seed variance is taken as the other arm's sigma_a^2 (same recipe, different data: an
    assumption, said in the report); the two terms are one estimate, so they enter as one term,
    sigma_a^2 * (1/S_A + 1/S_B). "none": one seed per arm, no seed variance in se, p, MDE or interval.

    A term sigma_a^2 / S = (raw - noise) / S enters the denominator with the df of its RAW spread (raw / S
    on S - 1 df): the subtraction leaves the estimate as noisy as raw, and counting it on S - 1 df as if
    it were a clean variance gave 8% false positives at 2 seeds per arm instead of 5% in simulation.
    """
    if sa.seeds >= 2 and sb.seeds >= 2:
        return [(s.var_shift / s.seeds, (s.raw / s.seeds) ** 2 / (s.seeds - 1)) for s in (sa, sb)
                if s.var_shift > 0], "own"
    if max(sa.seeds, sb.seeds) < 2:
        return [], "none"
    src = sa if sa.seeds >= 2 else sb
    w = 1 / sa.seeds + 1 / sb.seeds
    return ([(src.var_shift * w, (src.raw * w) ** 2 / (src.seeds - 1))] if src.var_shift > 0 else []), "borrowed"


@dataclasses.dataclass(frozen=True)
class DeltaTest:
    """The closed-form test of delta = 0 (the report's decision rule) and its minimum detectable effect."""

    a: float  # control mean over the compared items (seed-averaged)
    b: float  # treatment mean
    delta: float  # b - a
    se: float  # standard error of delta (cluster part + seed parts); NaN with < 2 clusters
    se_seeds: float  # the between-seed part of se: sqrt(seed parts) (0 when seed_variance is "none")
    df: float  # Welch-Satterthwaite degrees of freedom of the t reference
    p: float  # two-sided p-value of delta = 0
    mde: float  # minimum detectable effect at POWER, two-sided `alpha`
    n: int  # items compared (pairs when paired; both arms' items when not)
    clusters: int  # clusters compared (the smaller arm's when unpaired)
    seeds_a: int  # runs (training seeds) of the control arm
    seeds_b: int  # runs of the treatment arm
    seed_variance: str  # "own" | "borrowed" | "none" (see `seed_terms`)
    paired: bool


def _t_test(delta: float, v_clusters: Sequence[tuple[float, int]], seeds: Sequence[tuple[float, float]],
            alpha: float) -> tuple[float, float, float, float]:
    """(se, df, p, mde) from the cluster parts (variance, clusters) and the seed terms (variance, denominator).

    Welch-Satterthwaite df = var^2 / (sum_cluster v^2 / (C - 1) + sum of the seed terms' denominators).
    """
    from scipy import special

    if any(c < 2 or math.isnan(v) for v, c in v_clusters):  # fewer than 2 clusters: no variance to estimate
        return math.nan, 0.0, 1.0, math.nan
    var = sum(v for v, _ in v_clusters) + sum(v for v, _ in seeds)
    if var <= 0:  # every paired difference is the same number: no noise to test against
        return 0.0, math.inf, (1.0 if delta == 0 else 0.0), 0.0
    df = var**2 / (sum(v**2 / (c - 1) for v, c in v_clusters) + sum(d for _, d in seeds))
    se = math.sqrt(var)
    p = float(min(1.0, 2 * special.stdtr(df, -abs(delta) / se)))
    mde = float((special.stdtrit(df, 1 - alpha / 2) + special.stdtrit(df, POWER)) * se)
    return se, float(df), p, mde


def _arrays(*ys) -> list[np.ndarray]:
    return [np.atleast_2d(np.asarray(y, np.float64)) for y in ys]


def paired_test(a_SxN: np.ndarray, b_SxN: np.ndarray, cluster_idx: np.ndarray, alpha: float = 0.05) -> DeltaTest:
    """Paired test of treatment - control over the same N items (columns), S_A and S_B seeds (rows).

    cluster_idx: each item's cluster 0..C-1 (`cluster_index`). See the module docstring for the model.
    Fewer than 2 clusters: no variance to estimate (se NaN, p 1, never significant).
    """
    a, b = _arrays(a_SxN, b_SxN)
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"paired_test: expected the same items in both arms, got {a.shape} and {b.shape}")
    idx = np.asarray(cluster_idx)
    c = int(idx.max()) + 1
    d = b.mean(axis=0) - a.mean(axis=0)
    delta = float(d.mean())
    terms, how = seed_terms(seed_part(a, idx, c), seed_part(b, idx, c))
    se, df, p, mde = _t_test(delta, [(_crv(d, idx, c), c)], terms, alpha)
    return DeltaTest(float(a.mean()), float(b.mean()), delta, se, math.sqrt(sum(v for v, _ in terms)), df, p, mde,
                     d.size, c, a.shape[0], b.shape[0], how, True)


def unpaired_test(a_SxN: np.ndarray, a_idx: np.ndarray, b_SxN: np.ndarray, b_idx: np.ndarray,
                  alpha: float = 0.05) -> DeltaTest:
    """Test of mean(B) - mean(A) when the arms scored different items: each arm's clusters independently."""
    a, b = _arrays(a_SxN, b_SxN)
    ia, ib = np.asarray(a_idx), np.asarray(b_idx)
    ca, cb = int(ia.max()) + 1, int(ib.max()) + 1
    ya, yb = a.mean(axis=0), b.mean(axis=0)
    terms, how = seed_terms(seed_part(a, ia, ca), seed_part(b, ib, cb))
    delta = float(yb.mean() - ya.mean())
    se, df, p, mde = _t_test(delta, [(_crv(ya, ia, ca), ca), (_crv(yb, ib, cb), cb)], terms, alpha)
    return DeltaTest(float(ya.mean()), float(yb.mean()), delta, se, math.sqrt(sum(v for v, _ in terms)), df, p, mde,
                     ya.size + yb.size, min(ca, cb), a.shape[0], b.shape[0], how, False)


# ---------------------------------------------------------------- the interval


def _seed_draws(own: SeedPart, other: SeedPart, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """An arm's resampled mean seed shift: the mean of S draws of its centred seed shifts, with replacement.

    Scaled so its variance is sigma_a^2 / S (the plain resampled mean has (S-1)/S^2 * raw). A one-seed arm
    draws one shift from the other arm's seeds (the "borrowed" case of `seed_terms`); zeros when neither
    arm has 2 seeds.
    """
    src = own if own.seeds >= 2 else other
    if src.seeds < 2 or src.raw <= 0 or src.var_shift <= 0:
        return np.zeros(resamples)
    scale = math.sqrt(src.seeds / (src.seeds - 1) * src.var_shift / src.raw)
    counts = _draw_counts(rng, resamples, src.seeds, own.seeds)
    return counts @ (scale * src.shifts) / own.seeds


def _cluster_draws(values_N: np.ndarray, idx: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Cluster-resampled means, their spread around the mean scaled by sqrt(C/(C-1)) to match the CR1 variance."""
    c = int(idx.max()) + 1
    k = _draw_counts(rng, resamples, c).astype(np.float64)
    m = values_N.mean()
    return m + math.sqrt(c / (c - 1)) * ((k @ np.bincount(idx, values_N, c)) / (k @ np.bincount(idx, minlength=c)) - m)


def _interval(boot: np.ndarray, delta: float, alpha: float, df: float) -> tuple[float, float]:
    """Percentile interval, its arms widened by t_{1-alpha/2, df} / z_{1-alpha/2} (1.008 at 150 clusters)."""
    from scipy import special

    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    f = 1.0 if not math.isfinite(df) or df <= 0 else float(special.stdtrit(df, 1 - alpha / 2)
                                                             / special.ndtri(1 - alpha / 2))
    return float(delta - f * (delta - lo)), float(delta + f * (hi - delta))


def paired_bootstrap_ci(a_SxN: np.ndarray, b_SxN: np.ndarray, cluster_idx: np.ndarray, *, resamples: int = 10_000,
                        seed: int = 0, alpha: float = 0.05, df: float = math.inf) -> tuple[float, float]:
    """Two-level bootstrap interval of delta: clusters of paired items, and each arm's seeds, resampled.

    delta* = (cluster-resampled mean of d) + (B's resampled seed shift) - (A's). Two small-sample
    corrections make its spread that of the test's SE, so the interval and the p-value agree: the cluster
    level is scaled by sqrt(C/(C-1)) and the percentile interval is widened by t_df / z (pass the test's
    df; the default, infinite df, leaves the plain percentile interval). With one seed per arm the seed
    levels are 0: seed variance is not in it. With 2-3 seeds the seed level is coarse (4-27 distinct
    values), so the interval is only roughly right; the p-value is the decision rule.
    """
    a, b = _arrays(a_SxN, b_SxN)
    idx = np.asarray(cluster_idx)
    c = int(idx.max()) + 1
    if c < 2:
        return math.nan, math.nan
    d = b.mean(axis=0) - a.mean(axis=0)
    sa, sb = seed_part(a, idx, c), seed_part(b, idx, c)
    rng = np.random.default_rng(seed)
    boot = _cluster_draws(d, idx, rng, resamples) + _seed_draws(sb, sa, rng, resamples) - _seed_draws(
        sa, sb, rng, resamples)
    return _interval(boot, float(d.mean()), alpha, df)


def unpaired_bootstrap_ci(a_SxN: np.ndarray, a_idx: np.ndarray, b_SxN: np.ndarray, b_idx: np.ndarray, *,
                          resamples: int = 10_000, seed: int = 0, alpha: float = 0.05,
                          df: float = math.inf) -> tuple[float, float]:
    """Bootstrap interval of mean(B) - mean(A) over different items: each arm's clusters resampled on its own."""
    a, b = _arrays(a_SxN, b_SxN)
    ia, ib = np.asarray(a_idx), np.asarray(b_idx)
    ca, cb = int(ia.max()) + 1, int(ib.max()) + 1
    if min(ca, cb) < 2:
        return math.nan, math.nan
    ya, yb = a.mean(axis=0), b.mean(axis=0)
    sa, sb = seed_part(a, ia, ca), seed_part(b, ib, cb)
    rng = np.random.default_rng(seed)
    boot = _cluster_draws(yb, ib, rng, resamples) - _cluster_draws(ya, ia, rng, resamples)
    boot += _seed_draws(sb, sa, rng, resamples) - _seed_draws(sa, sb, rng, resamples)
    return _interval(boot, float(yb.mean() - ya.mean()), alpha, df)


# ---------------------------------------------------------------- many benchmarks at once


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down: rejects the i-th smallest p while p <= alpha / (m - i); controls family-wise error."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    reject = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        reject[i] = True
    return reject


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: max over j <= i of min(1, (m - j + 1) p_(j)).

    holm(p, alpha)[i] is exactly adjusted[i] <= alpha.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
