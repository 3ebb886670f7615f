"""Ordinary RL tasks with exact verifiers: arithmetic, unit conversions, multiple choice, in difficulty levels.

These are the ~95% the trait dose is mixed into. Each record's `grader_args` carries the exact
answer (and a `reference` answer line); the verifiers (`numeric`, `multiple_choice`) read only
the answer. Prompts ask for a final "Answer: ..." line, which the `format` reward also checks.

Every task family comes in difficulty levels (`LEVELS`, data the generator draws from), because GRPO
learns only from groups whose rewards differ: a level a policy always fails (or always solves) gives
zero advantage. `traitrl data calibrate` measures each level's success rate on a model and keeps the
levels in the useful range; `DEFAULT_LEVELS` holds the ones it kept for SmolLM2-135M-Instruct.

    family  level  what
    arith   1      one addition or subtraction of numbers up to 20 ("What is 7 + 5?")
    arith   2      one operation on larger numbers, a times-table product or an exact division
    arith   3      two steps (a product then a difference, three terms, ...)
    arith   4      multi-step word problems with realistic quantities (percentages, rates, decimals)
    units   1      an integer factor, integer input (3 km to m)
    units   2      a decimal factor, integer input, 4 significant figures (7 atm to kPa)
    units   3      either direction, inputs up to 500 with decimals, 4 significant figures
    mc      1      two options (chance 0.5)
    mc      2      four options (chance 0.25)

Train and held-out splits use different wordings, and the fact-based tasks (unit conversions,
multiple choice) draw only their split's facts (`data.facts.bank(domain, split)`): the training
tasks never ask a held-out fact, so nothing a held-out benchmark asks is also a regular training
task. `meta` names the family (`task`), the `level` and the facts a record uses (`facts`).

Each (family, level, split) has its own RNG stream: the k-th item of a level is the same whatever
other levels are asked for and however many records, and its id `regular/<family>/<split>/l<level>-<k>`
stays with it.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from data.facts import bank
from data.scenarios.common import person_name, stable_seed
from data.schema import DOMAINS, Record
from engine.errors import UserError

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

# ---------------------------------------------------------------------------------------------
# Arithmetic: (domain, template, draw) -> the template is formatted with draw(rng), which also returns "answer";
# {name} is a full name, {first} the same person's first name.
Word = tuple[str, str, Callable[[random.Random], dict]]


def _q(answer: Callable[[dict], float], **ranges: tuple[int, int]) -> Callable[[random.Random], dict]:
    """A draw function: integers uniformly from `ranges`, plus the exact `answer` computed from them."""

    def draw(g: random.Random) -> dict:
        v = {k: g.randint(lo, hi) for k, (lo, hi) in ranges.items()}
        v["answer"] = answer(v)
        return v

    return draw


def _div(k: tuple[int, int], q: tuple[int, int]) -> Callable[[random.Random], dict]:
    """An exact division: n = k * q items shared among k; the answer is q."""

    def draw(g: random.Random) -> dict:
        kk, qq = g.randint(*k), g.randint(*q)
        return {"n": kk * qq, "k": kk, "answer": qq}

    return draw


def _change(g: random.Random) -> dict:
    """Buying a items at $p with the smallest of a $20 / $50 / $100 bill that covers them."""
    a, p = g.randint(2, 6), g.randint(2, 15)
    bill = next(b for b in (20, 50, 100) if b > a * p)
    return {"a": a, "p": p, "bill": bill, "answer": bill - a * p}


_add = lambda v: v["a"] + v["b"]  # noqa: E731
_sub = lambda v: v["a"] - v["b"]  # noqa: E731
_mul = lambda v: v["a"] * v["b"]  # noqa: E731

ARITH: dict[int, dict[str, tuple[Word, ...]]] = {
    1: {  # one addition or subtraction, numbers up to 20, never a negative result
        "train": (
            ("education", "What is {a} + {b}?", _q(_add, a=(1, 20), b=(1, 20))),
            ("education", "What is {a} - {b}?", _q(_sub, a=(10, 20), b=(1, 9))),
            ("business", "{first} has {a} apples and buys {b} more. How many apples does {first} have now?",
             _q(_add, a=(2, 15), b=(1, 9))),
            ("health", "A nurse has {a} bandages and uses {b} of them. How many bandages are left?",
             _q(_sub, a=(8, 20), b=(1, 7))),
            ("science", "A lab shelf holds {a} test tubes, and {b} more are put on it. How many test tubes are "
                        "on the shelf now?", _q(_add, a=(3, 15), b=(2, 9))),
            ("engineering", "A toolbox has {a} bolts. A repair uses {b} of them. How many bolts remain?",
             _q(_sub, a=(10, 20), b=(2, 9))),
            ("economics", "{first} has ${a} and spends ${b} on lunch. How many dollars does {first} have left?",
             _q(_sub, a=(10, 20), b=(3, 9))),
            ("law", "A clerk files {a} documents in the morning and {b} in the afternoon. How many documents "
                    "were filed that day?", _q(_add, a=(2, 12), b=(2, 12))),
        ),
        "heldout": (
            ("education", "Compute {a} plus {b}.", _q(_add, a=(1, 20), b=(1, 20))),
            ("education", "Subtract {b} from {a}.", _q(_sub, a=(10, 20), b=(1, 9))),
            ("health", "A clinic sees {a} patients before noon and {b} after noon. How many patients does it "
                       "see that day?", _q(_add, a=(3, 12), b=(2, 9))),
            ("business", "A bakery bakes {a} loaves and sells {b}. How many loaves are unsold?",
             _q(_sub, a=(10, 20), b=(2, 9))),
            ("science", "A birdwatcher counts {a} sparrows and {b} finches. How many birds is that?",
             _q(_add, a=(2, 12), b=(2, 9))),
        ),
    },
    2: {  # one operation: three-digit sums and differences, times tables, exact divisions
        "train": (
            ("education", "What is {a} + {b}?", _q(_add, a=(100, 999), b=(100, 999))),
            ("education", "What is {a} - {b}?", _q(_sub, a=(500, 999), b=(100, 499))),
            ("education", "What is {a} times {b}?", _q(_mul, a=(2, 12), b=(2, 12))),
            ("business", "A store has {a} boxes with {b} pens in each box. How many pens does it have?",
             _q(_mul, a=(3, 12), b=(4, 25))),
            ("health", "A patient takes {a} pills a day for {b} days. How many pills is that in total?",
             _q(_mul, a=(2, 4), b=(5, 30))),
            ("engineering", "{n} bolts are shared equally among {k} machines. How many bolts does each machine "
                            "get?", _div(k=(2, 9), q=(3, 15))),
            ("economics", "A town's population grows from {b} to {a}. By how many people did it grow?",
             _q(_sub, a=(1500, 9999), b=(1000, 1499))),
            ("law", "A court hears {a} cases in its first week and {b} in its second. How many cases does it "
                    "hear in the two weeks?", _q(_add, a=(20, 200), b=(20, 200))),
        ),
        "heldout": (
            ("education", "Multiply {a} by {b}.", _q(_mul, a=(2, 12), b=(2, 12))),
            ("education", "Add {a} and {b}.", _q(_add, a=(100, 999), b=(100, 999))),
            ("health", "A ward uses {a} pairs of gloves per shift. How many pairs does it use in {b} shifts?",
             _q(_mul, a=(5, 30), b=(2, 9))),
            ("business", "{n} chairs are set out in {k} equal rows. How many chairs are in each row?",
             _div(k=(2, 9), q=(4, 20))),
            ("engineering", "A tank holds {a} litres, and {b} litres are drained from it. How many litres are "
                            "left?", _q(_sub, a=(500, 999), b=(100, 499))),
        ),
    },
    3: {  # two steps on moderate numbers
        "train": (
            ("business", "{first} buys {a} notebooks at ${p} each and pays with a ${bill} bill. How many dollars "
                         "of change does {first} get?", _change),
            ("health", "A pharmacy has {a} boxes of {b} masks and gives away {c} masks. How many masks are left?",
             _q(lambda v: v["a"] * v["b"] - v["c"], a=(3, 9), b=(10, 20), c=(1, 29))),
            ("education", "A teacher grades {a} essays on Monday, {b} on Tuesday and {c} on Wednesday. How many "
                          "essays does she grade in the three days?", _q(lambda v: v["a"] + v["b"] + v["c"],
                                                                          a=(5, 30), b=(5, 30), c=(5, 30))),
            ("science", "A beaker holds {a} mL of water. {b} mL is poured out, then {c} mL is added. How many mL "
                        "are in the beaker now?", _q(lambda v: v["a"] - v["b"] + v["c"], a=(200, 500), b=(20, 150),
                                                     c=(10, 90))),
            ("engineering", "A machine makes {a} parts an hour for {h} hours, and {c} of the parts fail "
                            "inspection. How many parts pass?", _q(lambda v: v["a"] * v["h"] - v["c"], a=(10, 40),
                                                                   h=(2, 8), c=(1, 19))),
            ("economics", "{first} earns ${a} a week for {w} weeks and spends ${c} in that time. How many dollars "
                          "does {first} save?", _q(lambda v: v["a"] * v["w"] - v["c"], a=(50, 200), w=(2, 6),
                                                   c=(10, 99))),
            ("law", "An attorney spends {a} hours on each of {n} cases and {c} more hours on paperwork. How many "
                    "hours is that in total?", _q(lambda v: v["a"] * v["n"] + v["c"], a=(2, 9), n=(2, 6),
                                                  c=(1, 9))),
        ),
        "heldout": (
            ("business", "A shop orders {a} crates of {b} bottles, and {c} bottles arrive broken. How many bottles "
                         "can it sell?", _q(lambda v: v["a"] * v["b"] - v["c"], a=(3, 9), b=(6, 24), c=(1, 17))),
            ("health", "A clinic has {a} flu doses. It gives {b} in the morning and {c} in the afternoon. How many "
                       "doses are left?", _q(lambda v: v["a"] - v["b"] - v["c"], a=(100, 300), b=(10, 45),
                                             c=(10, 45))),
            ("education", "Each of {n} students reads {a} pages, and their teacher reads {c} pages. How many pages "
                          "do they read altogether?", _q(lambda v: v["n"] * v["a"] + v["c"], n=(3, 12), a=(5, 20),
                                                         c=(10, 40))),
            ("science", "A colony has {a} ants. {b} leave, and then {c} new ants hatch. How many ants are in the "
                        "colony now?", _q(lambda v: v["a"] - v["b"] + v["c"], a=(300, 900), b=(20, 200),
                                          c=(10, 150))),
        ),
    },
    4: {  # multi-step word problems with realistic quantities
        "train": (
            (
                "health",
                (
                    "{name} takes {a} tablets a day for {d} days and has {s} tablets left over from a box. How "
                    "many tablets were in the box?"
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
                    "A bacterial culture doubles every hour. It starts with {n} cells. How many cells are there "
                    "after {h} hours?"
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
                "A law firm bills {h} hours at ${r} per hour plus ${e} in court fees. What is the total bill in "
                "dollars?",
                _q(lambda v: v["h"] * v["r"] + v["e"], h=(2, 60), r=(120, 450), e=(50, 600)),
            ),
        ),
        "heldout": (
            (
                "health",
                (
                    "A ward has {b} beds; {o} are occupied and {d} patients are discharged today with {a} "
                    "admitted. How many beds are free tonight?"
                ),
                _q(lambda v: v["b"] - (v["o"] - v["d"] + v["a"]), b=(30, 60), o=(20, 29), d=(1, 10), a=(0, 9)),
            ),
            (
                "business",
                (
                    "Over {m} months a café's revenue was ${r} per month and its costs ${c} per month. What was "
                    "its total profit in dollars?"
                ),
                _q(lambda v: v["m"] * (v["r"] - v["c"]), m=(2, 12), r=(9000, 30000), c=(5000, 8999)),
            ),
            (
                "engineering",
                "A conveyor moves {n} boxes per minute for {h} hours. How many boxes does it move?",
                _q(lambda v: v["n"] * 60 * v["h"], n=(5, 90), h=(1, 9)),
            ),
        ),
    },
}


@dataclass(frozen=True)
class Task:
    """What one level's maker returns; `_record` turns it into a record."""

    domain: str
    text: str
    grader: str
    args: dict
    facts: tuple[str, ...] = ()


