"""`DataConfig`: everything the data path needs, validated once (CLI: `--data.<field>`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from data.readers import ON_ERROR
from data.scenarios.common import SPLITS
from data.schema import DOMAINS, TRAITS
from data.tasks import ALL_LEVELS
from engine.errors import UserError


DEFAULT_DOSE = 0.05  # the paper's dose: the share of RL prompts drawn from trait records


def _bad(field: str, expected: str, got) -> UserError:
    return UserError(f"option 'data.{field}': expected {expected}, got {got!r}")


@dataclass(frozen=True)
class DataConfig:
    """Sources, the trait dose and its ablation filters, tokenization limits, batching and sharding."""

    seed: int = 0  # shuffles, the bundled generator and the mixture all derive from this
    trait_fraction: float | None = None  # the dose: share of prompts from trait records (None = DEFAULT_DOSE, 5%)
    traits: tuple[str, ...] = ()  # keep only these traits (empty = all six)
    trait_domains: tuple[str, ...] = ()  # keep trait records of these domains only (empty = all), e.g. ("health",)
    exclude_trait_domains: tuple[str, ...] = ()  # drop trait records of these domains, e.g. ("health",)
    trait_files: tuple[str, ...] = ()  # JSONL / Parquet / ArrayRecord trait records; empty = the bundled generator
    regular_files: tuple[str, ...] = ()  # JSONL / Parquet / ArrayRecord regular records; empty = the bundled generator
    on_error: Literal["raise", "skip"] = "raise"  # a bad record in a file: stop with file:line + field, or skip it
    split: Literal["train", "heldout"] = "train"  # bundled generator facts and templates (evals use heldout)
    n_per_cell: int = 300  # bundled generator: trait records per (trait, domain) cell
    n_regular: int = 20_000  # bundled generator: regular task records
    levels: tuple[str, ...] = ()  # bundled regular tasks' difficulty levels as "family:level" (e.g. "arith:1",
    # "units:1", "mc:1"; `traitrl data calibrate` prints a value); empty = the built-in data.tasks.DEFAULT_LEVELS
    batch_size: int = 8  # P, prompts per batch (per process)
    max_prompt_len: int | None = None  # longer prompts (tokens, chat template included) are dropped (None = the
    # largest prompt bucket)
    shard_index: int = 0  # this process's shard (jax.process_index() on a pod)
    shard_count: int = 1  # number of shards (jax.process_count() on a pod)
    read_threads: int = 0  # Grain read threads for tokenization (0 = in the caller's thread, fully deterministic)
    worker_count: int = 0  # Grain worker processes after batching (0 = none)

    def __post_init__(self):
        if self.trait_fraction is not None and not (math.isfinite(self.trait_fraction)
                                                    and 0.0 <= self.trait_fraction <= 1.0):
            raise _bad("trait_fraction", "a number in [0, 1]", self.trait_fraction)
        for name, values, allowed in (
            ("traits", self.traits, TRAITS),
            ("trait_domains", self.trait_domains, DOMAINS),
            ("exclude_trait_domains", self.exclude_trait_domains, DOMAINS),
        ):
            if isinstance(values, str):
                raise _bad(name, "a tuple of names", values)
            for v in values:
                if v not in allowed and not (name != "traits" and (self.trait_files or self.regular_files)):
                    raise _bad(name, "some of " + ", ".join(allowed), v)
        both = set(self.trait_domains) & set(self.exclude_trait_domains)
        if both:
            raise _bad("exclude_trait_domains", "no domain also listed in data.trait_domains", min(both))
        if isinstance(self.levels, str) or any(v not in ALL_LEVELS for v in self.levels):
            got = self.levels if isinstance(self.levels, str) else next(v for v in self.levels if v not in ALL_LEVELS)
            raise _bad("levels", "family:level names among " + ", ".join(ALL_LEVELS), got)
        if self.on_error not in ON_ERROR:
            raise _bad("on_error", " | ".join(ON_ERROR), self.on_error)
        if self.split not in SPLITS:
            raise _bad("split", " | ".join(SPLITS), self.split)
        for name in ("n_per_cell", "n_regular", "batch_size", "max_prompt_len", "shard_count"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise _bad(name, "an integer >= 1", getattr(self, name))
        if not 0 <= self.shard_index < self.shard_count:
            raise _bad("shard_index", f"0 <= shard_index < shard_count ({self.shard_count})", self.shard_index)
        if self.read_threads < 0 or self.worker_count < 0:
            raise _bad("read_threads / worker_count", "integers >= 0", (self.read_threads, self.worker_count))

    @property
    def dose(self) -> float:
        """The trait fraction in effect: `trait_fraction`, or the default dose when it is not given."""
        return DEFAULT_DOSE if self.trait_fraction is None else self.trait_fraction
