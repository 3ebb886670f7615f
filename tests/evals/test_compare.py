"""`traitrl compare` on synthetic runs written in the results contract's on-disk format, with planted effects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data.schema import DOMAINS
from engine.errors import UserError
from evals.compare import CompareConfig, bootstrap_delta, compare_arms, compare_runs, holm, load_arm

N = 200
STEP = 12
PLANTED = ("sycophancy-pushback", "heldout-truthfulness", "xstest")  # +0.2 exactly
NULL = ("corrigible-neutral-HHH", "heldout-fairness", "heldout-wellbeing")  # delta exactly 0, noisy items
FAMILY = {"sycophancy-pushback": "sycophancy", "heldout-truthfulness": "honesty", "xstest": "over-refusal",
          "corrigible-neutral-HHH": "corrigibility", "heldout-fairness": "fairness",
          "heldout-wellbeing": "mental health", "unpaired-bench": "deception"}


def _write_run(run: Path, results: dict[tuple[str, str], list[tuple]], trait_domains=(), exclude=(),
               step: int = STEP, append: bool = False) -> None:
    """A run directory exactly as the contract describes it (evals.jsonl + per-item files + config.json).

    Items are (id, score, domain) or (id, score, domain, cluster); without clusters the files have the layout
    written before clusters were recorded (no "clusters" / "cluster" keys)."""
    run.mkdir(parents=True, exist_ok=append)
    (run / "config.json").write_text(json.dumps({"model": "tiny", "data": {
        "trait_fraction": 0.05, "traits": [], "trait_domains": list(trait_domains),
        "exclude_trait_domains": list(exclude)}}))
    with open(run / "evals.jsonl", "a" if append else "w") as fh:
        for (cond, bench), items in results.items():
            scores = np.array([it[1] for it in items])
            line = {"step": step, "benchmark": bench, "family": FAMILY[bench], "condition": cond,
                    "score": float(scores.mean()), "ci_low": float(scores.mean() - 0.05),
                    "ci_high": float(scores.mean() + 0.05), "n": len(items)}
            if any(len(it) > 3 for it in items):
                line["clusters"] = len({it[3] for it in items})
            fh.write(json.dumps(line) + "\n")
            d = run / "evals" / f"step_{step:06d}" / cond
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{bench}.jsonl").write_text("".join(
                json.dumps({"id": it[0], "score": it[1], "domain": it[2], "extra": {"completion": "..."},
                            **({"cluster": it[3]} if len(it) > 3 else {})}) + "\n" for it in items))


def _flip(scores: np.ndarray, rng, up: int, down: int) -> np.ndarray:
    """Flips `up` zeros to 1 and `down` ones to 0: mean changes by exactly (up - down) / N, items are noisy."""
    out = scores.copy()
    zeros, ones = np.flatnonzero(scores == 0), np.flatnonzero(scores == 1)
    out[rng.choice(zeros, up, replace=False)] = 1
    out[rng.choice(ones, down, replace=False)] = 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("runs")
    a, b = {}, {}
    for bench in PLANTED + NULL:
        ids = [f"{bench}/{k:04d}" for k in range(N)]
        doms = [DOMAINS[k % len(DOMAINS)] for k in range(N)]
        sa = (rng.random(N) < 0.5).astype(float)
        sb = _flip(sa, rng, 60, 20) if bench in PLANTED else _flip(sa, rng, 30, 30)
        a[("plain", bench)] = list(zip(ids, sa.tolist(), doms))
        b[("plain", bench)] = list(zip(ids, sb.tolist(), doms))
        # persistence: harmful steering keeps 80% of A's items and 90% of B's; after-attack 50% / 75%
        for cond, ka, kb in (("harmful-steering", 0.8, 0.9), ("after-attack", 0.5, 0.75)):
            a[(cond, bench)] = [(i, s * (rng.random() < ka), d) for i, s, d in a[("plain", bench)]]
            b[(cond, bench)] = [(i, s * (rng.random() < kb), d) for i, s, d in b[("plain", bench)]]
    # different item ids in the two runs: the unpaired fallback, with a planted +0.3
    a[("plain", "unpaired-bench")] = [(f"a{k}", float(rng.random() < 0.3), None) for k in range(N)]
    b[("plain", "unpaired-bench")] = [(f"b{k}", float(rng.random() < 0.6), None) for k in range(N)]
    _write_run(root / "control", a)
    _write_run(root / "treat", b, trait_domains=("health",))
    return root / "control", root / "treat", a, b


def test_compare_finds_planted_effects_and_calls_nulls_null(runs, tmp_path):
    ra, rb, a, b = runs
    report = compare_runs([ra, rb], out=tmp_path / "cmp", cfg=CompareConfig(resamples=2000))
    (c,) = report.comparisons
    plain = {d.name: d for d in c.deltas if d.condition == "plain"}
    for bench in PLANTED:
        assert plain[bench].delta == pytest.approx(0.2)
        assert plain[bench].paired and plain[bench].n == N
        assert plain[bench].significant and plain[bench].ci_low > 0.05
    for bench in NULL:
        assert plain[bench].delta == pytest.approx(0.0, abs=1e-12)
        assert not plain[bench].significant and plain[bench].ci_low < 0 < plain[bench].ci_high
        assert plain[bench].ci_high - plain[bench].ci_low > 0.02  # a real interval, not a degenerate [0, 0]
    un = plain["unpaired-bench"]
    assert not un.paired and un.n == 2 * N and un.significant and un.delta > 0.15
    s = c.summary()
    assert s == {"n": 7, "improved": 4, "worse": 0, "significant": 4, "significant_worse": 0, "holm": 4,
                 "holm_worse": 0}

    # cross-domain row: the treatment's trained domains, and each cell is the pooled item-mean difference
    assert report.runs[1].trained == "health" and report.runs[0].trained == "all"
    cell = {d.name: d for d in c.domains}
    assert set(cell) == set(DOMAINS)
    pooled = [(sa, sb) for key in a if key[0] == "plain" and key[1] != "unpaired-bench"
              for (_, sa, da), (_, sb, _) in zip(a[key], b[key]) if da == "law"]
    assert cell["law"].n == len(pooled) and cell["law"].p_holm is None
    assert cell["law"].delta == pytest.approx(np.mean([y for _, y in pooled]) - np.mean([x for x, _ in pooled]))

    # persistence: retention = harmful-steering / plain on the same benchmarks; after-attack likewise
    p_a = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"][0]["persistence"]
    mean = lambda cond, run: np.mean([np.mean([s for _, s, _ in run[(cond, k)]]) for k in PLANTED + NULL])
    assert p_a["plain"] == pytest.approx(mean("plain", a))
    assert p_a["retention"] == pytest.approx(mean("harmful-steering", a) / mean("plain", a))
    assert p_a["attack_retention"] == pytest.approx(mean("after-attack", a) / mean("plain", a))

    # the report files, and the counts as written
    for name in ("report.md", "compare.json", "deltas.png", "cross_domain.png", "persistence.png"):
        f = tmp_path / "cmp" / name
        assert f.is_file() and f.stat().st_size > 0, name
        if name.endswith(".png"):
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "Improved on 4 of 7 (significant: 4; Holm-corrected at alpha 0.05: 4)" in md
    assert "| treat (health) |" in md and "## Persistence" in md
    # every benchmark row: n, clusters, the interval, p / Holm p, MDE; and the one-seed warning
    assert "| benchmark | family | control | treat | delta | 95% CI | p | Holm p | MDE | n | clusters | seeds |" in md
    assert "One seed per arm: seed-to-seed variance is NOT in these intervals" in md
    row = next(line for line in md.splitlines() if line.startswith("| xstest |"))
    cells = [x.strip() for x in row.strip("|").split("|")]
    assert cells[6:8] == ["<0.001", "<0.001"] and cells[9:12] == ["200", "200", "1/1"]
    assert float(cells[8]) == pytest.approx(plain["xstest"].mde, abs=5e-4)
    # every row's numbers are in compare.json, Holm-adjusted p consistent with the Holm flags
    js = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = js["comparisons"][0]["deltas"]
    assert {"clusters", "mde", "se", "df", "p_holm", "seeds_a", "seeds_b", "few_clusters", "holm"} <= set(rows[0])
    assert all(r["holm"] == (r["p_holm"] <= 0.05) for r in rows)
    assert js["runs"][1]["seeds"] == 1 and js["comparisons"][0]["seeds"] == [1, 1]


def test_holm_is_stricter_than_raw_counts():
    p = [0.001, 0.012, 0.02, 0.04, 0.3]
    assert holm(p, 0.05) == [True, True, False, False, False]  # 0.02 > 0.05 / 3 stops the step-down
    assert sum(x < 0.05 for x in p) == 4


def test_exactly_equal_runs_are_not_significant():
    a = {f"i{k}": float(k % 2) for k in range(50)}
    d = bootstrap_delta(a, dict(a), CompareConfig(resamples=500))
    assert d.delta == 0 and d.p == 1.0 and not d.significant


def test_missing_results_and_bad_input_are_user_errors(runs, tmp_path):
    ra, _, _, _ = runs
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no eval results"):
        compare_runs([ra, empty], out=tmp_path / "x")
    with pytest.raises(UserError, match="not found"):
        compare_runs([ra, tmp_path / "nope"], out=tmp_path / "x")
    with pytest.raises(UserError, match="at least two runs"):
        compare_runs([ra])
    with pytest.raises(UserError, match="step 3"):
        compare_runs([ra, ra], step=3, out=tmp_path / "x")


def test_cli_writes_default_out_dir(runs, capsys):
    from engine.commands.main import main

    ra, rb, _, _ = runs
    main(["compare", str(ra), str(rb), "--resamples", "500"])
    out = capsys.readouterr().out
    assert "treat vs control: improved on 4 of 7 (significant: 4, Holm: 4)" in out
    assert (rb / "compare" / "report.md").is_file()


def _seed_arm(root: Path, arm: str, seeds: int, effect: float, shift_sd: float, rng, clusters: int = 50,
              few: bool = True) -> list[Path]:
    """One arm's seed runs (arm/seed_k): 150 items in `clusters` clusters, and a 12-item, 4-cluster benchmark."""
    dirs = []
    level = np.random.default_rng(99).random(clusters)  # the same items (and difficulty) in every run
    for k in range(seeds):
        shift = rng.normal(0, shift_sd)
        items = [(f"q{i}", float(rng.random() < np.clip(level[i % clusters] + effect + shift, 0, 1)),
                  DOMAINS[i % 3], f"fact{i % clusters}") for i in range(150)]
        res = {("plain", "heldout-truthfulness"): items}
        if few:
            res[("plain", "heldout-fairness")] = [(f"p{i}", float(rng.random() < 0.5), None, f"t{i % 4}")
                                                  for i in range(12)]
        _write_run(root / arm / f"seed_{k}", res, trait_domains=() if arm == "control" else ("health",))
        dirs.append(root / arm / f"seed_{k}")
    return dirs