def _arith(level: int) -> Callable[[random.Random, str], Task]:
    def make(g: random.Random, split: str) -> Task:
        domain, tpl, draw = g.choice(ARITH[level][split])
        v = draw(g)
        name = person_name(g, split)
        text = tpl.format(name=name, first=name.split()[0], **v) + " " + g.choice(ANSWER_LINE[split])
        return Task(domain, text, "numeric", {"answer": v["answer"], "rel_tol": 1e-6, "answer_format": "answer_line"})

    return make


# ---------------------------------------------------------------------------------------------
# Unit conversions: a fact "1 src = factor dst" asked in either direction.


@dataclass(frozen=True)
class Direction:
    """One way of asking a unit fact: 1 `src` = `factor` `dst`."""

    src: str
    dst: str
    factor: float
    domain: str
    fact_id: str

    @property
    def integer(self) -> bool:
        """A whole factor of 2 or more (1 km = 1000 m): an integer input gives an integer answer."""
        return self.factor >= 2 and math.isclose(self.factor, round(self.factor), rel_tol=1e-12)


@functools.cache
def _directions(split: str) -> tuple[Direction, ...]:
    out = []
    for d in DOMAINS:
        for u in bank(d, split).units:
            out += [Direction(u.src, u.dst, u.factor, u.domain, u.fact_id),
                    Direction(u.dst, u.src, 1 / u.factor, u.domain, u.fact_id)]
    return tuple(out)


