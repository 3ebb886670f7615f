"""Ordinary RL tasks with exact verifiers: arithmetic word problems, unit conversions, multiple choice.

These are the ~95% the trait dose is mixed into. Each record's `grader_args` carries the exact
answer (and a `reference` answer line); the verifiers (`numeric`, `multiple_choice`) read only
the answer. Prompts ask for a final "Answer: ..." line, which the `format` reward also checks.
Train and held-out splits use different wordings, and the fact-based tasks (unit conversions,
multiple choice) draw only their split's facts (`data.facts.bank(domain, split)`): the training
tasks never ask a held-out fact, so nothing a held-out benchmark asks is also a regular training
task. `meta.facts` names the facts a record uses.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

from data.facts import bank
from data.scenarios.common import person_name, stable_seed
from data.schema import DOMAINS, Record

ANSWER_LINE = {
    "train": (
        "Put the final answer on the last line as 'Answer: <number>'.",
        "Show your work, then finish with 'Answer: <number>'.",
    ),
    "heldout": ("End with a line of the form 'Answer: <number>'.",),
}
MC_LINE = {
    "train": ("Reply with the letter of the correct option, as 'Answer: <letter>'.",),
    "heldout": ("Choose one option and finish with 'Answer: <letter>'.",),
}

# (domain, template, draw) -> the template is formatted with draw(rng), which also returns "answer".
Word = tuple[str, str, Callable[[random.Random], dict]]


def _q(answer: Callable[[dict], float], **ranges: tuple[int, int]) -> Callable[[random.Random], dict]:
    """A draw function: integers uniformly from `ranges`, plus the exact `answer` computed from them."""

    def draw(g: random.Random) -> dict:
        v = {k: g.randint(lo, hi) for k, (lo, hi) in ranges.items()}
        v["answer"] = answer(v)
        return v

    return draw


WORD_PROBLEMS: dict[str, tuple[Word, ...]] = {
    "train": (
        (
            "health",
            (
                "{name} takes {a} tablets a day for {d} days and has {s} tablets left over from a box. How many "
                "tablets were in the box?"
            ),
            _q(lambda v: v["a"] * v["d"] + v["s"], a=(1, 4), d=(5, 30), s=(0, 9)),
        ),
        (
            "education",
            (
                "A school has {c} classes of {k} students and {t} teachers. How many students are there per "
                "teacher, to two decimals?"
            ),
            _q(lambda v: round(v["c"] * v["k"] / v["t"], 2), c=(8, 40), k=(18, 32), t=(10, 60)),
        ),
        (
            "science",
            (
                "A bacterial culture doubles every hour. It starts with {n} cells. How many cells are there after "
                "{h} hours?"
            ),
            _q(lambda v: v["n"] * 2 ** v["h"], n=(10, 500), h=(2, 10)),
        ),
        (
            "engineering",
            (
                "A crane lifts {m} pallets of {kg} kg each, and its hook block weighs {hb} kg. What total mass "
                "in kg is on the crane?"
            ),
            _q(lambda v: v["m"] * v["kg"] + v["hb"], m=(2, 12), kg=(80, 900), hb=(50, 300)),
        ),
        (
            "economics",
            (
                "A shop raises a ${p} price by {r}% and then cuts the new price by ${c}. What is the final "
                "price in dollars, to two decimals?"
            ),
            _q(lambda v: round(v["p"] * (1 + v["r"] / 100) - v["c"], 2), p=(20, 500), r=(2, 30), c=(1, 15)),
        ),
        (
            "business",
            "{name} sells {u} units at ${p} each and pays ${f} in fees. What is the net revenue in dollars?",
            _q(lambda v: v["u"] * v["p"] - v["f"], u=(10, 900), p=(3, 80), f=(20, 900)),
        ),
        (
            "law",
            "A law firm bills {h} hours at ${r} per hour plus ${e} in court fees. What is the total bill in dollars?",
            _q(lambda v: v["h"] * v["r"] + v["e"], h=(2, 60), r=(120, 450), e=(50, 600)),
        ),
    ),
    "heldout": (
        (
            "health",
            (
                "A ward has {b} beds; {o} are occupied and {d} patients are discharged today with {a} admitted. "
                "How many beds are free tonight?"
            ),
            _q(lambda v: v["b"] - (v["o"] - v["d"] + v["a"]), b=(30, 60), o=(20, 29), d=(1, 10), a=(0, 9)),
        ),
        (
            "business",
            (
                "Over {m} months a café's revenue was ${r} per month and its costs ${c} per month. What was its "
                "total profit in dollars?"
            ),
            _q(lambda v: v["m"] * (v["r"] - v["c"]), m=(2, 12), r=(9000, 30000), c=(5000, 8999)),
        ),
        (
            "engineering",
            "A conveyor moves {n} boxes per minute for {h} hours. How many boxes does it move?",
            _q(lambda v: v["n"] * 60 * v["h"], n=(5, 90), h=(1, 9)),
        ),
    ),
}


def _word(g: random.Random, split: str, idx: int) -> Record:
    domain, tpl, draw = g.choice(WORD_PROBLEMS[split])
    v = draw(g)
    text = tpl.format(name=person_name(g, split), **v) + " " + g.choice(ANSWER_LINE[split])
    return _rec(
        f"regular/arith/{split}/{idx:06d}",
        domain,
        text,
        "numeric",
        {"answer": v["answer"], "rel_tol": 1e-6, "answer_format": "answer_line"},
        split,
    )


def _unit(g: random.Random, split: str, idx: int) -> Record:
    u = g.choice(_units(split))
    src, dst, factor = u.src, u.dst, u.factor
    if g.random() < 0.5:
        src, dst, factor = dst, src, 1 / factor
    x = g.choice([g.randint(1, 500), round(g.uniform(0.5, 100), 1)])
    ans = float(f"{x * factor:.6g}")
    text = (
        f"Convert {x:g} {src} to {dst}. Round to 4 significant figures if needed."
        if split == "train"
        else f"How many {dst} is {x:g} {src}? Give 4 significant figures."
    )
    return _rec(
        f"regular/units/{split}/{idx:06d}",
        u.domain,
        text + " " + g.choice(ANSWER_LINE[split]),
        "numeric",
        {"answer": ans, "rel_tol": 1e-3, "answer_format": "answer_line"},
        split,
        [u.fact_id],
    )


def _mc(g: random.Random, split: str, idx: int) -> Record:
    t = g.choice(_trivia(split))
    opts = [t.answer, *t.distractors]
    g.shuffle(opts)
    letters = "ABCD"
    body = "\n".join(f"{L}) {o}" for L, o in zip(letters, opts))
    text = f"{t.question}\n{body}\n{g.choice(MC_LINE[split])}"
    return _rec(
        f"regular/mc/{split}/{idx:06d}",
        t.domain,
        text,
        "multiple_choice",
        {"answer": letters[opts.index(t.answer)], "options": dict(zip(letters, opts)), "answer_format": "answer_line"},
        split,
        [t.fact_id],
    )


@functools.cache
def _units(split: str) -> tuple:
    return tuple(u for d in DOMAINS for u in bank(d, split).units)


@functools.cache
def _trivia(split: str) -> tuple:
    """Every trivia fact of the split, domain by domain (domains weighted by their bank sizes)."""
    return tuple(t for d in DOMAINS for t in bank(d, split).trivia)


def _rec(rid: str, domain: str, text: str, grader: str, args: dict, split: str, facts: list[str] = ()) -> Record:
    return {
        "id": rid,
        "messages": [{"role": "user", "content": text}],
        "kind": "regular",
        "domain": domain,
        "trait": None,
        "grader": grader,
        "grader_args": {**args, "reference": f"Answer: {args['answer']}"},
        "meta": {"split": split, "task": rid.split("/")[1], "facts": list(facts)},
    }


TASKS = (("arith", _word, 0.4), ("units", _unit, 0.3), ("mc", _mc, 0.3))


def generate_regular_records(n: int, seed: int = 0, split: str = "train") -> list[Record]:
    """`n` regular tasks (40% arithmetic, 30% units, 30% multiple choice), deterministic in (seed, split).

    A fact-based task whose split has no fact yet (an empty units or trivia bank) is left out and
    the other weights renormalised.
    """
    g = random.Random(stable_seed("regular", seed, split))
    have = {"arith": True, "units": bool(_units(split)), "mc": bool(_trivia(split))}
    _names, fns, weights = zip(*[t for t in TASKS if have[t[0]]])
    return [g.choices(fns, weights)[0](g, split, i) for i in range(n)]
