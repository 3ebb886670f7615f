"""Regular-task difficulty levels: well formed, exactly graded, deterministic, split by facts and wording."""

from __future__ import annotations

import re

import pytest

from data.config import DataConfig
from data.facts import split_of
from data.schema import validate_record
from data.tasks import (ALL_LEVELS, ARITH, DEFAULT_LEVELS, LEVELS, generate_regular_records, level_records,
                        parse_levels)
from engine.errors import UserError
from rl.rewards import format_reward, record_reward, registered

N = 60  # items per (level, split)
CELLS = [(f, lv) for f, levels in LEVELS.items() for lv in levels]


@pytest.fixture(scope="module")
def items():
    return {(f, lv, s): level_records(f, lv, N, seed=0, split=s) for f, lv in CELLS for s in ("train", "heldout")}


def wrong(r: dict) -> str:
    a = r["grader_args"]["answer"]
    if r["grader"] == "multiple_choice":
        return "Answer: " + next(k for k in r["grader_args"]["options"] if k != a)
    return f"Answer: {a * 2 + 7}"


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_level_is_well_formed_and_its_reference_earns_full_reward(items, split):
    for f, lv in CELLS:
        recs = items[f, lv, split]
        assert len(recs) == N, (f, lv, split)
        for r in recs:
            validate_record(r, r["id"], known_graders=registered())
            assert r["meta"] == {"split": split, "task": f, "level": lv, "facts": r["meta"]["facts"]}
            a = r["grader_args"]
            assert a["answer_format"] == "answer_line" and a["reference"] == f"Answer: {a['answer']}"
            if r["grader"] == "numeric":
                assert isinstance(a["answer"], (int, float)) and a["rel_tol"] in (1e-6, 1e-3)
            else:
                assert r["grader"] == "multiple_choice" and a["answer"] in a["options"]
            assert "Answer:" in r["messages"][0]["content"]
        refs = [r["grader_args"]["reference"] for r in recs]
        assert record_reward(None, refs, recs) == [1.0] * N, (f, lv)
        assert format_reward(None, refs, recs) == [1.0] * N, (f, lv)
        assert record_reward(None, [wrong(r) for r in recs], recs) == [0.0] * N, (f, lv)


def test_levels_ask_what_they_say(items):
    for s in ("train", "heldout"):
        for r in items["arith", 1, s]:
            assert all(int(x) <= 20 for x in re.findall(r"\d+", r["messages"][0]["content"])) and r["grader_args"][
                "answer"] >= 0
        for r in items["units", 1, s]:
            assert isinstance(r["grader_args"]["answer"], int) and r["grader_args"]["rel_tol"] == 1e-6
        assert {len(r["grader_args"]["options"]) for r in items["mc", 1, s]} == {2}
        assert {len(r["grader_args"]["options"]) for r in items["mc", 2, s]} == {4}
        assert all(r["grader_args"]["answer"] >= 0 for lv in (2, 3) for r in items["arith", lv, s])
        # two-option items still vary which letter is right
        assert {r["grader_args"]["answer"] for r in items["mc", 1, s]} == {"A", "B"}


def test_levels_are_deterministic_and_ids_stable_and_unique(items):
    assert level_records("arith", 3, N, seed=0) == items["arith", 3, "train"]
    assert level_records("arith", 3, N, seed=1) != items["arith", 3, "train"]
    a = generate_regular_records(500, seed=0, split="train")
    assert a == generate_regular_records(500, seed=0, split="train")
    assert len({r["id"] for r in a}) == len(a)
    assert {(r["meta"]["task"], r["meta"]["level"]) for r in a} == set(CELLS)
    # the k-th item of a level (and its id) is the same whatever else is drawn
    only = generate_regular_records(120, seed=0, levels={"arith": [3], "mc": [1]})
    assert {(r["meta"]["task"], r["meta"]["level"]) for r in only} == {("arith", 3), ("mc", 1)}
    for fam, lv in (("arith", 3), ("mc", 1)):
        mine = [r for r in only if r["meta"]["task"] == fam]
        assert mine == level_records(fam, lv, len(mine), seed=0)
        assert [r for r in a if (r["meta"]["task"], r["meta"]["level"]) == (fam, lv)] == level_records(
            fam, lv, sum((r["meta"]["task"], r["meta"]["level"]) == (fam, lv) for r in a), seed=0)


def test_levels_argument_forms():
    assert parse_levels(None) == {f: tuple(v) for f, v in LEVELS.items()}
    assert parse_levels(("arith:2", "arith:1", "mc:1", "arith:1")) == {"arith": (1, 2), "mc": (1,)}
    assert parse_levels({"units": [1]}) == {"units": (1,)}
    assert parse_levels(()) == parse_levels(DEFAULT_LEVELS)  # empty = the built-in default
    assert set(DEFAULT_LEVELS) <= set(ALL_LEVELS)
    recs = generate_regular_records(50, seed=0, levels=("units:1",))
    assert {(r["meta"]["task"], r["meta"]["level"]) for r in recs} == {("units", 1)}
    for bad in (("arith:9",), ("algebra:1",), ("arith",), "arith:1"):
        with pytest.raises(UserError, match=r"option 'levels': expected .*arith:1.*, got "):
            generate_regular_records(5, levels=bad)
    assert DataConfig(levels=("arith:1", "mc:1")).levels == ("arith:1", "mc:1")
    for bad in (("arith:9",), "arith:1"):
        with pytest.raises(UserError, match=r"^option 'data.levels': expected family:level names among .*, got "):
            DataConfig(levels=bad)


def test_heldout_and_train_stay_disjoint_in_facts_and_wording(items):
    for f, lv in CELLS:
        train, held = items[f, lv, "train"], items[f, lv, "heldout"]
        for split, recs in (("train", train), ("heldout", held)):
            assert all(split_of(x) == split for r in recs for x in r["meta"]["facts"]), (f, lv, split)
        tf = {x for r in train for x in r["meta"]["facts"]}
        hf = {x for r in held for x in r["meta"]["facts"]}
        assert not tf & hf, (f, lv)
        if f != "arith":
            assert tf and hf, (f, lv)  # fact-based levels do use facts
        assert not {r["messages"][0]["content"] for r in train} & {r["messages"][0]["content"] for r in held}
    for lv, by_split in ARITH.items():  # arithmetic: no template shared between the splits
        assert not {t for _, t, _ in by_split["train"]} & {t for _, t, _ in by_split["heldout"]}, lv
