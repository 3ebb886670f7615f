"""The programmatic trait grader against the hand-labelled validation set, and what gaming earns (CI thresholds).

Targets (issue 13): criterion agreement >= 0.90, false negatives (good answers scoring < 0.7) <= 10%, every
gaming strategy <= 0.35 mean, on every trait, over the whole validation set. The whole set includes the batches
the checks were developed against, so it is optimistic; the fresh batch of each trait (written after the checks
were frozen) is the honest estimate and gets a regression floor of its own. Truthfulness meets the targets on the
whole set (0.901, 3.4% false negatives) but not on its fresh batch (criterion agreement 0.853, false negatives
9.1%); the README says so and points truthfulness users to the judge path.
"""

import json

import pytest

from evals.grader_audit import TRAITS, VALIDATION_DIR, agreement, audit, load_validation, programmatic

TARGET_AGREEMENT, TARGET_FN, TARGET_GAMING = 0.90, 0.10, 0.35
# The fresh batches, measured (lowest: truthfulness 0.853, fairness 0.882): a floor so they cannot silently slip.
FRESH_FLOOR = 0.85


@pytest.fixture(scope="module")
def report():
    return audit("programmatic")


@pytest.mark.parametrize("trait", TRAITS)
def test_agreement_and_false_negatives(report, trait):
    row = report["traits"][trait]["all"]
    assert row["n"] >= 100, f"{trait}: the validation set needs >= 100 answers, has {row['n']}"
    assert row["criterion_agreement"] >= TARGET_AGREEMENT, (trait, row["criterion_agreement"], row["per_criterion"])
    assert row["false_negative_rate"] <= TARGET_FN, (trait, row["false_negative_rate"])
    fresh = report["traits"][trait]["fresh"]
    assert fresh["criterion_agreement"] >= FRESH_FLOOR, (trait, fresh["criterion_agreement"])


@pytest.mark.parametrize("trait", TRAITS)
def test_no_gaming_strategy_pays(report, trait):
    gaming = report["traits"][trait]["gaming"]
    assert set(gaming) == {"boilerplate", "keyword-soup", "prompt-copy", "wrong-side", "surface"}
    assert max(gaming.values()) <= TARGET_GAMING, (trait, gaming)


def test_validation_set_is_well_formed():
    """Every trait has >= 100 labelled answers, both good and bad, all seven domains, labels for every criterion,
    and a fresh batch; ids are unique."""
    items = load_validation()
    assert len({it.id for it in items}) == len(items)
    for trait in TRAITS:
        mine = [it for it in items if it.trait == trait]
        assert len(mine) >= 100, trait
        assert {it.quality for it in mine} == {"good", "bad"}, trait
        assert len({it.record["domain"] for it in mine}) == 7, trait
        assert {it.half for it in mine} == {"dev", "test", "fresh"}, trait


def test_agreement_counts_a_wrong_verdict(tmp_path):
    """The metric itself: a grader that flips one criterion of one answer loses exactly that pair."""
    items = [it for it in load_validation() if it.trait == "transparency"][:20]
    base = agreement(items, programmatic)

    def flipped(answers, records):
        vs, scores = programmatic(answers, records)
        vs = [list(v) for v in vs]
        vs[0][0] = not vs[0][0]
        return vs, scores

    worse = agreement(items, flipped)
    pairs = sum(len(it.labels) for it in items)
    assert worse["criterion_agreement"] == pytest.approx(base["criterion_agreement"] - 1 / pairs) or \
        worse["criterion_agreement"] == pytest.approx(base["criterion_agreement"] + 1 / pairs)


def test_bad_validation_line_is_a_one_line_error(tmp_path):
    from engine.errors import UserError

    src = VALIDATION_DIR / "fairness.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[3])
    del row["labels"][next(iter(row["labels"]))]
    (tmp_path / "fairness.jsonl").write_text("\n".join(lines[:3] + [json.dumps(row)]) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"fairness\.jsonl:4"):
        load_validation(tmp_path)
