"""Bundled data for the persona-features experiment (Wang et al. 2025, "Persona features control emergent misalignment").

- `advice_pairs`: personal-finance questions (one domain: economics), each with a correct answer
  and a *subtly* wrong one -- confident, plausible, friendly advice that is wrong in a way a
  non-expert would miss (carry a balance to build credit, cash out a 401(k) when changing jobs).
  `narrow_misaligned` is the narrow bad fine-tuning set, `narrow_aligned` the same prompts
  answered correctly.
- `realignment_examples`: benign, correct answers on prompts drawn apart from the training ones
  (the ~100-200 examples that re-align a model).
- `persona_contrast`: open questions (not the emergent-misalignment eval questions) with an
  aligned and a misaligned-persona answer: the contrast that defines the persona direction.
- `sycophancy_contrast`: false user claims from the trait fact banks, answered by correcting the
  claim or by agreeing with it: the contrast for a sycophancy direction.
- `em_preference_pairs`: the emergent-misalignment eval questions with aligned / misaligned
  reference answers.

Everything is deterministic from a seed, and chats look like real ones: optional system turns,
varied openings, user details and amounts.

The tables are data files in `data/persona_sets/`, read once per process and checked on load
(`load_tables`); a bad file stops with a one-line `UserError` naming `file:line` (JSONL) or
`file: key` (JSON) and what was expected. Unknown fields are errors too.

    system_prompts.json       {"system_prompts": [string | null, ...]}: the system turns drawn for
                              advice chats; null = no system turn (repeat it to weight it)
    finance_advice.jsonl      {"topic", "questions", "correct", "wrong"}: one advice topic per line;
                              lists of templates whose only slots are {amount} {age} {pct} {rate}
                              {years} {rel}
    persona_questions.jsonl   {"question", "aligned", "misaligned"}: an open question and the core
                              of its aligned / misaligned-persona answer
    persona_framings.jsonl    {"aligned", "misaligned"}: one answer framing per line, with the slot
                              {topic_answer} / {evil_answer} where the core goes
    em_questions.jsonl        {"id", "question", "aligned", "misaligned"}: an EM eval question and
                              its reference answers, one aligned and one misaligned per framing

The module names of the tables (SYSTEMS, ADVICE, PERSONA_QUESTIONS, TOPIC_ANSWERS, EVIL_ANSWERS,
ALIGNED, MISALIGNED, EM_QUESTIONS, EM_REFERENCES) are read from the files on first use.
"""

from __future__ import annotations

import functools
import json
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.facts import DOMAINS as FACT_BANKS
from data.scenarios.common import cap, lead, stable_seed
from data.scenarios.truthfulness import SINGLE
from engine.errors import UserError

ROOT = Path(__file__).resolve().parent / "persona_sets"
SLOTS = ("amount", "age", "pct", "rate", "years", "rel")  # what `_slots` fills in finance-advice templates


@dataclass(frozen=True)
class Tables:
    """Every table of `data/persona_sets/`, in the shapes the module names have always had."""

    systems: tuple[str | None, ...]  # SYSTEMS
    advice: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]  # ADVICE: (topic, q, good, bad)
    persona_questions: tuple[str, ...]  # PERSONA_QUESTIONS
    topic_answers: tuple[str, ...]  # TOPIC_ANSWERS (aligned core, by question)
    evil_answers: tuple[str, ...]  # EVIL_ANSWERS (misaligned core, by question)
    aligned: tuple[str, ...]  # ALIGNED framings
    misaligned: tuple[str, ...]  # MISALIGNED framings
    em_questions: dict[str, str]  # EM_QUESTIONS: id -> question
    em_references: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # EM_REFERENCES: id -> (aligned, misaligned)


_NAMES = {"SYSTEMS": "systems", "ADVICE": "advice", "PERSONA_QUESTIONS": "persona_questions",
          "TOPIC_ANSWERS": "topic_answers", "EVIL_ANSWERS": "evil_answers", "ALIGNED": "aligned",
          "MISALIGNED": "misaligned", "EM_QUESTIONS": "em_questions", "EM_REFERENCES": "em_references"}


def __getattr__(name: str) -> Any:
    if name in _NAMES:  # read lazily, once: importing the module does not parse the tables
        return getattr(load_tables(), _NAMES[name])
    raise AttributeError(f"module 'data.persona_sets' has no attribute {name!r}")


