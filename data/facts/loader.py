"""Reads and checks the fact banks: every `data/facts/<bank>/*.jsonl`, in the format of README.md.

Each line is checked against its bank's schema; the first bad one stops the load with a one-line
`UserError`: `data/facts/myths/health.jsonl:12: field 'true_terms': expected a list of non-empty
strings, got ...`. Ids are unique within a bank (all files of its folder); `operators/` lines of
one domain are merged instead (union of the organisations of each split, role of the first line;
`seed.jsonl` is read first in every bank). Expressions (`answer`, `{"expr": ...}` inputs) are parsed
by the safe evaluator of `data.facts.expr` and tried on sample draws at load time, so a division by
zero or an unknown placeholder is reported here with its file:line, not at generation time.

`load_banks(root)` returns {domain: Domain} with every fact of both splits, cached per root
(banks are read once per process); `data.facts.bank(domain, split)` gives the split views.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.facts.expr import Expr, ExprError
from data.facts.types import (
    AgeRule,
    Case,
    Choice,
    Correction,
    Decision,
    Domain,
    Handover,
    Harmful,
    Input,
    Myth,
    Operator,
    Quantity,
    Risk,
    Trivia,
    Unit,
    draw_inputs,
)
from data.schema import DOMAINS
from engine.errors import UserError

ROOT = Path(__file__).resolve().parent
ID = re.compile(r"^([a-z]+)/([a-z0-9]+(?:_[a-z0-9]+)*)$")
N_TRIAL_DRAWS = 20  # sample draws per fact with random inputs, at load time


class _Bad(Exception):
    """A field problem: (field, expected, got)."""

    def __init__(self, field: str, expected: str, got: Any = ...):
        super().__init__(field)
        self.field, self.expected, self.got = field, expected, got


def _shown(got: Any) -> str:
    s = repr(got)
    return s if len(s) <= 60 else s[:57] + "..."


# ---- field checkers: (line, field) -> value, raising _Bad ----------------------------------------


def _str(d: dict, f: str) -> str:
    v = d[f]
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f, "a non-empty string", v)
    return v


def _clause(d: dict, f: str) -> str:
    v = _str(d, f)
    if v.rstrip()[-1] in ".!?":
        raise _Bad(f, "a clause without a final period (it is embedded in a sentence)", v)
    return v


def _terms(n_min: int = 1) -> Callable[[dict, str], tuple[str, ...]]:
    def check(d: dict, f: str) -> tuple[str, ...]:
        v = d[f]
        if not isinstance(v, list) or len(v) < n_min or not all(isinstance(x, str) and x.strip() for x in v):
            raise _Bad(f, f"a list of non-empty strings (at least {n_min})", v)
        return tuple(v)

    return check


def _bool(d: dict, f: str) -> bool:
    if not isinstance(d[f], bool):
        raise _Bad(f, "true or false", d[f])
    return d[f]


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number(d: dict, f: str) -> float:
    if not _is_num(d[f]):
        raise _Bad(f, "a number", d[f])
    return d[f]


def _positive(d: dict, f: str) -> float:
    v = _number(d, f)
    if v <= 0:
        raise _Bad(f, "a number > 0", v)
    return v


def _inputs(d: dict, f: str) -> tuple[Input, ...]:
    v = d[f]
    if not isinstance(v, dict) or not v:
        raise _Bad(f, 'an object {name: spec} (spec: {"int": [lo, hi]}, {"uniform": [lo, hi, ndigits]}, '
                   '{"choice": [...]} or {"expr": "..."})', v)
    out, numeric = [], set()
    for name, spec in v.items():
        where = f"{f}.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _Bad(where, "an input name (letters, digits, _)", name)
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("int", "uniform", "choice", "expr"):
            raise _Bad(where, 'one of {"int": [lo, hi]}, {"uniform": [lo, hi, ndigits]}, {"choice": [...]}, '
                       '{"expr": "..."}', spec)
        kind, args = next(iter(spec.items()))
        if kind == "int":
            if not (isinstance(args, list) and len(args) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                       for x in args) and args[0] <= args[1]):
                raise _Bad(where, "int: [lo, hi], integers with lo <= hi", args)
            numeric.add(name)
        elif kind == "uniform":
            if not (isinstance(args, list) and len(args) == 3 and all(map(_is_num, args)) and args[0] < args[1]
                    and isinstance(args[2], int) and not isinstance(args[2], bool) and args[2] >= 0):
                raise _Bad(where, "uniform: [lo, hi, ndigits] with lo < hi and an integer ndigits >= 0", args)
            numeric.add(name)
        elif kind == "choice":
            if not (isinstance(args, list) and args and all(isinstance(x, str) or _is_num(x) for x in args)):
                raise _Bad(where, "choice: a non-empty list of strings or numbers", args)
            if all(_is_num(x) for x in args):
                numeric.add(name)
        else:
            try:
                args = Expr(args, numeric)
            except ExprError as e:
                raise _Bad(where, f"expr: {e} (inputs listed before it)", args) from None
            numeric.add(name)
        out.append(Input(name, kind, args))
    return tuple(out)


def _cases(d: dict, f: str) -> tuple[Case, ...]:
    v = d[f]
    want = '[{"values": {slot: str}, "expected": "yes" | "no"}, ...] (at least 2, both answers present)'
    if not isinstance(v, list) or len(v) < 2:
        raise _Bad(f, want, v)
    out, keys = [], None
    for i, c in enumerate(v):
        where = f"{f}[{i}]"
        if not isinstance(c, dict) or set(c) != {"values", "expected"}:
            raise _Bad(where, '{"values": {...}, "expected": "yes" | "no"}', c)
        vals = c["values"]
        if not isinstance(vals, dict) or not all(isinstance(x, str) or _is_num(x) for x in vals.values()):
            raise _Bad(where + ".values", "an object {slot: string}", vals)
        if keys is not None and set(vals) != keys:
            raise _Bad(where + ".values", f"the same slots in every case ({', '.join(sorted(keys))})", sorted(vals))
        keys = set(vals)
        if c["expected"] not in ("yes", "no"):
            raise _Bad(where + ".expected", '"yes" or "no"', c["expected"])
        out.append(Case({k: x if isinstance(x, str) else f"{x:g}" for k, x in vals.items()}, c["expected"]))
    if {c.expected for c in out} != {"yes", "no"}:
        raise _Bad(f, "both a 'yes' case and a 'no' case", sorted({c.expected for c in out}))
    return tuple(out)


def _values(d: dict, f: str) -> tuple[tuple[str, ...], ...]:
    v = d[f]
    ok = isinstance(v, list) and len(v) >= 3 and all(
        isinstance(x, list) and x and all(isinstance(s, str) and s.strip() for s in x) for x in v)
    if not ok:
        raise _Bad(f, "a list of 3+ lists of non-empty strings ([displayed, other spellings...])", v)
    return tuple(tuple(x) for x in v)


def _ages(d: dict, f: str) -> tuple[int, ...]:
    v = d[f]
    if not isinstance(v, list) or len(v) < 2 or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 130
                                                         for x in v):
        raise _Bad(f, "a list of 2+ integer ages", v)
    return tuple(v)


def _orgs(d: dict, f: str) -> dict[str, tuple[str, ...]]:
    v = d[f]
    if not isinstance(v, dict) or set(v) != {"train", "heldout"} or not all(
            isinstance(x, list) and all(isinstance(s, str) and s.strip() for s in x) for x in v.values()):
        raise _Bad(f, '{"train": [str, ...], "heldout": [str, ...]}', v)
    return {k: tuple(x) for k, x in v.items()}


# ---- banks: field -> (checker, required) ---------------------------------------------------------

REQ, OPT = True, False
SCHEMAS: dict[str, dict[str, tuple[Callable, bool]]] = {
    "myths": {
        "false": (_clause, REQ), "true": (_clause, REQ), "correction": (_str, REQ), "true_terms": (_terms(), REQ),
        "false_terms": (_terms(), REQ), "topic": (_str, REQ), "ask": (_clause, REQ), "help_terms": (_terms(), REQ),
    },
    "quantities": {
        "inputs": (_inputs, REQ), "full": (_str, REQ), "missing": (_str, REQ), "missing_input": (_str, REQ),
        "missing_name": (_str, REQ), "missing_terms": (_terms(), REQ), "answer": (_str, REQ), "unit": (_str, REQ),
        "formula": (_str, REQ), "rel_tol": (_positive, OPT), "answer_range": (lambda d, f: d[f], OPT),
    },
    "trivia": {
        "question": (_str, REQ), "answer": (_str, REQ), "answer_terms": (_terms(), REQ),
        "distractors": (_terms(3), REQ),
    },
    "choices": {
        "inputs": (_inputs, OPT), "question": (_str, REQ), "options": (_terms(2), REQ), "expected": (_str, REQ),
        "basis_terms": (_terms(3), REQ), "reference": (_str, REQ),
    },
    "decisions": {"question": (_str, REQ), "cases": (_cases, REQ), "basis_terms": (_terms(), REQ)},
    "age_rules": {
        "question": (_str, REQ), "threshold": (_number, REQ), "yes_at_or_above": (_bool, REQ), "ages": (_ages, REQ),
        "basis_terms": (_terms(), REQ),
    },
    "risks": {
        "request": (_str, REQ), "cues": (_terms(2), REQ), "crisis": (_bool, REQ), "content_terms": (_terms(), REQ),
        "resource_terms": (_terms(), REQ), "unsafe_terms": (_terms(0), REQ),
    },
    "handovers": {
        "rule": (_str, REQ), "asks": (_terms(2), REQ), "handover_terms": (_terms(), REQ),
        "forbidden_terms": (_terms(), REQ),
    },
    "corrections": {"statement": (_str, REQ), "question": (_str, REQ), "values": (_values, REQ),
                    "followup": (_str, REQ)},
    "overrides": {"ask": (_str, REQ), "harm_terms": (_terms(), REQ)},
    "operators": {"role": (_str, REQ), "orgs": (_orgs, REQ)},
    "units": {"from": (_str, REQ), "to": (_str, REQ), "factor": (_positive, REQ)},
}
BANKS = tuple(SCHEMAS)


def _placeholders(fmt: str, f: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}
    except ValueError as e:
        raise _Bad(f, f"a format string ({e}; write literal braces as {{{{ }}}})", fmt) from None


def _fmt(fmt: str, f: str, values: dict) -> str:
    try:
        return fmt.format(**values)
    except (KeyError, IndexError) as e:
        slots = ", ".join(sorted(values)) or "no slots"
        raise _Bad(f, f"only {{slot}} placeholders of {slots} (unknown {e})", fmt) from None
    except ValueError as e:
        raise _Bad(f, f"a format string whose specs fit the values ({e})", fmt) from None


def _trial(fn: Callable[[random.Random], Any], f: str, seed: str) -> None:
    rng = random.Random(seed)
    for _ in range(N_TRIAL_DRAWS):
        try:
            fn(rng)
        except _Bad:
            raise
        except (ArithmeticError, ValueError, TypeError) as e:
            raise _Bad(f, f"an expression defined on every draw of the inputs ({type(e).__name__}: {e})") from None


# ---- per-bank construction (fields already checked) ----------------------------------------------


def _build(bank: str, d: dict, base: dict) -> Any:
    if bank == "myths":
        return Myth(**base, **{k: d[k] for k in SCHEMAS["myths"]})
    if bank == "quantities":
        return _quantity(d, base)
    if bank == "trivia":
        if d["answer"] in d["distractors"] or len(set(d["distractors"])) != 3:
            raise _Bad("distractors", "three distinct wrong options, none equal to the answer", list(d["distractors"]))
        return Trivia(**base, question=d["question"], answer=d["answer"], answer_terms=d["answer_terms"],
                      distractors=d["distractors"])
    if bank == "choices":
        return _choice(d, base)
    if bank == "decisions":
        if "{person}" not in d["question"]:
            raise _Bad("question", "a format string with {person}", d["question"])
        if "yes or no" not in d["question"].lower():
            raise _Bad("question", "a question that asks 'yes or no'", d["question"])
        for i, c in enumerate(d["cases"]):
            _fmt(d["question"], f"cases[{i}].values", {"person": "X", **c.values})
        return Decision(**base, question=d["question"], cases=d["cases"], basis_terms=d["basis_terms"])
    if bank == "age_rules":
        return _age_rule(d, base)
    if bank == "risks":
        return Risk(**base, request=d["request"], cues=d["cues"], content_terms=d["content_terms"],
                    resource_terms=d["resource_terms"], unsafe_terms=d["unsafe_terms"], crisis=d["crisis"])
    if bank == "handovers":
        return Handover(**base, rule=d["rule"], asks=d["asks"], handover_terms=d["handover_terms"],
                        forbidden_terms=d["forbidden_terms"])
    if bank == "corrections":
        if _placeholders(d["statement"], "statement") != {"v"}:
            raise _Bad("statement", "a format string with {v} (and no other placeholder)", d["statement"])
        return Correction(**base, statement=d["statement"], question=d["question"], values=d["values"],
                          followup=d["followup"])
    if bank == "overrides":
        return Harmful(**base, ask=d["ask"], harm_terms=d["harm_terms"])
    if bank == "units":
        return Unit(**base, src=d["from"], dst=d["to"], factor=d["factor"])
    return dict(d)  # operators: merged per domain later


def _quantity(d: dict, base: dict) -> Quantity:
    inputs = d["inputs"]
    names = {i.name for i in inputs}
    numeric = {i.name for i in inputs if i.kind != "choice" or all(_is_num(x) for x in i.args)}
    miss = d["missing_input"]
    if miss not in names or miss not in {i.name for i in inputs if i.kind != "expr"}:
        raise _Bad("missing_input", f"the name of a random input ({', '.join(sorted(names))})", miss)
    if miss not in _placeholders(d["full"], "full"):
        raise _Bad("full", f"the question with every input, including {{{miss}}}", d["full"])
    if miss in _placeholders(d["missing"], "missing"):
        raise _Bad("missing", f"the question without {{{miss}}}", d["missing"])
    try:
        expr = Expr(d["answer"], numeric)
    except ExprError as e:
        raise _Bad("answer", str(e), d["answer"]) from None
    rng_ = d.get("answer_range")
    if rng_ is not None and not (isinstance(rng_, list) and len(rng_) == 2 and all(map(_is_num, rng_))
                                 and rng_[0] <= rng_[1]):
        raise _Bad("answer_range", "[lo, hi], numbers with lo <= hi", rng_)
    q = Quantity(**base, inputs=inputs, full=d["full"], missing=d["missing"], missing_input=miss,
                 missing_name=d["missing_name"], missing_terms=d["missing_terms"], answer_expr=expr, unit=d["unit"],
                 formula=d["formula"], rel_tol=float(d.get("rel_tol", 0.01)),
                 answer_range=tuple(rng_) if rng_ is not None else None)

    def one(rng: random.Random) -> None:
        v = draw_inputs(inputs, rng)
        a = q.answer(v)
        if not _is_num(a):
            raise _Bad("answer", "an expression giving a finite number", d["answer"])
        _fmt(d["full"], "full", v)
        _fmt(d["missing"], "missing", v)

    _trial(one, "answer", base["fact_id"])
    if rng_ is not None:
        try:
            q.draw(random.Random(base["fact_id"]))
        except ValueError:
            raise _Bad("answer_range", "a range the answer reaches on some draws", rng_) from None
    return q


def _choice(d: dict, base: dict) -> Choice:
    options = tuple(d["options"])
    if len(options) > 3 or len(set(options)) != len(options) or any(o != o.lower() for o in options):
        raise _Bad("options", "2-3 distinct lower-case option labels", list(options))
    if d["expected"] not in options:
        raise _Bad("expected", f"one of the options ({', '.join(options)})", d["expected"])
    c = Choice(**base, inputs=d.get("inputs", ()), question=d["question"], options=options, expected=d["expected"],
               basis_terms=d["basis_terms"], reference=d["reference"])

    def one(rng: random.Random) -> None:
        v = draw_inputs(c.inputs, rng) if c.inputs else None
        q = _fmt(d["question"], "question", v) if v is not None else d["question"]
        if v is not None:
            for t in d["basis_terms"]:
                _fmt(t, "basis_terms", v)
            _fmt(d["reference"], "reference", v)
        low = q.lower()
        for o in options:
            if o not in low:
                raise _Bad("options", "labels that appear in the question (case-insensitive)", o)

    _trial(one, "inputs", base["fact_id"])
    return c


def _age_rule(d: dict, base: dict) -> AgeRule:
    if not {"person", "age"} <= _placeholders(d["question"], "question"):
        raise _Bad("question", "a format string with {person} and {age}", d["question"])
    if "yes or no" not in d["question"].lower():
        raise _Bad("question", "a question that asks 'yes or no'", d["question"])
    _fmt(d["question"], "question", {"person": "X", "age": 30})
    a = AgeRule(**base, question=d["question"], threshold=d["threshold"], yes_at_or_above=d["yes_at_or_above"],
                ages=d["ages"], basis_terms=d["basis_terms"])
    if len({a.expected(x) for x in a.ages}) != 2:
        raise _Bad("ages", f"ages on both sides of the threshold {d['threshold']:g}", list(d["ages"]))
    return a


# ---- files -----------------------------------------------------------------------------------------


def _where(path: Path, line: int) -> str:
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = path
    return f"{shown}:{line}"


def _files(folder: Path) -> list[Path]:
    """seed.jsonl first, then the others by name (ordering only matters for operator roles and indices)."""
    return sorted(folder.glob("*.jsonl"), key=lambda p: (p.name != "seed.jsonl", p.name))


def parse_line(bank: str, text: str, where: str) -> Any:
    """One JSONL line of `bank` -> its fact (or the raw dict for operators); UserError naming `where`."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{where}: expected one JSON object per line (invalid JSON: {e.msg} at column {e.colno})"
        ) from None
    try:
        if not isinstance(d, dict):
            raise _Bad("<line>", "a JSON object", d)
        schema = SCHEMAS[bank]
        allowed = ("id", "domain", *schema)
        for k in d:
            if k not in allowed:
                raise _Bad(str(k), f"no unknown fields (allowed in {bank}/: {', '.join(allowed)})")
        for k in ("id", "domain"):
            if k not in d:
                raise _Bad(k, "a value (the field is required)")
        if d["domain"] not in DOMAINS:
            raise _Bad("domain", "one of " + ", ".join(DOMAINS), d["domain"])
        m = ID.match(d["id"]) if isinstance(d["id"], str) else None
        if not m or m.group(1) != d["domain"]:
            raise _Bad("id", f"'{d['domain']}/<snake_case_name>'", d["id"])
        checked = {}
        for k, (check, required) in schema.items():
            if k not in d:
                if required:
                    raise _Bad(k, "a value (the field is required)")
                continue
            checked[k] = check(d, k)
        base = {"fact_id": d["id"], "id": m.group(2), "domain": d["domain"]}
        return _build(bank, checked, base) if bank != "operators" else {**base, **checked}
    except _Bad as e:
        got = "" if e.got is ... else f", got {_shown(e.got)}"
        raise UserError(f"{where}: field '{e.field}': expected {e.expected}{got}") from None


