"""evals.stats: cluster bootstrap, the paired arm comparison, Holm; and a power / size simulation of the
decision rule `traitrl compare` reports (evals.compare.seeds_delta -> Delta.significant)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from evals import stats
from evals.compare import CompareConfig, seeds_delta

# ---------------------------------------------------------------- synthetic arms

N_ITEMS, N_CLUSTERS = 500, 150
SIZES = np.array([4] * 50 + [3] * 100)  # 150 clusters of 3-4 items (e.g. items built from one bank fact)
CLUSTER_OF = np.repeat(np.arange(N_CLUSTERS), SIZES)
IDS = [f"item{i:03d}" for i in range(N_ITEMS)]
CLUSTERS = {i: f"fact{c}" for i, c in zip(IDS, CLUSTER_OF)}


def simulate(datasets: int, effect: float, seeds_a: int = 1, seeds_b: int = 1, seed_sd: float = 0.0,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Control and treatment scores, datasets x seeds x items, rubric-like (0, 1/4, ..., 1), planted mean effect.

    An item's chance p of meeting each of 4 rubric criteria: 0.25-0.75, from a cluster level (logit sd 1:
    items of one fact are strongly alike) and an item level (sd 0.7). The treatment adds `effect` plus a
    cluster-level effect heterogeneity uniform in +-0.15 (mean 0: some facts gain, some lose, so paired
    differences are correlated within a cluster); every trained model (arm x seed) adds its own
    cluster-level idiosyncrasy (+-0.05) and an overall seed shift (normal, sd `seed_sd`). No clipping
    is needed at seed_sd 0, so the expected treatment - control mean is exactly `effect`.
    """
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 1.0, (datasets, N_CLUSTERS))[:, CLUSTER_OF] + rng.normal(0, 0.7, (datasets, N_ITEMS))
    p_a = 0.25 + 0.5 / (1 + np.exp(-level))
    p_b = p_a + effect + rng.uniform(-0.15, 0.15, (datasets, N_CLUSTERS))[:, CLUSTER_OF]

    def runs(p, s):
        own = rng.uniform(-0.05, 0.05, (datasets, s, N_CLUSTERS))[:, :, CLUSTER_OF]
        shift = rng.normal(0, seed_sd, (datasets, s, 1))
        return rng.binomial(4, np.clip(p[:, None, :] + own + shift, 0, 1)) / 4

    return runs(p_a, seeds_a), runs(p_b, seeds_b)


def report_rule(a_SxN: np.ndarray, b_SxN: np.ndarray, resamples: int = 100):
    """What the compare report does with one benchmark: per-seed {id: score} dicts in, a Delta out."""
    a = [dict(zip(IDS, row.tolist())) for row in a_SxN]
    b = [dict(zip(IDS, row.tolist())) for row in b_SxN]
    return seeds_delta(a, b, CLUSTERS, CompareConfig(resamples=resamples), "sim")


def _slack(rate: float, n: int) -> float:
    """One-sided 95% binomial margin: a rule of exact size `rate` exceeds rate + this in only 5% of runs."""
    return 1.645 * math.sqrt(rate * (1 - rate) / n)


# ---------------------------------------------------------------- the simulation


def test_power_and_size_of_the_reported_decision_rule():
    """+0.05 on 500 items in 150 clusters: significant in >= 80% of datasets; no effect: at most ~5% (per benchmark,
    before Holm). Uses the report's own function end to end (bootstrap at 100 resamples: the interval does not
    enter the decision, which is the closed-form t test)."""
    t0 = time.perf_counter()
    a, b = simulate(400, 0.05, seed=1)
    hits = [report_rule(a[k], b[k]) for k in range(len(a))]
    power = np.mean([d.significant for d in hits])
    mde = np.mean([d.mde for d in hits])
    assert all(d.paired and d.n == N_ITEMS and d.clusters == N_CLUSTERS and d.seed_variance == "none" for d in hits)
    assert power >= 0.80, power
    assert mde < 0.05  # consistent: the effect is above the MDE the report quotes, and the power above 80%

    a, b = simulate(1000, 0.0, seed=2)
    nulls = [report_rule(a[k], b[k]) for k in range(len(a))]
    fpr = np.mean([d.significant for d in nulls])
    # A rule of exact size 5% shows more than 5% in about half of all finite simulations; the assertion allows
    # the binomial margin (5% + 1.1 points at 1000 datasets) and catches a real excess such as ignoring clusters.
    assert fpr <= 0.05 + _slack(0.05, len(nulls)), fpr
    # the interval, at full resamples on a subset: covers the true delta about 95% of the time
    cover = [lo <= 0.0 <= hi for lo, hi in
             (stats.paired_bootstrap_ci(a[k], b[k], CLUSTER_OF, resamples=1000, seed=k, df=nulls[k].df)
              for k in range(150))]
    assert np.mean(cover) >= 0.90
    print(f"power {power:.3f} (400 datasets, mean MDE {mde:.4f}), false-positive rate {fpr:.3f} (1000 datasets), "
          f"interval coverage {np.mean(cover):.3f} (150), {time.perf_counter() - t0:.1f}s")