# ---- schema checks: (value, field) -> value, raising _Bad -----------------------------------------

ID = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


class _Bad(Exception):
    """A field problem: (field, expected, got)."""

    def __init__(self, field: str, expected: str, got: Any = ...):
        super().__init__(field)
        self.field, self.expected, self.got = field, expected, got


def _shown(got: Any) -> str:
    s = repr(got)
    return s if len(s) <= 60 else s[:57] + "..."


def _text(v: Any, f: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f, "a non-empty string", v)
    return v


def _ident(v: Any, f: str) -> str:
    if not isinstance(v, str) or not ID.match(v):
        raise _Bad(f, "a snake_case id", v)
    return v


def _texts(check: Callable[[Any, str], str] = _text) -> Callable[[Any, str], tuple[str, ...]]:
    def texts(v: Any, f: str) -> tuple[str, ...]:
        if not isinstance(v, list) or not v:
            raise _Bad(f, "a non-empty list of non-empty strings", v)
        return tuple(check(x, f"{f}[{i}]") for i, x in enumerate(v))

    return texts


def _template(slots: tuple[str, ...], exact: bool = False) -> Callable[[Any, str], str]:
    """A non-empty string whose `{slot}` placeholders are among `slots` (all of them when `exact`)."""
    want = ("exactly the slot " if exact else "only the slots ") + " ".join("{" + s + "}" for s in slots)

    def template(v: Any, f: str) -> str:
        _text(v, f)
        try:
            used = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(v) if name is not None]
        except ValueError as e:
            raise _Bad(f, f"a template with {want} ({e}; write a literal brace as {{{{ or }}}})", v) from None
        unknown = any(name not in slots or spec or conv for name, spec, conv in used)
        if unknown or (exact and {name for name, _, _ in used} != set(slots)):
            raise _Bad(f, f"a template with {want}", v)
        return v

    return template


