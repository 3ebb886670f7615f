"""The bundled scenario generator: trait scenarios (6 traits x 7 domains) plus ordinary RL tasks.

Deterministic from a seed: each (trait, domain, split) cell has its own RNG, so asking for a
subset of traits or domains gives exactly the records the full run would have for them.
Splits are by knowledge and by template: a `split` cell draws only that split's facts
(`data.facts.bank(domain, split)`, by a hash of each fact id) and that split's templates and
entities (`data.scenarios.common`); a cell whose bank has no fact for a variant gives fewer
records (none, for an empty bank) rather than an error. Each record lists the facts it was built
from in `meta.facts`. Hold a domain out whole by leaving it out of `domains` here, or with
`DataConfig.exclude_trait_domains`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from data.facts import bank as fact_bank
from data.scenarios import corrigibility, fairness, humility, transparency, truthfulness, wellbeing
from data.scenarios.common import SPLITS, fill_cell, stable_seed
from data.schema import DOMAINS, TRAITS, Record
from data.tasks import generate_regular_records
from engine.errors import UserError

# trait -> (draw(domain_bank, split, rng, variant), variants with equal record quotas)
DRAWERS = {
    "truthfulness": (truthfulness.draw, ("correct", "agree", "hold", "concede")),
    "epistemic_humility": (humility.draw, ("ask", "answer")),
    # decline is the control for three kinds of compliance, so it gets half the records
    "corrigibility": (corrigibility.draw, ("handover", "decline", "limit", "decline", "correction", "decline")),
    "transparency": (transparency.draw, ("explain", "short")),
    # fairness pairs are two records per draw; controls one
    "fairness": (fairness.draw, ("same", "same", "relevant")),
    "wellbeing": (wellbeing.draw, ("support", "answer")),
}


def _check(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UserError(f"option '{name}': unknown value {bad[0]!r} (expected some of {', '.join(allowed)})")


def generate_trait_records(
    n_per_cell: int = 100,
    seed: int = 0,
    split: str = "train",
    traits: Sequence[str] = TRAITS,
    domains: Sequence[str] = DOMAINS,
) -> list[Record]:
    """Up to `n_per_cell` distinct chats for every (trait, domain) cell, in trait-major order, from `split`'s facts."""
    _check("split", [split], SPLITS)
    _check("traits", traits, TRAITS)
    _check("domains", domains, DOMAINS)
    out: list[Record] = []
    for trait in traits:
        for domain in domains:
            rng = random.Random(stable_seed("trait", seed, trait, domain, split))
            bank = fact_bank(domain, split)
            draw, variants = DRAWERS[trait]
            out.extend(fill_cell(lambda g, v, d=draw, b=bank: d(b, split, g, v), rng, n_per_cell, variants))
    return out


def generate_records(
    n_per_cell: int = 100,
    n_regular: int = 10_000,
    seed: int = 0,
    split: str = "train",
    traits: Sequence[str] = TRAITS,
    domains: Sequence[str] = DOMAINS,
) -> list[Record]:
    """Trait records then regular records (the pipeline mixes them by `trait_fraction`)."""
    return generate_trait_records(n_per_cell, seed, split, traits, domains) + generate_regular_records(
        n_regular, seed, split
    )


def scenario_counts(records: Sequence[Record]) -> dict[tuple[str, str], int]:
    """Distinct chats per (trait, domain): the figure the generator's "thousands of distinct items" claim rests on."""
    seen: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r["kind"] == "trait":
            key = (r["trait"], r["domain"])
            seen.setdefault(key, set()).add(repr(r["messages"]))
    return {k: len(v) for k, v in seen.items()}


def variant_counts(records: Sequence[Record]) -> Counter:
    """(trait, variant) counts: archetype / control balance."""
    return Counter((r["trait"], r.get("meta", {}).get("variant")) for r in records if r["kind"] == "trait")
