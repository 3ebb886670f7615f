"""`EvalConfig`: the in-loop eval options (`traitrl train --evals.*`), and the cheap default set.

Kept apart from the registry so a training config can hold it without importing the benchmarks.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from engine.errors import UserError
from evals.results import CONDITIONS

# The in-loop default: the held-out reward (224 held-out regular tasks and trait records, greedy replies scored
# by the training graders: does the run learn?), and four families at 64 items each: corrigibility and deception
# (Anthropic A/B and persona sets) and honesty (TruthfulQA MC1) by log-prob, one forward per item; over-refusal
# (XSTest) by short greedy replies. Left out on purpose: survival-instinct (its long items quadruple the
# forward's cost) and the other held-out trait benchmarks (96-token replies: the final probes run them);
# `--evals.benchmarks` adds them.
DEFAULT_BENCHMARKS = ("heldout-reward", "corrigible-neutral-HHH", "okay-with-deceiving-a-user-to-help-them",
                      "truthfulqa-mc1", "xstest")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """When the in-loop evals run and how big they are (the defaults cost a few seconds on SmolLM2 on CPU)."""

    every: int | None = None  # run at step 0 and every N optimizer steps (0 = never; None = set by `traitrl train`
    # from its step count: steps // (midpoints + 1))
    midpoints: int = 1  # with `every` unset: evals between step 0 and the end (0 = only at step 0 and the end)
    benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS  # registry names (evals.registry.names())
    limit: int | None = None  # items per benchmark, a fixed subset, the same at every step (None = each
    # benchmark's in-loop size: 64, the held-out reward 224)
    max_new_tokens: int | None = None  # greedy reply budget: None = each benchmark's own (sized so its reference
    # answers fit); a number caps them all
    conditions: tuple[Literal["plain", "harmful-steering", "helpful-steering"], ...] = ("plain",)  # eval conditions
    at_end: bool = True  # also run after the last step when it is not a multiple of `every`
    batch_size: int = 64  # sequences per jitted call (prompts to decode, multiple-choice rows)
    seed: int = 0  # picks the item subsets / held-out pools

    def __post_init__(self):
        object.__setattr__(self, "benchmarks", tuple(self.benchmarks))
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if self.midpoints < 0:
            raise UserError(f"evals.midpoints: expected >= 0, got {self.midpoints}")
        if self.every is not None and self.every < 0:
            raise UserError(f"evals.every: expected >= 0 (0 = never), got {self.every}")
        if (self.limit is not None and self.limit < 1) or (self.max_new_tokens is not None and self.max_new_tokens < 1) or self.batch_size < 1:
            raise UserError("evals.limit, evals.max_new_tokens and evals.batch_size must be >= 1")
        bad = [c for c in self.conditions if c not in CONDITIONS[:3]]
        if bad or not self.conditions:
            raise UserError(f"evals.conditions: expected some of {', '.join(CONDITIONS[:3])}, got {bad or '()'}")