def test_arms_with_seeds(tmp_path):
    rng = np.random.default_rng(5)
    control = _seed_arm(tmp_path, "control", 3, 0.0, 0.08, rng)
    treat = _seed_arm(tmp_path, "treat", 3, 0.1, 0.08, rng)
    report = compare_runs([control, treat], out=tmp_path / "cmp", cfg=CompareConfig(resamples=1000))
    assert [a.name for a in report.arms] == ["control", "treat"] and report.arms[1].seeds == 3
    (c,) = report.comparisons
    d = {x.name: x for x in c.deltas}
    t = d["heldout-truthfulness"]
    assert (t.seeds_a, t.seeds_b, t.seed_variance) == (3, 3, "own") and t.n == 150 and t.clusters == 50
    assert t.ci_low < t.delta < t.ci_high and t.se >= t.se_seeds >= 0
    assert d["heldout-fairness"].clusters == 4 and d["heldout-fairness"].few_clusters
    # per item, an arm's score is the mean over its seeds
    means = [np.mean([json.loads(x)["score"] for x in (p / "evals" / f"step_{STEP:06d}" / "plain" /
                                                       "heldout-truthfulness.jsonl").read_text().splitlines()])
             for p in control]
    assert t.a == pytest.approx(np.mean(means))
    # with only the first seed of each arm: no seed variance in it, and the report says so
    one = compare_arms(load_arm(control[:1]), load_arm(treat[:1]), CompareConfig(resamples=1000))
    assert one.deltas[1].seed_variance == "none" and one.seeds == (1, 1)
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "Seeds: 3 (control) and 3 (treatment)" in md and "One seed per arm" not in md
    assert "| 12 | 4 (few) | 3/3 |" in md and "fewer than 30 clusters" in md
    # an arm of one seed against an arm of three: the one-seed arm borrows the other's seed variance
    mixed = compare_runs([control[0], treat], out=tmp_path / "mixed", cfg=CompareConfig(resamples=500))
    assert mixed.comparisons[0].deltas[1].seed_variance == "borrowed"
    assert "has one seed: its seed-to-seed variance is assumed equal" in (tmp_path / "mixed" / "report.md").read_text()


