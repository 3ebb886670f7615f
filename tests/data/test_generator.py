"""Scenario generator: deterministic, distinct, balanced, split by facts and template, ground truth in grader_args."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data.facts import bank, split_of
from data.generator import generate_records, generate_trait_records, scenario_counts, variant_counts
from data.schema import DOMAINS, TRAITS, validate_record
from data.tasks import generate_regular_records
from engine.errors import UserError
from rl.rewards import record_reward, registered


@pytest.fixture(scope="module")
def train():
    return generate_trait_records(n_per_cell=200, seed=0)


def test_deterministic_from_seed():
    a = generate_records(n_per_cell=10, n_regular=50, seed=3)
    assert a == generate_records(n_per_cell=10, n_regular=50, seed=3)
    assert a != generate_records(n_per_cell=10, n_regular=50, seed=4)
    # a cell does not depend on what else is generated
    sub = generate_trait_records(n_per_cell=10, seed=3, traits=["fairness"], domains=["law"])
    assert sub == [r for r in a if r["trait"] == "fairness" and r["domain"] == "law"]


def test_every_cell_is_full_of_distinct_valid_records(train):
    counts = scenario_counts(train)
    assert set(counts) == {(t, d) for t in TRAITS for d in DOMAINS}
    assert min(counts.values()) >= 200  # distinct chats, not duplicates
    assert len({r["id"] for r in train}) == len(train)
    for r in train:
        validate_record(r, r["id"], known_graders=registered())


def test_archetypes_and_controls_are_balanced(train):
    v = variant_counts(train)
    for trait, (arch, ctrl) in {
        "truthfulness": (("correct", "hold"), ("agree", "concede")),
        "epistemic_humility": (("ask",), ("answer",)),
        "corrigibility": (("handover", "limit", "correction"), ("decline",)),
        "transparency": (("explain",), ("short",)),
        "wellbeing": (("support",), ("answer",)),
    }.items():
        a, c = sum(v[(trait, x)] for x in arch), sum(v[(trait, x)] for x in ctrl)
        assert abs(a - c) <= 0.02 * (a + c), (trait, a, c)
    assert v[("fairness", "relevant")] >= 0.3 * (v[("fairness", "same")] + v[("fairness", "relevant")])


def test_heldout_uses_other_templates_and_entities(train):
    held = generate_trait_records(n_per_cell=100, seed=0, split="heldout")
    train_chats = {json.dumps(r["messages"]) for r in train}
    assert not any(json.dumps(r["messages"]) in train_chats for r in held)
    train_orgs = {o for d in DOMAINS for o in bank(d, "train").operator.orgs}
    assert train_orgs and not train_orgs & {o for d in DOMAINS for o in bank(d, "heldout").operator.heldout_orgs}
    for r in held:
        text = " ".join(m["content"] for m in r["messages"])
        assert not any(o in text for o in train_orgs), r["id"]
        assert r["meta"]["split"] == "heldout"
        assert all(split_of(f) == "heldout" for f in r["meta"]["facts"]), r["id"]  # held-out knowledge too
    # held-out wording: the training system prompts never appear
    assert "You are a helpful assistant." not in {m["content"] for r in held for m in r["messages"]}


def test_fairness_pairs_differ_only_in_the_attribute(train):
    pairs: dict[str, list[dict]] = {}
    for r in train:
        if r["trait"] == "fairness" and r["meta"]["variant"] == "same":
            pairs.setdefault(r["meta"]["pair"], []).append(r)
    assert len(pairs) > 100
    for members in pairs.values():
        assert len(members) == 2
        a, b = members
        assert a["grader_args"]["expected"] == b["grader_args"]["expected"]
        assert a["grader_args"]["attribute"] == b["grader_args"]["attribute"]
        assert a["grader_args"]["value"] != b["grader_args"]["value"]
        assert a["messages"] != b["messages"]
        assert [m["role"] for m in a["messages"]] == [m["role"] for m in b["messages"]]
    expected = Counter(r["grader_args"]["expected"] for r in train if r["trait"] == "fairness")
    assert min(expected.values()) > 0.3 * sum(expected.values())  # "always yes" cannot win


def test_ground_truth_is_in_grader_args_and_references_score_well(train):
    for r in train[::37]:
        assert r["grader"] == r["trait"] and "expect" in r["grader_args"]
    regular = generate_regular_records(400, seed=0)
    kinds = Counter(r["id"].split("/")[1] for r in regular)
    assert set(kinds) == {"arith", "units", "mc"}
    answers = [f"Answer: {r['grader_args']['answer']}" for r in regular]
    assert record_reward(None, answers, regular) == [1.0] * len(regular)


def test_word_problem_answers_are_exact():
    held = generate_regular_records(200, seed=1, split="heldout")
    for r in held:
        if r["grader"] == "numeric":
            assert isinstance(r["grader_args"]["answer"], (int, float))
    assert {r["domain"] for r in held} <= set(DOMAINS)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="option 'traits'"):
        generate_trait_records(1, traits=["honesty"])
    with pytest.raises(UserError, match="option 'split'"):
        generate_trait_records(1, split="test")
