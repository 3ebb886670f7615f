"""Fact banks: every bank file loads and validates; bad lines are reported as file:line; split views."""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from pathlib import Path

import pytest

from data.facts import BANKS, DOMAINS, ROOT, bank, counts, load_banks, split_of
from data.facts.expr import Expr, ExprError
from data.facts.loader import read_bank
from data.schema import DOMAINS as DOMAIN_NAMES
from engine.errors import UserError


def test_every_bank_file_loads_and_validates():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.jsonl"))}
    assert folders <= set(BANKS)
    assert {"myths", "quantities", "choices", "trivia", "decisions", "age_rules", "risks", "handovers",
            "corrections", "overrides", "operators", "units"} <= folders
    for name in sorted(folders):  # each file on its own too (a clear failure names the bank)
        assert read_bank(ROOT / name, name), name
    assert set(DOMAINS) == set(DOMAIN_NAMES)
    for d in DOMAINS.values():
        assert d.myths and d.quantities and d.choices and d.trivia and d.decisions and d.age_rules and d.risks
        op = d.operator
        assert op.role and op.orgs and op.heldout_orgs and op.handovers and op.corrections and op.harmful
        assert not set(op.orgs) & set(op.heldout_orgs)


def test_fact_ids_are_domain_prefixed_and_unique_per_bank():
    for d in DOMAINS.values():
        for f in d.facts():
            assert f.fact_id == f"{d.name}/{f.id}" and f.domain == d.name
    for name, get in {"myths": lambda d: d.myths, "trivia": lambda d: d.trivia,
                      "quantities": lambda d: d.quantities}.items():
        ids = [f.fact_id for d in DOMAINS.values() for f in get(d)]
        assert len(ids) == len(set(ids)), name


def test_split_rule_is_the_readme_hash():
    for d in DOMAINS.values():
        for f in d.facts():
            h = int.from_bytes(hashlib.sha256(b"traitrl-split-v1:" + f.fact_id.encode()).digest()[:8], "little")
            assert split_of(f.fact_id) == ("heldout" if h % 2 else "train")
    assert split_of("health/antibiotics_flu") == "train" and split_of("health/acetaminophen_max") == "heldout"


def test_split_views_partition_the_banks():
    c = counts()
    for name in DOMAINS:
        full, train, held = DOMAINS[name], bank(name, "train"), bank(name, "heldout")
        assert bank(name, "all") is full
        tr, he = {f.fact_id for f in train.facts()}, {f.fact_id for f in held.facts()}
        assert not tr & he and tr | he == {f.fact_id for f in full.facts()}
        assert all(split_of(x) == "train" for x in tr) and all(split_of(x) == "heldout" for x in he)
        # organisations go by their split lists, not by hash
        assert train.operator.orgs == full.operator.orgs and not train.operator.heldout_orgs
        assert held.operator.heldout_orgs == full.operator.heldout_orgs and not held.operator.orgs
        assert c[("myths", "train", name)] == len(train.myths)
    both = {s: sum(v for (b, split, _), v in c.items() if split == s and b != "operators")
            for s in ("train", "heldout")}
    assert min(both.values()) > 0.35 * sum(both.values())  # the hash splits roughly in half
    with pytest.raises(UserError, match="option 'split'"):
        bank("health", "test")


def test_quantities_draw_inputs_that_fit_their_questions():
    for d in DOMAINS.values():
        for q in d.quantities:
            rng = random.Random(q.fact_id)
            for _ in range(5):
                v = q.draw(rng)
                assert "{" not in q.full.format(**v) and "{" not in q.missing.format(**v)
                a = q.answer(v)
                assert isinstance(a, (int, float)) and a == a
                if q.answer_range:
                    assert q.answer_range[0] <= a <= q.answer_range[1]
                fields = {f[1] for f in string.Formatter().parse(q.missing) if f[1] is not None}
                assert q.missing_input not in fields


def test_choices_decisions_and_age_rules_are_consistent():
    for d in DOMAINS.values():
        for c in d.choices:
            item = c.draw(random.Random(c.fact_id))
            assert item.expected in item.options and all(o in item.question.lower() for o in item.options)
            assert "{" not in item.question + item.reference + "".join(item.basis_terms)
        for dec in d.decisions:
            assert {c.expected for c in dec.cases} == {"yes", "no"}
            draws = [dec.draw(random.Random(i))[1] for i in range(200)]
            assert 0.35 < draws.count("yes") / len(draws) < 0.65  # answers drawn equally often
            for case in dec.cases:
                assert "{" not in dec.question.format(person="X", **case.values)
        for a in d.age_rules:
            assert {a.expected(x) for x in a.ages} == {"yes", "no"}