def test_ignoring_clusters_would_be_anti_conservative():
    """The same null datasets tested as if every item were independent: clearly above 5% (why clusters matter)."""
    a, b = simulate(1000, 0.0, seed=3)
    each = np.arange(N_ITEMS)
    naive = np.mean([stats.paired_test(a[k], b[k], each).p < 0.05 for k in range(len(a))])
    clustered = np.mean([stats.paired_test(a[k], b[k], CLUSTER_OF).p < 0.05 for k in range(len(a))])
    # design effect ~1.2 here (paired differences correlate ~0.08 within a cluster): about 7% instead of 5%
    assert naive > 0.06 and naive > clustered + 0.015, (naive, clustered)
    assert clustered <= 0.05 + _slack(0.05, len(a))


def test_size_with_three_seeds_per_arm_and_seed_shifts():
    """Seeds that differ overall (sd 0.02): the seed-aware rule keeps its size; comparing one seed per arm of the
    same data (seed variance unknown, as the report warns) does not."""
    a, b = simulate(500, 0.0, seeds_a=3, seeds_b=3, seed_sd=0.02, seed=4)
    seeded = [stats.paired_test(a[k], b[k], CLUSTER_OF) for k in range(len(a))]
    fpr = np.mean([t.p < 0.05 for t in seeded])
    assert all(t.seed_variance == "own" and t.seeds_a == 3 for t in seeded)
    assert fpr <= 0.05 + _slack(0.05, len(seeded)), fpr
    one = np.mean([stats.paired_test(a[k, :1], b[k, :1], CLUSTER_OF).p < 0.05 for k in range(len(a))])
    assert one > 0.15, one  # a single run per arm is dominated by seed luck here


# ---------------------------------------------------------------- unit tests


def test_cluster_bootstrap_is_wider_than_item_bootstrap_when_clusters_are_correlated():
    rng = np.random.default_rng(0)
    cl = np.repeat(np.arange(30), 10)  # 30 clusters of 10 strongly alike items
    x = np.clip(rng.normal(0.5, 0.25, 30)[cl] + rng.normal(0, 0.05, 300), 0, 1)
    lo_i, hi_i = stats.cluster_bootstrap_ci(x)
    lo_c, hi_c = stats.cluster_bootstrap_ci(x, cl)
    assert lo_c < x.mean() < hi_c
    assert (hi_c - lo_c) > 2 * (hi_i - lo_i)
    # independent clusters of one item each: the same interval, draw for draw
    assert stats.cluster_bootstrap_ci(x, np.arange(300)) == (lo_i, hi_i)


def test_item_bootstrap_is_unchanged():
    """With no clusters the interval is exactly the item bootstrap it always was (old results reproduce)."""
    x = np.random.default_rng(5).random(40)
    means = x[np.random.default_rng(0).integers(0, 40, size=(1000, 40))].mean(1)
    assert stats.cluster_bootstrap_ci(x) == tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))


def test_cluster_index_keeps_unclustered_items_apart_and_repeats_together():
    idx, c = stats.cluster_index(["a", "b", "c", "a", "d"], ["f1", None, "f1", None, None])
    assert c == 4 and idx.tolist() == [0, 1, 0, 2, 3]
    idx, c = stats.cluster_index(["x", "y", "x"])
    assert c == 2 and idx.tolist() == [0, 1, 0]


