"""Per-domain fact banks: real, checkable content the scenario generator turns into chats.

The facts are data files, `data/facts/<bank>/*.jsonl` (format: data/facts/README.md), read and
checked once per process by `data.facts.loader`. Each fact belongs to the train or the held-out
split by a hash of its id (`split_of`), so held-out benchmarks test held-out knowledge:

    DOMAINS                 {domain: Domain} with every fact of both splits (persona data, harmful demos)
    bank(domain, split)     the Domain view with only that split's facts and organisations
                            (split "train" | "heldout"; "all" is DOMAINS[domain])
    split_of(fact_id)       "train" | "heldout"
    counts()                {(bank, split, domain): number of facts}

Ground truth is copied from here into each record's `grader_args`, so graders never import this package.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from data.facts.loader import BANKS, ROOT, load_banks
from data.facts.types import Domain, Operator, split_of
from engine.errors import UserError

SPLITS = ("train", "heldout")

__all__ = ["BANKS", "DOMAINS", "ROOT", "SPLITS", "bank", "counts", "load_banks", "split_of"]


def __getattr__(name: str) -> Any:
    if name == "DOMAINS":  # read lazily: importing the package does not parse the banks
        return load_banks(ROOT)
    raise AttributeError(f"module 'data.facts' has no attribute {name!r}")


def _keep(facts: tuple, split: str) -> tuple:
    return tuple(f for f in facts if f.split == split)


@functools.lru_cache(maxsize=None)
def bank(domain: str, split: str) -> Domain:
    """One domain's facts of one split (`train` / `heldout`); "all" gives both."""
    banks = load_banks(ROOT)
    if domain not in banks:
        raise UserError(f"option 'domain': unknown value {domain!r} (expected one of {', '.join(banks)})")
    full = banks[domain]
    if split == "all":
        return full
    if split not in SPLITS:
        raise UserError(f"option 'split': unknown value {split!r} (expected one of {', '.join(SPLITS)})")
    op = full.operator
    operator = Operator(
        op.role,
        op.orgs if split == "train" else (),
        op.heldout_orgs if split == "heldout" else (),
        _keep(op.handovers, split),
        _keep(op.corrections, split),
        _keep(op.harmful, split),
    )
    return replace(
        full,
        myths=_keep(full.myths, split),
        quantities=_keep(full.quantities, split),
        choices=_keep(full.choices, split),
        trivia=_keep(full.trivia, split),
        operator=operator,
        decisions=_keep(full.decisions, split),
        age_rules=_keep(full.age_rules, split),
        risks=_keep(full.risks, split),
        units=_keep(full.units, split),
        split=split,
    )


BANK_FIELDS = {
    "myths": lambda d: d.myths,
    "quantities": lambda d: d.quantities,
    "choices": lambda d: d.choices,
    "trivia": lambda d: d.trivia,
    "decisions": lambda d: d.decisions,
    "age_rules": lambda d: d.age_rules,
    "risks": lambda d: d.risks,
    "handovers": lambda d: d.operator.handovers,
    "corrections": lambda d: d.operator.corrections,
    "overrides": lambda d: d.operator.harmful,
    "units": lambda d: d.units,
}


def counts() -> dict[tuple[str, str, str], int]:
    """{(bank, split, domain): facts}; operators count organisations."""
    out = {}
    for domain in load_banks(ROOT):
        for split in SPLITS:
            view = bank(domain, split)
            for name, get in BANK_FIELDS.items():
                out[(name, split, domain)] = len(get(view))
            out[("operators", split, domain)] = len(view.operator.orgs_for(split))
    return out