def test_seed_conversion_kept_the_old_ground_truth():
    h = DOMAINS["health"]
    q = next(q for q in h.quantities if q.id == "paracetamol_child")
    assert q.answer({"w": 20, "who": "son"}) == 300 and q.missing_input == "w"
    bmi = next(q for q in h.quantities if q.id == "bmi")
    assert abs(bmi.answer({"kg": 81, "m": 1.8}) - 25.0) < 1e-9 and bmi.rel_tol == 0.02
    edu = next(q for q in DOMAINS["education"].quantities if q.id == "final_needed")
    assert edu.answer_range == (40, 100)
    loan = next(d for d in DOMAINS["economics"].decisions if d.id == "loan_dti")
    assert {(c.values["income"], c.values["debt"]): c.expected for c in loan.cases}[("5000", "1800")] == "yes"
    assert {(c.values["income"], c.values["debt"]): c.expected for c in loan.cases}[("4000", "1500")] == "no"
    beam = next(c for c in DOMAINS["engineering"].choices if c.id == "beam_section").draw(random.Random(0))
    found = re.search(r"spans (\d+) m and carries a uniform design load of (\d+) kN/m", beam.question)
    span, w = map(int, found.groups())
    assert f"{w * span * span / 8:g}" in beam.basis_terms and beam.expected == "section b"
    assert all(m.false_terms for d in DOMAINS.values() for m in d.myths)
    units = {u.fact_id: u for d in DOMAINS.values() for u in d.units}
    assert units["health/lb_to_kg"].factor == 0.45359237


# ---- expressions -----------------------------------------------------------------------------------


def test_expressions_are_arithmetic_only():
    e = Expr("round(-a / b + sqrt(4) * 2 ** 3, 1) + min(a, b) - abs(-1) + max(log(exp(1)), 0)", {"a", "b"})
    assert e({"a": 3, "b": 2}) == round(-1.5 + 16, 1) + 2 - 1 + 1
    assert Expr("w * L ** 2 / 8", {"w", "L"})({"w": 6, "L": 4}) == 12 and isinstance(
        Expr("w * L ** 2 / 8", {"w", "L"})({"w": 6, "L": 4}), int)  # whole numbers print without ".0"
    for bad in ("__import__('os')", "a.real", "a if b else 1", "a < b", "'x'", "[a]", "a // b", "a % b", "+a",
                "lambda: 1", "b", "round(a, ndigits=2)", "open('f')", "a and b", "True", "1 +"):
        with pytest.raises(ExprError):
            Expr(bad, {"a"})


# ---- bad lines ---------------------------------------------------------------------------------------

GOOD_MYTH = {
    "id": "health/x_myth", "domain": "health", "false": "x is y", "true": "x is not y", "correction": "X is not y.",
    "true_terms": ["not y"], "false_terms": ["is y"], "topic": "Is x y?", "ask": "what to do about x",
    "help_terms": ["z"],
}
GOOD_QUANTITY = {
    "id": "health/x_dose", "domain": "health", "inputs": {"w": {"int": [1, 5]}, "k": {"choice": [2, 3]}},
    "full": "Weight {w} kg, {k} mg/kg. Dose?", "missing": "{k} mg/kg. Dose?", "missing_input": "w",
    "missing_name": "the weight", "missing_terms": ["weigh"], "answer": "k * w", "unit": "mg",
    "formula": "dose = k x w",
}


def _bank(tmp: Path, bank_name: str, lines: list, name: str = "a.jsonl") -> Path:
    folder = tmp / bank_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return folder / name


