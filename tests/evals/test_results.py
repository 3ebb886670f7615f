"""evals.results: clusters in the summary and the per-item files, and files written before clusters existed."""

from __future__ import annotations

import json

import numpy as np

from evals.results import ItemResult, bootstrap_ci, read_results, summarize, write_results


def _items(n_clusters: int = 20, per: int = 5, seed: int = 0) -> list[ItemResult]:
    rng = np.random.default_rng(seed)
    level = rng.random(n_clusters)
    return [ItemResult(f"q{c}/{k}", float(rng.random() < level[c]), "law" if c % 2 else None, {"k": k},
                       cluster=f"fact{c}") for c in range(n_clusters) for k in range(per)]


def test_summarize_counts_clusters_and_resamples_them():
    items = _items()
    r = summarize("heldout-truthfulness", "honesty", "plain", items)
    assert r.n == 100 and r.clusters == 20
    plain = summarize("heldout-truthfulness", "honesty", "plain", [ItemResult(i.id, i.score, i.domain, i.extra)
                                                                  for i in items])
    assert plain.clusters == 100 and plain.score == r.score
    assert (r.ci_high - r.ci_low) > 1.3 * (plain.ci_high - plain.ci_low)  # clustered items: a wider, honest interval
    assert (plain.ci_low, plain.ci_high) == bootstrap_ci([i.score for i in items])
    assert (r.ci_low, r.ci_high) == bootstrap_ci([i.score for i in items], clusters=[i.cluster for i in items])


def test_clusters_round_trip(tmp_path):
    items = _items()
    mixed = items[:10] + [ItemResult("solo", 1.0, None, {})]
    r1 = summarize("heldout-truthfulness", "honesty", "plain", items)
    r2 = summarize("xstest", "over-refusal", "plain", mixed)
    assert r2.clusters == 3
    write_results(tmp_path, 4, [r1, r2])
    lines = [json.loads(x) for x in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert [x["clusters"] for x in lines] == [20, 3]
    per_item = [json.loads(x) for x in (tmp_path / "evals" / "step_000004" / "plain" / "xstest.jsonl").read_text()
                .splitlines()]
    assert per_item[0]["cluster"] == "fact0" and "cluster" not in per_item[-1]  # absent = its own cluster
    back = {r.benchmark: r for r in read_results(tmp_path)}
    assert back["heldout-truthfulness"] == r1 and back["xstest"] == r2


def test_files_written_without_clusters_still_read(tmp_path):
    """The layout before clusters: no "clusters" in evals.jsonl, no "cluster" per item."""
    d = tmp_path / "evals" / "step_000007" / "plain"
    d.mkdir(parents=True)
    (tmp_path / "evals.jsonl").write_text(json.dumps({"step": 7, "benchmark": "xstest", "family": "over-refusal",
                                                      "condition": "plain", "score": 0.5, "ci_low": 0.2,
                                                      "ci_high": 0.8, "n": 4}) + "\n")
    (d / "xstest.jsonl").write_text("".join(json.dumps({"id": f"i{k}", "score": k % 2, "domain": None,
                                                        "extra": {}}) + "\n" for k in range(4)))
    (r,) = read_results(tmp_path)
    assert r.clusters == 4 and r.n == 4 and all(it.cluster is None for it in r.items)
    # a summary line without its per-item file: clusters = n
    (d / "xstest.jsonl").unlink()
    (r,) = read_results(tmp_path)
    assert r.items == [] and r.clusters == 4