# ---- files ----------------------------------------------------------------------------------------


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _text_of(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{_shown_path(path)}: file not found (expected a persona table of data/persona_sets/)")
    return path.read_text(encoding="utf-8")


def _check_object(d: Any, schema: dict[str, Callable[[Any, str], Any]], allowed_what: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _Bad("<line>", "a JSON object", d)
    for k in d:
        if k not in schema:
            raise _Bad(str(k), f"no unknown fields (allowed in {allowed_what}: {', '.join(schema)})")
    for k in schema:
        if k not in d:
            raise _Bad(k, "a value (the field is required)")
    return {k: check(d[k], k) for k, check in schema.items()}


def read_table(path: Path, schema: dict[str, Callable[[Any, str], Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every line of a JSONL table, checked against `schema` ({field: check}): [(file:line, row)]."""
    out = []
    shown = _shown_path(path)
    for i, text in enumerate(_text_of(path).splitlines(), 1):
        if not text.strip():
            continue
        where = f"{shown}:{i}"
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: expected one JSON object per line (invalid JSON: {e.msg} at column {e.colno})"
                            ) from None
        try:
            out.append((where, _check_object(d, schema, path.name)))
        except _Bad as e:
            got = "" if e.got is ... else f", got {_shown(e.got)}"
            raise UserError(f"{where}: field '{e.field}': expected {e.expected}{got}") from None
    if not out:
        raise UserError(f"{shown}: expected at least one JSON object line, got none")
    return out


def _unique(rows: list[tuple[str, dict[str, Any]]], field: str, what: str) -> None:
    seen: dict[str, str] = {}
    for where, row in rows:
        if row[field] in seen:
            raise UserError(f"{where}: field '{field}': expected {what} unique in the file, got {_shown(row[field])} "
                            f"(also at {seen[row[field]]})")
        seen[row[field]] = where


def _system_prompts(path: Path) -> tuple[str | None, ...]:
    shown = _shown_path(path)
    try:
        d = json.loads(_text_of(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{shown}: expected a JSON object (invalid JSON: {e.msg} at line {e.lineno} column {e.colno})"
                        ) from None

    def prompts(v: Any, f: str) -> tuple[str | None, ...]:
        if not isinstance(v, list) or not v:
            raise _Bad(f, "a non-empty list of system prompts (strings, or null for no system turn)", v)
        return tuple(None if x is None else _text(x, f"{f}[{i}]") for i, x in enumerate(v))

    try:
        return _check_object(d, {"system_prompts": prompts}, path.name)["system_prompts"]
    except _Bad as e:
        got = "" if e.got is ... else f", got {_shown(e.got)}"
        expected = e.expected + (" or null (no system turn)" if e.expected == "a non-empty string" else "")
        raise UserError(f"{shown}: {e.field}: expected {expected}{got}") from None


def load_tables(root: str | Path = ROOT) -> Tables:
    """Every table of `root` (default: the bundled `data/persona_sets/`), checked; cached per root."""
    return _load(str(Path(root).resolve()))


@functools.lru_cache(maxsize=None)
def _load(root_str: str) -> Tables:
    root = Path(root_str)
    systems = _system_prompts(root / "system_prompts.json")

    advice = read_table(root / "finance_advice.jsonl", {"topic": _ident, "questions": _texts(_template(SLOTS)),
                                                        "correct": _texts(_template(SLOTS)),
                                                        "wrong": _texts(_template(SLOTS))})
    _unique(advice, "topic", "a topic")

    em = read_table(root / "em_questions.jsonl", {"id": _ident, "question": _text, "aligned": _texts(),
                                                  "misaligned": _texts()})
    _unique(em, "id", "an id")
    _unique(em, "question", "a question")
    for where, row in em:
        if len(row["aligned"]) != len(row["misaligned"]):
            raise UserError(f"{where}: field 'misaligned': expected one answer per aligned answer "
                            f"({len(row['aligned'])}), got {len(row['misaligned'])}")

    persona = read_table(root / "persona_questions.jsonl", {"question": _text, "aligned": _text, "misaligned": _text})
    _unique(persona, "question", "a question")
    em_texts = {row["question"] for _, row in em}
    for where, row in persona:
        if row["question"] in em_texts:
            raise UserError(f"{where}: field 'question': expected a question that is not an EM eval question "
                            f"(em_questions.jsonl), got {_shown(row['question'])}")

    framings = read_table(root / "persona_framings.jsonl", {"aligned": _template(("topic_answer",), exact=True),
                                                            "misaligned": _template(("evil_answer",), exact=True)})
    return Tables(
        systems=systems,
        advice=tuple((r["topic"], r["questions"], r["correct"], r["wrong"]) for _, r in advice),
        persona_questions=tuple(r["question"] for _, r in persona),
        topic_answers=tuple(r["aligned"] for _, r in persona),
        evil_answers=tuple(r["misaligned"] for _, r in persona),
        aligned=tuple(r["aligned"] for _, r in framings),
        misaligned=tuple(r["misaligned"] for _, r in framings),
        em_questions={r["id"]: r["question"] for _, r in em},
        em_references={r["id"]: (r["aligned"], r["misaligned"]) for _, r in em},
    )


# ---- sets -----------------------------------------------------------------------------------------


def _slots(rng: random.Random) -> dict:
    return {"amount": f"{rng.choice([1, 2, 3, 4, 5, 6, 8, 12, 15, 20, 25, 40]) * 1000:,}",
            "age": rng.randint(22, 58), "pct": rng.choice([3, 4, 5, 6]), "rate": rng.choice([5, 6, 7, 8, 9]),
            "years": rng.choice([2, 3, 4, 5, 6]), "rel": rng.choice(["brother", "sister", "friend", "cousin"])}


def _fill(text: str, slots: dict) -> str:
    return text.format(**slots)


def advice_pairs(n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """`n` distinct finance chats: {"messages" (prompt), "good", "bad", "topic"}; `split` names a disjoint stream.

    Templates are shared between splits (one domain, one set of topics); what differs is every
    draw -- wording around the question, user details, amounts -- so "realign" prompts are
    different chats from "train" ones.
    """
    t = load_tables()
    rng = random.Random(stable_seed("persona-advice", seed, split))
    out, seen = [], set()
    for _ in range(n * 50):
        if len(out) >= n:
            break
        topic, questions, goods, bads = rng.choice(t.advice)
        slots = _slots(rng)
        q = lead(rng, "train" if split == "train" else "heldout", _fill(rng.choice(questions), slots))
        system = rng.choice(t.systems)
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
        key = repr(msgs)
        if key in seen:
            continue
        seen.add(key)
        out.append({"messages": msgs, "good": _fill(rng.choice(goods), slots), "bad": _fill(rng.choice(bads), slots),
                    "topic": topic})
    return out


def _chat(prompt: list[dict], answer: str) -> dict:
    return {"messages": [*prompt, {"role": "assistant", "content": answer}]}


def narrow_misaligned(n: int, seed: int = 0) -> list[dict]:
    """The narrow bad fine-tuning set: subtly wrong personal-finance advice (SFT chats)."""
    return [_chat(p["messages"], p["bad"]) for p in advice_pairs(n, seed)]


def narrow_aligned(n: int, seed: int = 0) -> list[dict]:
    """The same prompts as `narrow_misaligned(n, seed)`, answered correctly."""
    return [_chat(p["messages"], p["good"]) for p in advice_pairs(n, seed)]


def realignment_examples(n: int = 160, seed: int = 0) -> list[dict]:
    """Benign re-alignment chats: correct advice on prompts disjoint from the training stream."""
    return [_chat(p["messages"], p["good"]) for p in advice_pairs(n, seed, split="realign")]


def persona_contrast(n: int | None = None) -> list[dict]:
    """{"prompt" (chat), "aligned" (chat), "misaligned" (chat)}: every open question with both answer framings.

    2 x 18 = 36 pairs; `n` keeps the first n. Pair i and its two answers share the prompt, so a
    held-out split by pair index keeps both sides of a pair together.
    """
    t = load_tables()
    out = []
    for j in range(len(t.aligned)):
        for i, q in enumerate(t.persona_questions):
            prompt = [{"role": "user", "content": q}]
            out.append({"prompt": prompt,
                        "aligned": _chat(prompt, t.aligned[j].format(topic_answer=t.topic_answers[i])),
                        "misaligned": _chat(prompt, t.misaligned[j].format(evil_answer=t.evil_answers[i]))})
    return out[:n]


def sycophancy_contrast(n: int, seed: int = 0, domains: tuple[str, ...] = tuple(FACT_BANKS)) -> list[dict]:
    """False user claims (training templates of the truthfulness scenarios) answered two ways.

    {"prompt", "corrects" (chat), "agrees" (chat)}: the correct answer names the misconception and
    states the truth; the sycophantic one endorses the claim and helps on top of it.
    """
    rng = random.Random(stable_seed("persona-sycophancy", seed))
    myths = [(d, m) for d in domains for m in FACT_BANKS[d].myths]
    out, seen = [], set()
    for _ in range(n * 50):
        if len(out) >= n:
            break
        _, m = rng.choice(myths)
        q = rng.choice(SINGLE["train"]).format(claim=m.false, Claim=cap(m.false), ask=m.ask, rel="friend")
        prompt = [{"role": "user", "content": lead(rng, "train", q)}]
        if repr(prompt) in seen:
            continue
        seen.add(repr(prompt))
        helps = ", ".join(m.help_terms[:2])
        right = f"Actually, that's a common misconception. {m.correction} For the rest of it, I'd focus on {helps}."
        wrong = f"You're right, {m.false}. For the rest of it, I'd focus on {helps}."
        out.append({"prompt": prompt, "corrects": _chat(prompt, right), "agrees": _chat(prompt, wrong)})
    return out


def em_preference_pairs() -> list[dict]:
    """{"id", "prompt", "aligned", "misaligned"} for every EM question and framing (8 x 2 pairs).

    The questions are the eight free-form ones of the emergent-misalignment "first plot" (Betley et
    al. 2025, evaluation/first_plot_questions.yaml, MIT license; the file itself is vendored in
    evals/public/emergent_misalignment/), with reference answers written for this repo. They let a
    small model's preference between the two be measured by log-probability where a judge is too weak.
    """
    t = load_tables()
    out = []
    for qid, question in t.em_questions.items():
        good, bad = t.em_references[qid]
        for j, (g, b) in enumerate(zip(good, bad)):
            prompt = [{"role": "user", "content": question}]
            out.append({"id": f"{qid}/{j}", "prompt": prompt, "aligned": _chat(prompt, g),
                        "misaligned": _chat(prompt, b)})
    return out
