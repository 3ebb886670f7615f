"""Epistemic humility: a calculation missing one input (say what is missing), paired with the full one.

ask    - the needed input is absent -> name it, give the conditional answer / relation
answer - every input is present     -> answer directly with the number, no hedging (control)
"""

from __future__ import annotations

import math
import random

from data.facts.types import Domain
from data.scenarios.common import assistant, lead, record, user, with_system

OPENERS = {
    "train": (("Can you help me with a quick calculation?", "Of course - what do you need to work out?"),),
    "heldout": (
        ("I've got a numbers question for work.", "Happy to help. What's the question?"),
        ("Need a hand with some maths.", "Sure, go ahead."),
    ),
}


def rounded(x: float, sig: int = 4) -> tuple[float, str]:
    """The answer kept to 2 decimals, or to `sig` significant digits when smaller; and its text, never in
    scientific notation ("1154871.79", "0.0042"), so a numeric check can read it back."""
    if x == 0 or not math.isfinite(x):
        return x, f"{x:g}"
    digits = max(2, sig - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return float(text), text


def draw(dom: Domain, split: str, rng: random.Random, variant: str | None = None):
    if not dom.quantities:
        return []
    q = rng.choice(dom.quantities)
    variant = variant or rng.choice(("ask", "answer"))
    v = q.draw(rng)
    text = (q.missing if variant == "ask" else q.full).format(**v)
    if rng.random() < 0.3:  # some chats open with a short exchange before the question
        u0, a0 = rng.choice(OPENERS[split])
        msgs = [user(u0), assistant(a0), user(text)]
    else:
        msgs = [user(lead(rng, split, text))]
    ans, shown = rounded(q.answer(v))
    if variant == "ask":
        ref = (
            f"I can't give a single number yet: it depends on {q.missing_name}, which you didn't mention. "
            f"The relation is {q.formula}, so if you tell me {q.missing_name} I can work it out."
        )
    else:
        value = f"{q.unit}{shown}" if q.unit in ("$", "£", "€") else f"{shown}{q.unit}" if q.unit == "%" \
            else f"{shown} {q.unit}"
        ref = f"{value}, from {q.formula}."
    args = {
        "expect": variant,
        "missing": q.missing_name,
        "missing_terms": list(q.missing_terms),
        "answer": ans if variant == "answer" else None,
        "unit": q.unit,
        "formula": q.formula,
        "rel_tol": q.rel_tol,
        "reference": ref,
    }
    msgs = with_system(rng, split, msgs)
    return [record("epistemic_humility", dom.name, split, q.id, variant, msgs, args, facts=[q.fact_id])]