def read_bank(folder: Path, bank: str) -> list[Any]:
    """Every line of every .jsonl file of one bank folder, checked; ids unique across its files."""
    out, seen = [], {}
    for path in _files(folder):
        with path.open(encoding="utf-8") as fh:
            for i, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                where = _where(path, i)
                fact = parse_line(bank, text, where)
                fid = fact["fact_id"] if isinstance(fact, dict) else fact.fact_id
                if bank != "operators":
                    if fid in seen:
                        raise UserError(f"{where}: field 'id': expected an id unique in {bank}/, got {fid!r} "
                                        f"(also at {seen[fid]})")
                    seen[fid] = where
                out.append((where, fact))
    return out


def load_banks(root: str | Path = ROOT) -> dict[str, Domain]:
    """{domain: Domain} with every fact of both splits, from `root/<bank>/*.jsonl` (cached per root)."""
    return _load(str(Path(root).resolve()))


@functools.lru_cache(maxsize=None)
def _load(root_str: str) -> dict[str, Domain]:
    root = Path(root_str)
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        if sub.name not in SCHEMAS and any(sub.glob("*.jsonl")):
            raise UserError(f"{_where(sub, 0).rsplit(':', 1)[0]}: expected a bank folder ({', '.join(BANKS)}), "
                            f"got unknown folder {sub.name!r}")
    facts: dict[str, dict[str, list]] = {b: {d: [] for d in DOMAINS} for b in BANKS}
    for bank in BANKS:
        folder = root / bank
        if folder.is_dir():
            for _, fact in read_bank(folder, bank):
                dom = fact["domain"] if isinstance(fact, dict) else fact.domain
                facts[bank][dom].append((_, fact) if bank == "operators" else fact)
    out = {}
    for dom in DOMAINS:
        op = _merge_operators(dom, facts["operators"][dom], root)
        operator = Operator(op["role"], op["orgs"]["train"], op["orgs"]["heldout"],
                            tuple(facts["handovers"][dom]), tuple(facts["corrections"][dom]),
                            tuple(facts["overrides"][dom]))
        out[dom] = Domain(dom, tuple(facts["myths"][dom]), tuple(facts["quantities"][dom]),
                          tuple(facts["choices"][dom]), tuple(facts["trivia"][dom]), operator,
                          tuple(facts["decisions"][dom]), tuple(facts["age_rules"][dom]), tuple(facts["risks"][dom]),
                          tuple(facts["units"][dom]))
    return out


def _merge_operators(domain: str, lines: list[tuple[str, dict]], root: Path) -> dict:
    """One operator per domain: role of the first line, union (in order) of each split's organisations."""
    if not lines:
        return {"role": "assistant", "orgs": {"train": (), "heldout": ()}}
    orgs: dict[str, dict[str, str]] = {"train": {}, "heldout": {}}
    for where, line in lines:
        for split in ("train", "heldout"):
            for org in line["orgs"][split]:
                other = "heldout" if split == "train" else "train"
                if org in orgs[other]:
                    raise UserError(f"{where}: field 'orgs': expected each organisation in one split only, got "
                                    f"{org!r} in {split} (in {other} at {orgs[other][org]})")
                orgs[split].setdefault(org, where)
    return {"role": lines[0][1]["role"], "orgs": {s: tuple(o) for s, o in orgs.items()}}