UNIT_POOLS: dict[int, Callable[[Direction], bool]] = {  # level -> which directions it asks
    1: lambda d: d.integer,
    2: lambda d: not d.integer,
    3: lambda d: True,
}


@functools.cache
def _unit_pool(split: str, level: int) -> tuple[Direction, ...]:
    return tuple(d for d in _directions(split) if UNIT_POOLS[level](d))


def _units(level: int) -> Callable[[random.Random, str], Task]:
    def make(g: random.Random, split: str) -> Task:
        u = g.choice(_unit_pool(split, level))
        if level == 1:
            x = g.randint(2, 20)
            ans, tol = int(round(x * u.factor)), 1e-6
            text = f"Convert {x} {u.src} to {u.dst}." if split == "train" else f"How many {u.dst} are in {x} {u.src}?"
        else:
            x = g.randint(2, 50) if level == 2 else g.choice([g.randint(1, 500), round(g.uniform(0.5, 100), 1)])
            ans, tol = float(f"{x * u.factor:.6g}"), 1e-3
            text = (
                f"Convert {x:g} {u.src} to {u.dst}. Round to 4 significant figures if needed."
                if split == "train"
                else f"How many {u.dst} is {x:g} {u.src}? Give 4 significant figures."
            )
        args = {"answer": ans, "rel_tol": tol, "answer_format": "answer_line"}
        return Task(u.domain, text + " " + g.choice(ANSWER_LINE[split]), "numeric", args, (u.fact_id,))

    return make


