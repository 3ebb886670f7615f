"""Shapes of the per-domain fact banks the scenario generator draws from.

Each domain module (`data/facts/health.py`, ...) holds real, checkable content as plain data:
the generator turns it into chats and copies the ground truth into `grader_args`. Graders never
import these modules, so a fact can be fixed here without touching grading code.

Term tuples are matched case-insensitively at word starts (see `rl.graders.text.has_any`), so a
stem such as "bacteri" matches "bacteria" and "bacterial".
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Myth:
    """Truthfulness: a common false belief and its correction."""

    id: str  # stable id, part of record ids
    false: str  # the false belief as a clause a user asserts ("antibiotics will clear up the flu")
    true: str  # the truth as a clause a user asserts (the control, where agreeing is right)
    correction: str  # the truth as the assistant would state it (earlier turns, reference answers)
    true_terms: tuple[str, ...]  # a correct answer uses at least one of these
    topic: str  # a neutral question on the topic, opening multi-turn chats
    ask: str  # the help the user wants, built on the claim ("how to plan my week off work")
    help_terms: tuple[str, ...]  # a helpful answer to `ask` uses at least one of these


@dataclass(frozen=True)
class Quantity:
    """Epistemic humility: a calculation that needs one input the archetype leaves out."""

    id: str  # stable id
    draw: Callable[[random.Random], dict]  # random inputs (also used to format the texts)
    full: str  # the question with every input (control: answer directly)
    missing: str  # the same question without the missing input (archetype: say what is missing)
    missing_name: str  # the missing input in words ("the child's weight")
    missing_terms: tuple[str, ...]  # naming the missing input uses one of these
    answer: Callable[[dict], float]  # exact answer of the full question
    unit: str  # unit of the answer, for reference texts
    formula: str  # the relation, for conditional reference answers
    rel_tol: float = 0.01  # relative tolerance of the numeric check (answers are rounded)


@dataclass(frozen=True)
class ChoiceItem:
    """Transparency: one drawn recommendation question with its expected choice and basis."""

    question: str  # the user's question, naming the options
    options: tuple[str, ...]  # option labels; the answer's recommendation is the first one named
    expected: str  # the right option
    basis_terms: tuple[str, ...]  # facts from the prompt a stated basis mentions (>= 2 of them)
    reference: str  # a model answer: recommendation, basis, confidence


@dataclass(frozen=True)
class Trivia:
    """A short factual question: transparency control (short answer) and multiple-choice tasks."""

    id: str  # stable id
    question: str  # the question
    answer: str  # the right answer as displayed in multiple choice
    answer_terms: tuple[str, ...]  # a correct free-text answer uses one of these
    distractors: tuple[str, str, str]  # three wrong options for multiple choice


@dataclass(frozen=True)
class Handover:
    """Corrigibility: an operator rule to stop and hand the user to a human."""

    rule: str  # the operator's instruction in the system prompt
    asks: tuple[str, ...]  # user requests that trigger the rule
    handover_terms: tuple[str, ...]  # complying mentions one of these
    forbidden_terms: tuple[str, ...]  # the substantive advice the rule forbids


@dataclass(frozen=True)
class Correction:
    """Corrigibility: the operator corrects a fact the assistant stated in an earlier turn."""

    statement: str  # assistant's earlier statement, with {v} for the value
    question: str  # the user's question that led to the statement
    values: tuple[tuple[str, ...], ...]  # interchangeable values; [0] is displayed, the rest are spellings
    followup: str  # the user's next question, whose answer depends on the corrected value


@dataclass(frozen=True)
class Harmful:
    """Corrigibility control: a user (not the operator) tries to override the system prompt toward harm."""

    ask: str  # the harmful request
    harm_terms: tuple[str, ...]  # content that shows the assistant complied


@dataclass(frozen=True)
class Operator:
    """The operator side of one domain: who deploys the assistant and what they instruct."""

    role: str  # the assistant's job ("patient-support assistant")
    orgs: tuple[str, ...]  # deploying organisations, training templates
    heldout_orgs: tuple[str, ...]  # other organisations, held-out templates
    handovers: tuple[Handover, ...]  # stop / hand-over rules
    corrections: tuple[Correction, ...]  # corrections of an earlier turn
    harmful: tuple[Harmful, ...]  # override attempts (control)


@dataclass(frozen=True)
class Decision:
    """Fairness: a decision whose right answer depends only on stated qualifications."""

    id: str  # stable id
    draw: Callable[[random.Random], dict]  # qualifications
    question: str  # format string over draw() keys plus {person}
    expected: Callable[[dict], str]  # "yes" or "no", from the qualifications alone
    basis_terms: tuple[str, ...]  # the qualifications a reason mentions


@dataclass(frozen=True)
class AgeRule:
    """Fairness control: age is decision-relevant (dosage, legal age), so using it is right."""

    id: str  # stable id
    question: str  # format string with {person} (which states the age)
    threshold: float  # the age limit
    yes_at_or_above: bool  # True: "yes" when age >= threshold; False: "yes" when age < threshold
    ages: tuple[int, ...]  # ages to draw from, on both sides of the threshold
    basis_terms: tuple[str, ...]  # a reason mentions one of these


@dataclass(frozen=True)
class Risk:
    """Concern for well-being: an ordinary request, and cues that add a crisis or risk."""

    id: str  # stable id
    request: str  # the ordinary request
    cues: tuple[str, ...]  # sentences adding the crisis / risk cue
    content_terms: tuple[str, ...]  # a good answer to the plain request uses one
    resource_terms: tuple[str, ...]  # pointing to help uses one (cue version)
    unsafe_terms: tuple[str, ...] = ()  # must not appear in an answer to the cue version
    crisis: bool = True  # False for physical-risk cues, where a crisis line is not the point


@dataclass(frozen=True)
class Domain:
    """Everything the generator needs from one domain."""

    name: str  # domain name (schema.DOMAINS)
    myths: tuple[Myth, ...]  # truthfulness
    quantities: tuple[Quantity, ...]  # epistemic humility
    choices: tuple[Callable[[random.Random], ChoiceItem], ...]  # transparency
    trivia: tuple[Trivia, ...]  # transparency control, multiple choice
    operator: Operator  # corrigibility
    decisions: tuple[Decision, ...]  # fairness
    age_rules: tuple[AgeRule, ...]  # fairness control
    risks: tuple[Risk, ...]  # well-being
    units: tuple[tuple[str, str, float], ...] = field(default=())  # (from, to, factor) conversions
