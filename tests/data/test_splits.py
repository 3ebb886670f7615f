"""Held-out knowledge: the generated train and held-out splits share no fact, no final question, no long n-gram.

Normalisation used throughout: a prompt is the contents of all its messages joined with spaces
(system, user and earlier assistant turns); its tokens are the maximal runs of [a-z0-9] in the
lower-cased text (punctuation and whitespace are separators). A final user turn is normalised to
its tokens joined by single spaces. n-gram overlap is the Jaccard index of two prompts' sets of
token 8-grams; a held-out prompt's nearest training prompt is the one of the same trait with the
highest 8-gram Jaccard.

The memoriser answers each held-out record with the reference answer of the training record of
the same trait whose prompt shares the most tokens (token-set Jaccard: a stronger look-up than
8-grams, which held-out wording mostly avoids), and is scored by the held-out record's own grader.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from data.export import export_records
from data.facts import split_of
from data.generator import generate_trait_records
from data.schema import DOMAINS, TRAITS, validate_record
from data.tasks import generate_regular_records
from rl.rewards import record_reward, registered

N = 40  # chats per (trait, domain) cell: 7 x 40 per trait and split


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def prompt(r: dict) -> str:
    return " ".join(m["content"] for m in r["messages"])


def grams(r: dict, n: int = 8) -> set[tuple[str, ...]]:
    w = tokens(prompt(r))
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def final_user_turn(r: dict) -> str:
    return " ".join(tokens([m for m in r["messages"] if m["role"] == "user"][-1]["content"]))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@pytest.fixture(scope="module")
def splits():
    return {s: generate_trait_records(n_per_cell=N, seed=0, split=s) for s in ("train", "heldout")}


def by_trait(records):
    out = defaultdict(list)
    for r in records:
        out[r["trait"]].append(r)
    return out


def test_records_are_built_only_from_their_splits_facts(splits):
    for split, records in splits.items():
        assert records
        for r in records:
            assert r["meta"]["split"] == split and r["meta"]["facts"], r["id"]
            assert all(split_of(f) == split for f in r["meta"]["facts"]), r["id"]
    for split in ("train", "heldout"):
        for r in generate_regular_records(300, seed=0, split=split):
            assert all(split_of(f) == split for f in r["meta"]["facts"]), r["id"]


def test_no_fact_is_shared_between_train_and_heldout(splits):
    train, held = by_trait(splits["train"]), by_trait(splits["heldout"])
    for trait in TRAITS:
        a = {f for r in train[trait] for f in r["meta"]["facts"]}
        b = {f for r in held[trait] for f in r["meta"]["facts"]}
        assert not a & b, (trait, sorted(a & b)[:5])
    # nothing a held-out benchmark asks is a regular training task either
    regular = {f for r in generate_regular_records(2000, seed=0) for f in r["meta"]["facts"]}
    assert regular and not regular & {f for r in splits["heldout"] for f in r["meta"]["facts"]}


def test_no_final_user_turn_is_shared(splits):
    train, held = by_trait(splits["train"]), by_trait(splits["heldout"])
    for trait in TRAITS:
        seen = {final_user_turn(r) for r in train[trait]}
        shared = [r["id"] for r in held[trait] if final_user_turn(r) in seen]
        assert not shared, (trait, shared[:3])


def nearest_8gram(train: list[dict], held: list[dict]) -> list[tuple[float, str, str | None]]:
    """(Jaccard, held-out id, nearest training id) for every held-out record (an inverted index of 8-grams)."""
    tg = [grams(r) for r in train]
    index = defaultdict(set)
    for i, g in enumerate(tg):
        for x in g:
            index[x].add(i)
    out = []
    for r in held:
        g = grams(r)
        cands = set().union(*(index[x] for x in g if x in index))
        best = max(((jaccard(g, tg[i]), i) for i in cands), default=(0.0, None))
        out.append((best[0], r["id"], train[best[1]]["id"] if best[1] is not None else None))
    return out


def test_heldout_prompts_share_at_most_5_percent_of_8grams_with_any_training_prompt(splits):
    train, held = by_trait(splits["train"]), by_trait(splits["heldout"])
    for trait in TRAITS:
        worst = max(nearest_8gram(train[trait], held[trait]), default=(0.0, "", None))
        assert worst[0] <= 0.05, (trait, worst)


def memoriser_scores(train: list[dict], held: list[dict]) -> tuple[float, float]:
    """(mean score of the held-out references, mean score of the nearest training record's reference)."""
    train = [r for r in train if r["grader_args"].get("reference")]
    held = [r for r in held if r["grader_args"].get("reference")]
    sets = [set(tokens(prompt(r))) for r in train]
    index = defaultdict(list)
    for i, s in enumerate(sets):
        for t in s:
            index[t].append(i)
    borrowed = []
    for r in held:
        s = set(tokens(prompt(r)))
        shared = defaultdict(int)
        for t in s:
            for i in index.get(t, ()):
                shared[i] += 1
        best = max(shared, key=lambda i: (shared[i] / (len(s) + len(sets[i]) - shared[i]), -i))
        borrowed.append(train[best]["grader_args"]["reference"])
    own = record_reward(None, [r["grader_args"]["reference"] for r in held], held)
    memo = record_reward(None, borrowed, held)
    return sum(own) / len(own), sum(memo) / len(memo)


# Two current graders give full marks to a content-free answer on one side of the pair: well-being's
# crisis side (any caring answer naming a crisis resource: 988, "reach out", ...) and corrigibility's
# decline control (any refusal), half of that trait's records. A training answer then fits every
# held-out item of that side: a grader gap (TRAITS.md asks for a criterion that needs the item's own
# content), not a leak of held-out facts; these two are expected to fail until the graders are rewritten.
GENERIC_SIDE = {
    "wellbeing": "crisis-side grading has no item-content criterion (rl/graders/traits.py)",
    "corrigibility": "decline-side grading has no item-content criterion (rl/graders/traits.py)",
}


@pytest.mark.parametrize(
    "trait",
    [pytest.param(t, marks=pytest.mark.xfail(reason=GENERIC_SIDE[t], strict=False)) if t in GENERIC_SIDE else t
     for t in TRAITS],
)
def test_a_memoriser_of_training_answers_scores_at_most_half_on_heldout(splits, trait):
    train, held = by_trait(splits["train"]), by_trait(splits["heldout"])
    own, memo = memoriser_scores(train[trait], held[trait])
    assert own >= 0.9, (trait, own)  # the references are good answers
    assert memo <= 0.5 * own, (trait, round(memo, 3), round(own, 3))


def test_a_memoriser_scores_at_most_half_over_all_traits(splits):
    train, held = by_trait(splits["train"]), by_trait(splits["heldout"])
    scores = [memoriser_scores(train[t], held[t]) for t in TRAITS]
    own, memo = (sum(x) / len(x) for x in zip(*scores))
    assert memo <= 0.5 * own, (round(memo, 3), round(own, 3))


def test_regular_tasks_use_train_facts_only():
    from data.facts import bank

    held_questions = {t.question for d in DOMAINS for t in bank(d, "heldout").trivia}
    for r in generate_regular_records(1500, seed=0):
        assert not any(q in r["messages"][0]["content"] for q in held_questions if r["meta"]["task"] == "mc")
        assert r["grader_args"]["reference"].startswith("Answer: ")


def test_export_writes_valid_records_with_ground_truth(tmp_path):
    n = export_records("heldout", "trait", tmp_path / "h.jsonl", seed=1, n_per_cell=3)
    rows = [json.loads(x) for x in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert n == len(rows) > 0 and rows == generate_trait_records(3, seed=1, split="heldout")
    for r in rows:
        validate_record(r, r["id"], known_graders=registered())
        assert "reference" in r["grader_args"] and "expect" in r["grader_args"]
        assert all(split_of(f) == "heldout" for f in r["meta"]["facts"])
    n = export_records("train", None, tmp_path / "sub" / "t.jsonl", n_per_cell=1, n_regular=20)
    rows = [json.loads(x) for x in (tmp_path / "sub" / "t.jsonl").read_text().splitlines()]
    assert n == len(rows) and sum(r["kind"] == "regular" for r in rows) == 20
    assert export_records("train", "regular", tmp_path / "r.jsonl", n_regular=5) == 5
    from engine.errors import UserError

    with pytest.raises(UserError, match="option 'kind'"):
        export_records("train", "both", tmp_path / "x.jsonl")
    with pytest.raises(UserError, match="option 'split'"):
        export_records("test", None, tmp_path / "x.jsonl")


def test_heldout_benchmarks_ask_only_heldout_facts_with_400_items_in_all_domains():
    from evals.heldout import TRAIT_BENCHMARKS, deception_items, health_items, trait_items

    def check(items):
        for it in items:
            facts = it.record["meta"]["facts"]
            assert facts and all(split_of(f) == "heldout" for f in facts), it.id

    for name in TRAIT_BENCHMARKS:
        items = trait_items(name, None)
        check(items)
        pairs = {it.record["meta"].get("pair") for it in items} - {None}
        n_scored = len(items) - len(pairs)  # fairness scores a pair as one item
        assert n_scored >= 400, (name, n_scored)
        assert {it.domain for it in items} == set(DOMAINS), name
        sub = trait_items(name, 50)
        assert [i.id for i in sub] == [i.id for i in trait_items(name, 50)]  # stable ids
        assert {i.id for i in sub} <= {i.id for i in items}
    deception = deception_items(None)
    check(deception)
    assert len(deception) >= 400 and {it.domain for it in deception} == set(DOMAINS)
    check(health_items(60))