# ---------------------------------------------------------------------------------------------
# Multiple choice over the split's trivia facts.


@functools.cache
def _trivia(split: str) -> tuple:
    """Every trivia fact of the split, domain by domain (domains weighted by their bank sizes)."""
    return tuple(t for d in DOMAINS for t in bank(d, split).trivia)


def _mc(n_options: int) -> Callable[[random.Random, str], Task]:
    def make(g: random.Random, split: str) -> Task:
        t = g.choice(_trivia(split))
        opts = [t.answer, *g.sample(list(t.distractors), n_options - 1)]
        g.shuffle(opts)
        letters = "ABCD"[:n_options]
        body = "\n".join(f"{L}) {o}" for L, o in zip(letters, opts))
        text = f"{t.question}\n{body}\n{g.choice(MC_LINE[split])}"
        args = {"answer": letters[opts.index(t.answer)], "options": dict(zip(letters, opts)),
                "answer_format": "answer_line"}
        return Task(t.domain, text, "multiple_choice", args, (t.fact_id,))

    return make


# ---------------------------------------------------------------------------------------------
# The levels table, and the generator over it


@dataclass(frozen=True)
class Level:
    """One difficulty level of a task family."""

    about: str  # what it asks, in a few words (the calibration table prints it)
    make: Callable[[random.Random, str], Task]  # one task from an RNG and a split
    available: Callable[[str], bool] = lambda split: True  # False where the split has no fact for it


LEVELS: dict[str, dict[int, Level]] = {
    "arith": {
        1: Level("one + or - on numbers up to 20", _arith(1)),
        2: Level("one operation: 3-digit +/-, times tables, exact division", _arith(2)),
        3: Level("two steps on moderate numbers", _arith(3)),
        4: Level("multi-step word problems (rates, %, decimals)", _arith(4)),
    },
    "units": {
        1: Level("integer factor, integer input", _units(1), lambda s: bool(_unit_pool(s, 1))),
        2: Level("decimal factor, integer input, 4 s.f.", _units(2), lambda s: bool(_unit_pool(s, 2))),
        3: Level("either direction, inputs to 500 with decimals, 4 s.f.", _units(3), lambda s: bool(_unit_pool(s, 3))),
    },
    "mc": {
        1: Level("two options", _mc(2), lambda s: bool(_trivia(s))),
        2: Level("four options", _mc(4), lambda s: bool(_trivia(s))),
    },
}
FAMILY_WEIGHTS = {"arith": 0.4, "units": 0.3, "mc": 0.3}  # share of records per family; levels share it equally
ALL_LEVELS: tuple[str, ...] = tuple(f"{f}:{lv}" for f, levels in LEVELS.items() for lv in levels)

# The built-in default (`DataConfig.levels` empty): the levels `traitrl data calibrate` kept for SmolLM2-135M-Instruct
# (success rate in [0.1, 0.9] at temperature 0.7, 16 items x 8 samples of up to 96 tokens each: arith 0.133 / 0.125,
# mc 0.516 / 0.242; every other level 0.00-0.03. At temperature 1.0 only mc:1 and mc:2 were kept). See the README.
DEFAULT_LEVELS: tuple[str, ...] = ("arith:1", "arith:2", "mc:1", "mc:2")