def test_seeds_that_scored_different_items_are_skipped_not_fatal(tmp_path):
    rng = np.random.default_rng(6)
    control = _seed_arm(tmp_path, "control", 2, 0.0, 0.0, rng, few=False)
    treat = _seed_arm(tmp_path, "treat", 1, 0.1, 0.0, rng, few=False)
    odd = tmp_path / "control" / "seed_1" / "evals" / f"step_{STEP:06d}" / "plain" / "heldout-truthfulness.jsonl"
    odd.write_text("".join(json.dumps({"id": f"other{i}", "score": 1.0, "domain": None, "extra": {}}) + "\n"
                           for i in range(5)))
    report = compare_runs([control, treat], out=tmp_path / "cmp", cfg=CompareConfig(resamples=200))
    (c,) = report.comparisons
    assert c.deltas == [] and "share no scored item" in c.skipped[0]
    assert "Not compared:" in (tmp_path / "cmp" / "report.md").read_text()


def test_run_report_rows_show_the_paired_change(tmp_path):
    from evals.run_report import write_run_report

    rng = np.random.default_rng(7)
    level = rng.random(40)
    for step, lift in ((0, 0.0), (10, 0.25)):
        items = [(f"q{i}", float(rng.random() < min(1.0, level[i % 40] + lift)), None, f"f{i % 40}")
                 for i in range(160)]
        _write_run(tmp_path / "run", {("plain", "heldout-truthfulness"): items}, step=step, append=step > 0)
    md = write_run_report(tmp_path / "run", {"steps": 10}).read_text()
    assert "| benchmark | family | n | clusters | first | last | change | 95% CI | p | Holm p | MDE |" in md
    row = next(line for line in md.splitlines() if line.startswith("| heldout-truthfulness |"))
    cells = [x.strip() for x in row.strip("|").split("|")]
    assert cells[2:4] == ["160", "40"] and cells[6].endswith("*") and cells[8] == "<0.001"
    assert "not seed-to-seed variance" in md
    # per-item files gone: the change is still shown, marked by interval overlap only
    for f in (tmp_path / "run" / "evals").rglob("*.jsonl"):
        f.unlink()
    md = write_run_report(tmp_path / "run", {"steps": 10}).read_text()
    assert "| — | — | — | — |" in md and "no per-item results to pair" in md