@pytest.mark.parametrize(
    "bank_name,bad,field,expected",
    [
        ("myths", {**GOOD_MYTH, "true_terms": "not y"}, "true_terms", "a list of non-empty strings"),
        ("myths", {k: v for k, v in GOOD_MYTH.items() if k != "false_terms"}, "false_terms", "required"),
        ("myths", {**GOOD_MYTH, "colour": "red"}, "colour", "no unknown fields"),
        ("myths", {**GOOD_MYTH, "false": "x is y."}, "false", "without a final period"),
        ("myths", {**GOOD_MYTH, "domain": "cooking"}, "domain", "one of health"),
        ("myths", {**GOOD_MYTH, "id": "law/x_myth"}, "id", "'health/<snake_case_name>'"),
        ("quantities", {**GOOD_QUANTITY, "answer": "__import__('os').system('true')"}, "answer", "calls of"),
        ("quantities", {**GOOD_QUANTITY, "answer": "k / (w - w)"}, "answer", "defined on every draw"),
        ("quantities", {**GOOD_QUANTITY, "missing": "{w} and {k}. Dose?"}, "missing", "without {w}"),
        ("quantities", {**GOOD_QUANTITY, "full": "Weight {w} kg, {q} mg/kg."}, "full", "unknown 'q'"),
        ("quantities", {**GOOD_QUANTITY, "inputs": {"w": {"int": [5, 1]}}}, "inputs.w", "lo <= hi"),
        ("quantities", {**GOOD_QUANTITY, "answer_range": [1000, 2000]}, "answer_range", "reaches"),
        ("trivia", {"id": "health/t", "domain": "health", "question": "Q?", "answer": "A", "answer_terms": ["a"],
                    "distractors": ["B", "C"]}, "distractors", "at least 3"),
        ("choices", {"id": "health/c", "domain": "health", "question": "X or Y?", "options": ["x", "z"],
                     "expected": "x", "basis_terms": ["a", "b", "c"], "reference": "X."},
         "options", "appear in the question"),
        ("decisions", {"id": "health/d", "domain": "health", "question": "{person} has {n}: yes or no?",
                       "cases": [{"values": {"n": "1"}, "expected": "yes"}, {"values": {"n": "2"}, "expected": "yes"}],
                       "basis_terms": ["n"]}, "cases", "both a 'yes' case and a 'no' case"),
        ("age_rules", {"id": "health/a", "domain": "health", "question": "{person}, {age}: yes or no?",
                       "threshold": 18, "yes_at_or_above": True, "ages": [20, 30], "basis_terms": ["18"]},
         "ages", "both sides"),
        ("corrections", {"id": "health/k", "domain": "health", "statement": "Opens at 9.", "question": "When?",
                         "values": [["9"], ["10"], ["11"]], "followup": "So?"}, "statement", "{v}"),
    ],
)
def test_a_bad_line_is_reported_with_its_file_and_line(tmp_path, bank_name, bad, field, expected):
    good = GOOD_MYTH if bank_name == "myths" else GOOD_QUANTITY if bank_name == "quantities" else None
    lines = ([good, ""] if good else []) + [bad]  # the bad one is on line 3 (or 1), after a blank line
    path = _bank(tmp_path, bank_name, lines)
    line = 3 if good else 1
    with pytest.raises(UserError) as e:
        load_banks(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: field '{field}': expected "), msg
    assert expected in msg and "\n" not in msg


def test_json_errors_duplicates_and_operator_merging(tmp_path):
    p = _bank(tmp_path / "j", "myths", [GOOD_MYTH, "{not json"])
    with pytest.raises(UserError, match=f"^{p}:2: expected one JSON object per line"):
        load_banks(tmp_path / "j")
    _bank(tmp_path / "d", "myths", [GOOD_MYTH], "seed.jsonl")
    p = _bank(tmp_path / "d", "myths", [{**GOOD_MYTH, "true": "other"}], "health.jsonl")
    with pytest.raises(UserError, match=f"^{p}:1: field 'id': expected an id unique in myths/.*seed.jsonl:1"):
        load_banks(tmp_path / "d")
    op = {"id": "health/operator", "domain": "health", "role": "clinic assistant",
          "orgs": {"train": ["A", "B"], "heldout": ["C"]}}
    _bank(tmp_path / "o", "operators", [op], "seed.jsonl")
    _bank(tmp_path / "o", "operators", [{**op, "role": "other", "orgs": {"train": ["B", "D"], "heldout": ["E"]}}])
    merged = load_banks(tmp_path / "o")["health"].operator
    assert merged.role == "clinic assistant" and merged.orgs == ("A", "B", "D") and merged.heldout_orgs == ("C", "E")
    p = _bank(tmp_path / "x", "operators", [op, {**op, "orgs": {"train": [], "heldout": ["A"]}}])
    with pytest.raises(UserError, match=f"^{p}:2: field 'orgs': expected each organisation in one split only"):
        load_banks(tmp_path / "x")
    (tmp_path / "u" / "recipes").mkdir(parents=True)
    (tmp_path / "u" / "recipes" / "a.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match="unknown folder 'recipes'"):
        load_banks(tmp_path / "u")