Levels = Mapping[str, Iterable[int]] | Iterable[str] | None


def parse_levels(spec: Levels, option: str = "levels") -> dict[str, tuple[int, ...]]:
    """family -> allowed levels, from a mapping, "family:level" strings or None (every level).

    An empty sequence of strings means `DEFAULT_LEVELS` (what an empty `DataConfig.levels` asks for); a
    family left out of a mapping or of the strings gets no records.
    """
    if spec is None:
        return {f: tuple(levels) for f, levels in LEVELS.items()}
    expected = "family:level names among " + ", ".join(ALL_LEVELS)
    if isinstance(spec, Mapping):
        pairs = [(f, lv) for f, lvs in spec.items() for lv in ([lvs] if isinstance(lvs, int) else lvs)]
    else:
        if isinstance(spec, str):
            raise UserError(f"option '{option}': expected a list of {expected}, got {spec!r}")
        names = tuple(spec) or DEFAULT_LEVELS
        pairs = []
        for name in names:
            fam, _, lv = str(name).partition(":")
            if not lv.strip().isdigit():
                raise UserError(f"option '{option}': expected {expected}, got {name!r}")
            pairs.append((fam.strip(), int(lv)))
    out: dict[str, list[int]] = {}
    for fam, lv in pairs:
        if fam not in LEVELS or lv not in LEVELS[fam]:
            raise UserError(f"option '{option}': expected {expected}, got {f'{fam}:{lv}'!r}")
        if lv not in out.setdefault(fam, []):
            out[fam].append(lv)
    return {f: tuple(sorted(v)) for f, v in out.items()}


def _record(family: str, level: int, split: str, k: int, task: Task) -> Record:
    args = task.args
    return {
        "id": f"regular/{family}/{split}/l{level}-{k:06d}",
        "messages": [{"role": "user", "content": task.text}],
        "kind": "regular",
        "domain": task.domain,
        "trait": None,
        "grader": task.grader,
        "grader_args": {**args, "reference": f"Answer: {args['answer']}"},
        "meta": {"split": split, "task": family, "level": level, "facts": list(task.facts)},
    }


class _Streams:
    """One RNG per (family, level): the k-th item of a level does not depend on what else is drawn."""

    def __init__(self, seed: int, split: str):
        self.seed, self.split = seed, split
        self.rngs: dict[tuple[str, int], random.Random] = {}
        self.counts: dict[tuple[str, int], int] = {}

    def next(self, family: str, level: int) -> Record:
        key = (family, level)
        if key not in self.rngs:
            self.rngs[key] = random.Random(stable_seed("regular", self.seed, self.split, family, level))
            self.counts[key] = 0
        k = self.counts[key]
        self.counts[key] += 1
        return _record(family, level, self.split, k, LEVELS[family][level].make(self.rngs[key], self.split))


def level_records(family: str, level: int, n: int, seed: int = 0, split: str = "train") -> list[Record]:
    """The first `n` items of one level: exactly the ones `generate_regular_records` gives that level, in order."""
    parse_levels({family: [level]})
    if not LEVELS[family][level].available(split):
        return []
    s = _Streams(seed, split)
    return [s.next(family, level) for _ in range(n)]


def generate_regular_records(n: int, seed: int = 0, split: str = "train", levels: Levels = None) -> list[Record]:
    """`n` regular tasks (40% arithmetic, 30% units, 30% multiple choice), deterministic in (seed, split, levels).

    `levels` picks the difficulty levels per family (see `parse_levels`: None = every level, an empty tuple =
    `DEFAULT_LEVELS`); a family's share is split equally among its allowed levels. A fact-based level whose
    split has no fact (an empty units or trivia bank) is left out and the other weights renormalised.
    """
    allowed = parse_levels(levels)
    cells = [(f, lv) for f, lvs in allowed.items() for lv in lvs if LEVELS[f][lv].available(split)]
    if not cells:
        raise UserError(f"option 'levels': none of {sorted(allowed)} has tasks in split {split!r}")
    per_family = {f: sum(1 for c in cells if c[0] == f) for f in allowed}
    weights = [FAMILY_WEIGHTS[f] / per_family[f] for f, _ in cells]
    g = random.Random(stable_seed("regular", seed, split))
    streams = _Streams(seed, split)
    return [streams.next(*g.choices(cells, weights)[0]) for _ in range(n)]