def test_paired_test_matches_the_cr1_formula():
    rng = np.random.default_rng(1)
    cl = np.repeat(np.arange(12), 3)
    a, b = rng.random(36), rng.random(36)
    t = stats.paired_test(a, b, cl)
    d = b - a
    tot = np.array([d[cl == c].sum() for c in range(12)])
    var = 12 / 11 * np.sum((tot - d.mean() * 3) ** 2) / 36**2
    assert t.se == pytest.approx(math.sqrt(var)) and t.df == pytest.approx(11)
    from scipy import stats as sps

    assert t.p == pytest.approx(2 * sps.t.sf(abs(d.mean()) / math.sqrt(var), 11))
    assert t.mde == pytest.approx((sps.t.ppf(0.975, 11) + sps.t.ppf(0.8, 11)) * math.sqrt(var))
    assert t.clusters == 12 and t.n == 36 and t.seed_variance == "none" and t.se_seeds == 0


def test_mde_is_the_z_formula_with_many_clusters():
    rng = np.random.default_rng(2)
    t = stats.paired_test(rng.random(4000), rng.random(4000), np.arange(4000))
    z = 1.959963984540054 + 0.8416212335729143
    assert t.mde == pytest.approx(z * t.se, rel=2e-3)


def test_degenerate_inputs():
    same = np.array([0.0, 1.0, 0.5, 1.0])
    t = stats.paired_test(same, same, np.arange(4))
    assert t.delta == 0 and t.p == 1.0 and t.se == 0
    one_cluster = stats.paired_test(same, same[::-1], np.zeros(4, int))
    assert math.isnan(one_cluster.se) and one_cluster.p == 1.0
    assert all(math.isnan(v) for v in stats.paired_bootstrap_ci(same, same[::-1], np.zeros(4, int)))


def test_seeds_that_disagree_widen_the_interval():
    """Same seed-averaged item scores; seeds that differ overall make se, MDE, p and the interval larger."""
    rng = np.random.default_rng(3)
    base_a, base_b = rng.random(300) * 0.8, rng.random(300) * 0.8 + 0.05
    cl = np.repeat(np.arange(100), 3)
    jitter = rng.normal(0, 0.01, (3, 300))
    jitter -= jitter.mean(0)
    shifts = np.array([[-0.06], [0.0], [0.06]])
    agree = stats.paired_test(base_a + jitter, base_b + jitter[::-1], cl)
    disagree = stats.paired_test(base_a + jitter + shifts, base_b + jitter[::-1] - shifts, cl)
    assert agree.delta == pytest.approx(disagree.delta)
    assert disagree.se_seeds > 0.02 and agree.se_seeds < 0.005
    assert disagree.se > 1.5 * agree.se and disagree.mde > agree.mde and disagree.p > agree.p
    w = [np.subtract(*stats.paired_bootstrap_ci(x, y, cl, resamples=4000, df=t.df)[::-1])
         for x, y, t in ((base_a + jitter, base_b + jitter[::-1], agree),
                         (base_a + jitter + shifts, base_b + jitter[::-1] - shifts, disagree))]
    assert w[1] > 1.5 * w[0]


def test_one_seed_arm_borrows_the_other_arms_seed_variance():
    rng = np.random.default_rng(4)
    a = rng.random((1, 200))
    b = rng.random((3, 200)) + np.array([[-0.05], [0.0], [0.05]])
    t = stats.paired_test(a, b, np.arange(200))
    assert t.seed_variance == "borrowed" and t.se_seeds > 0 and (t.seeds_a, t.seeds_b) == (1, 3)
    assert stats.paired_test(a, b[:1], np.arange(200)).seed_variance == "none"


def test_unpaired_test_uses_each_arms_clusters():
    rng = np.random.default_rng(6)
    a, b = rng.random(300), rng.random(200) + 0.2
    t = stats.unpaired_test(a, np.repeat(np.arange(100), 3), b, np.repeat(np.arange(100), 2))
    assert not t.paired and t.n == 500 and t.clusters == 100 and t.p < 0.001
    lo, hi = stats.unpaired_bootstrap_ci(a, np.repeat(np.arange(100), 3), b, np.repeat(np.arange(100), 2),
                                         resamples=2000, df=t.df)
    assert lo < t.delta < hi and lo > 0


def test_holm_adjusted_agrees_with_the_step_down():
    p = [0.001, 0.012, 0.02, 0.04, 0.3]
    assert stats.holm(p, 0.05) == [True, True, False, False, False]
    adj = stats.holm_adjusted(p)
    assert adj == pytest.approx([0.005, 0.048, 0.06, 0.08, 0.3])
    rng = np.random.default_rng(7)
    for _ in range(200):
        q = rng.random(rng.integers(1, 12)) ** 3
        assert stats.holm(q, 0.05) == [x <= 0.05 for x in stats.holm_adjusted(q)]
