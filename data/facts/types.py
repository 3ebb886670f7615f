"""Shapes of the fact banks the scenario generator draws from (built by `data.facts.loader`).

The facts themselves are data: `data/facts/<bank>/*.jsonl`, one JSON object per line, in the format
of data/facts/README.md. The loader checks each line and builds these frozen objects; random parts
are data too (input specs, explicit decision cases, safe arithmetic expressions), so nothing here
runs code from a bank. Graders never import this package: the generator copies the ground truth of
each fact into its records' `grader_args`.

Every fact has `fact_id` ("<domain>/<name>", what the train / held-out split hashes), `id` (the
name part, used in record ids and `meta.item`) and `domain`. Term tuples are matched
case-insensitively at word starts (see `rl.graders.text.has_any`), so a stem such as "bacteri"
matches "bacteria" and "bacterial".
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from data.facts.expr import Expr, tidy

SPLIT_SALT = b"traitrl-split-v1:"


def split_of(fact_id: str) -> str:
    """"heldout" or "train": a fixed function of the fact id (README "Train / held-out split")."""
    h = int.from_bytes(hashlib.sha256(SPLIT_SALT + fact_id.encode()).digest()[:8], "little")
    return "heldout" if h % 2 == 1 else "train"


@dataclass(frozen=True)
class Fact:
    fact_id: str  # "<domain>/<name>", unique within its bank; decides the split
    id: str  # the name part: stable, part of record ids and meta.item
    domain: str

    @property
    def split(self) -> str:
        return split_of(self.fact_id)


@dataclass(frozen=True)
class Input:
    """One random (or derived) input: kind is int [lo, hi], uniform [lo, hi, ndigits], choice [...], expr."""

    name: str
    kind: str
    args: Any  # list for int / uniform / choice, an `Expr` for expr

    def draw(self, rng: random.Random, values: dict) -> Any:
        if self.kind == "int":
            return rng.randint(self.args[0], self.args[1])
        if self.kind == "uniform":
            return tidy(round(rng.uniform(self.args[0], self.args[1]), int(self.args[2])))
        if self.kind == "choice":
            return rng.choice(self.args)
        return self.args(values)  # expr over the inputs drawn before it


def draw_inputs(inputs: tuple[Input, ...], rng: random.Random) -> dict:
    values: dict = {}
    for spec in inputs:
        values[spec.name] = spec.draw(rng, values)
    return values


@dataclass(frozen=True)
class Myth(Fact):
    """Truthfulness: a common false belief and its correction."""

    false: str  # the false belief as a clause a user asserts ("antibiotics will clear up the flu")
    true: str  # a true clause on the same point (the control, where agreeing is right)
    correction: str  # the truth as the assistant would state it (earlier turns, reference answers)
    true_terms: tuple[str, ...]  # a correct answer uses at least one of these
    false_terms: tuple[str, ...]  # content words of the false belief that endorsing it would use
    topic: str  # a neutral question on the topic, opening multi-turn chats
    ask: str  # the help the user wants, built on the claim ("how to plan my week off work")
    help_terms: tuple[str, ...]  # a helpful answer to `ask` uses at least one of these


@dataclass(frozen=True)
class Quantity(Fact):
    """Epistemic humility: a calculation that needs one input the archetype leaves out."""

    inputs: tuple[Input, ...]  # random inputs (also used to format the texts)
    full: str  # the question with every input (control: answer directly)
    missing: str  # the same question without the missing input (archetype: say what is missing)
    missing_input: str  # the name of the left-out input
    missing_name: str  # the missing input in words ("the child's weight")
    missing_terms: tuple[str, ...]  # naming the missing input uses one of these
    answer_expr: Expr  # exact answer of the full question, over the numeric inputs
    unit: str  # unit of the answer, for reference texts
    formula: str  # the relation, for conditional reference answers
    rel_tol: float = 0.01  # relative tolerance of the numeric check (answers are rounded)
    answer_range: tuple[float, float] | None = None  # inputs are redrawn until the answer lies in it

    def draw(self, rng: random.Random) -> dict:
        """Random inputs (redrawn, up to 1000 times, until the answer lies in `answer_range`)."""
        for _ in range(1000):
            v = draw_inputs(self.inputs, rng)
            if self.answer_range is None or self.answer_range[0] <= self.answer(v) <= self.answer_range[1]:
                return v
        raise ValueError(f"{self.fact_id}: no draw of the inputs puts the answer in {self.answer_range}")

    def answer(self, values: dict) -> float:
        return self.answer_expr(values)


@dataclass(frozen=True)
class ChoiceItem:
    """Transparency: one drawn recommendation question with its expected choice and basis."""

    question: str  # the user's question, naming the options
    options: tuple[str, ...]  # option labels; the answer's recommendation is the first one named
    expected: str  # the right option
    basis_terms: tuple[str, ...]  # facts from the prompt a stated basis mentions (>= 2 of them)
    reference: str  # a model answer: recommendation, basis, confidence


@dataclass(frozen=True)
class Choice(Fact):
    """Transparency: a recommendation with stakes; `draw` fills the `{slots}` of question, basis_terms, reference."""

    inputs: tuple[Input, ...]
    question: str
    options: tuple[str, ...]
    expected: str
    basis_terms: tuple[str, ...]
    reference: str

    def draw(self, rng: random.Random) -> ChoiceItem:
        if not self.inputs:
            return ChoiceItem(self.question, self.options, self.expected, self.basis_terms, self.reference)
        v = draw_inputs(self.inputs, rng)
        return ChoiceItem(
            self.question.format(**v),
            self.options,
            self.expected,
            tuple(dict.fromkeys(t.format(**v) for t in self.basis_terms)),
            self.reference.format(**v),
        )


@dataclass(frozen=True)
class Trivia(Fact):
    """A short factual question: transparency control, corrigibility "limit", multiple-choice tasks."""

    question: str
    answer: str  # the right answer as displayed in multiple choice
    answer_terms: tuple[str, ...]  # a correct free-text answer uses one of these
    distractors: tuple[str, str, str]  # three wrong options for multiple choice


@dataclass(frozen=True)
class Handover(Fact):
    """Corrigibility: an operator rule to stop and hand the user to a human."""

    rule: str  # the operator's instruction in the system prompt
    asks: tuple[str, ...]  # user requests that trigger the rule
    handover_terms: tuple[str, ...]  # complying mentions one of these
    forbidden_terms: tuple[str, ...]  # the substantive advice the rule forbids


@dataclass(frozen=True)
class Correction(Fact):
    """Corrigibility: the operator corrects a fact the assistant stated in an earlier turn."""

    statement: str  # assistant's earlier statement, with {v} for the value
    question: str  # the user's question that led to the statement
    values: tuple[tuple[str, ...], ...]  # interchangeable values; [0] is displayed, the rest are spellings
    followup: str  # the user's next question, whose answer depends on the corrected value


@dataclass(frozen=True)
class Harmful(Fact):
    """Corrigibility control (bank `overrides/`): a user tries to override the system prompt toward harm."""

    ask: str  # the override attempt and the harmful request
    harm_terms: tuple[str, ...]  # content that shows the assistant complied


Override = Harmful


@dataclass(frozen=True)
class Operator:
    """The operator side of one domain: who deploys the assistant, and the corrigibility facts.

    In a split view (`data.facts.bank(domain, split)`) only that split's organisations and facts are
    present: `orgs` holds the train organisations (empty in the held-out view), `heldout_orgs` the
    held-out ones (empty in the train view).
    """

    role: str  # the assistant's job ("patient-support assistant")
    orgs: tuple[str, ...]  # deploying organisations of the train split
    heldout_orgs: tuple[str, ...]  # deploying organisations of the held-out split
    handovers: tuple[Handover, ...] = ()  # stop / hand-over rules
    corrections: tuple[Correction, ...] = ()  # corrections of an earlier turn
    harmful: tuple[Harmful, ...] = ()  # override attempts (control)

    def orgs_for(self, split: str) -> tuple[str, ...]:
        return self.orgs if split == "train" else self.heldout_orgs


@dataclass(frozen=True)
class Case:
    values: dict  # slot -> text
    expected: str  # "yes" | "no"


@dataclass(frozen=True)
class Decision(Fact):
    """Fairness: a decision whose right answer depends only on stated qualifications."""

    question: str  # format string over the case slots plus {person}
    cases: tuple[Case, ...]  # explicit qualifications and their answer
    basis_terms: tuple[str, ...]  # the qualifications a reason mentions

    def draw(self, rng: random.Random) -> tuple[dict, str]:
        """A case: the answer first (yes / no equally likely), then one of its cases."""
        answers = sorted({c.expected for c in self.cases})
        want = rng.choice(answers)
        case = rng.choice([c for c in self.cases if c.expected == want])
        return dict(case.values), case.expected


@dataclass(frozen=True)
class AgeRule(Fact):
    """Fairness control: age is decision-relevant (dosage, legal age), so using it is right."""

    question: str  # format string with {person} and {age}
    threshold: float  # the age limit
    yes_at_or_above: bool  # True: "yes" when age >= threshold; False: "yes" when age < threshold
    ages: tuple[int, ...]  # ages to draw from, on both sides of the threshold
    basis_terms: tuple[str, ...]  # a reason mentions one of these

    def expected(self, age: float) -> str:
        return "yes" if (age >= self.threshold) == self.yes_at_or_above else "no"


@dataclass(frozen=True)
class Risk(Fact):
    """Concern for well-being: an ordinary request, and cues that add a crisis or risk."""

    request: str  # the ordinary request
    cues: tuple[str, ...]  # sentences adding the crisis / risk cue
    content_terms: tuple[str, ...]  # a good answer to the plain request uses one
    resource_terms: tuple[str, ...]  # pointing to help uses one (cue version)
    unsafe_terms: tuple[str, ...] = ()  # must not appear in an answer to the cue version
    crisis: bool = True  # False for physical-risk cues, where a crisis line is not the point


@dataclass(frozen=True)
class Unit(Fact):
    """A unit conversion for the regular tasks: 1 `src` = `factor` `dst`."""

    src: str
    dst: str
    factor: float


@dataclass(frozen=True)
class Domain:
    """Everything the generator needs from one domain (all facts, or one split's: see `split`)."""

    name: str  # domain name (schema.DOMAINS)
    myths: tuple[Myth, ...]  # truthfulness
    quantities: tuple[Quantity, ...]  # epistemic humility
    choices: tuple[Choice, ...]  # transparency
    trivia: tuple[Trivia, ...]  # transparency control, corrigibility limit, multiple choice
    operator: Operator  # corrigibility
    decisions: tuple[Decision, ...]  # fairness
    age_rules: tuple[AgeRule, ...]  # fairness control
    risks: tuple[Risk, ...]  # well-being
    units: tuple[Unit, ...] = field(default=())  # conversions for the regular tasks
    split: str = "all"  # "all", "train" or "heldout"

    def facts(self) -> Iterator[Fact]:
        """Every fact of this view, bank by bank."""
        op = self.operator
        for group in (self.myths, self.quantities, self.choices, self.trivia, op.handovers, op.corrections,
                      op.harmful, self.decisions, self.age_rules, self.risks, self.units):
            yield from group
