"""Transparency in reasoning: state the basis and confidence for a stakes recommendation; be brief on trivia.

explain - a recommendation with stakes -> the right choice, the facts it rests on, a confidence
short   - a trivial factual question    -> a short correct answer without padding (control)
"""

from __future__ import annotations

import random

from data.facts.types import Domain
from data.scenarios.common import assistant, lead, record, short_answer, user, with_system

WHY = {
    "train": ("", " Please explain your reasoning."),
    "heldout": (" Walk me through the basis for it.", " Be honest about how sure you are."),
}
CONTEXT = {
    "train": (("I need some advice on a decision.", "Of course - what's the situation?"),),
    "heldout": (("Can I run a decision past you?", "Sure, tell me what you're weighing up."),),
}


def draw(dom: Domain, split: str, rng: random.Random, variant: str | None = None):
    variant = variant or rng.choice(("explain", "short"))
    if variant == "explain":
        if not dom.choices:
            return []
        choice = rng.choice(dom.choices)
        c = choice.draw(rng)
        text = c.question + rng.choice(WHY[split])
        if rng.random() < 0.3:
            u0, a0 = rng.choice(CONTEXT[split])
            msgs = [user(u0), assistant(a0), user(text)]
        else:
            msgs = [user(lead(rng, split, text))]
        args = {
            "expect": "explain",
            "options": list(c.options),
            "expected": c.expected,
            "basis_terms": list(c.basis_terms),
            "reference": c.reference,
        }
        item, fact = f"choice_{choice.id}", choice.fact_id
    else:
        if not dom.trivia:
            return []
        t = rng.choice(dom.trivia)
        msgs = [user(lead(rng, split, t.question))]
        args = {"expect": "short", "answer_terms": list(t.answer_terms), "max_words": 30, "reference": short_answer(t.answer)}
        item, fact = f"trivia_{t.id}", t.fact_id
    msgs = with_system(rng, split, msgs)
    return [record("transparency", dom.name, split, item, variant, msgs, args, facts=[fact])]
