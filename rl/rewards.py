"""Grader registry: reward functions by name, and the dispatcher that routes each record to its grader.

A reward function has the DESIGN.md contract `fn(prompts, completions, records) ->
list[float | None]` (None = not applicable to that record). Built in:

  truthfulness, epistemic_humility, corrigibility, transparency, fairness, wellbeing
      trait graders (rl/graders/traits.py), ground truth from `grader_args`
  numeric, multiple_choice   exact verifiers for the ordinary tasks (rl/graders/verifiers.py)
  loophole                   the reward-hacking benchmark: solved honestly, the visible loophole unused
  format                     structure reward that applies to every record
  rubric                     registered by the caller with a judge: `register("rubric", make_rubric_grader(judge))`

`record_reward` is the usual learner entry point: it groups a batch by `record["grader"]` and
calls each grader once, so batched graders (the rubric judge) see whole batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.errors import UserError
from rl.graders.rubric import Judge, KeywordJudge, make_rubric_grader
from rl.graders.traits import SCORERS
from rl.graders.verifiers import score_format, score_loophole, score_multiple_choice, score_numeric

RewardFn = Callable[[Sequence, Sequence[str], Sequence[dict]], list]
Scorer = Callable[[str, dict], float]

_REGISTRY: dict[str, RewardFn] = {}


def register(name: str, fn: RewardFn, *, overwrite: bool = False) -> RewardFn:
    """Adds a reward function under `name`; refuses to shadow one unless `overwrite`."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"grader {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = fn
    return fn


def get_grader(name: str) -> RewardFn:
    if name not in _REGISTRY:
        hint = " (register it with a judge: register('rubric', make_rubric_grader(judge)))" if name == "rubric" else ""
        raise UserError(f"grader {name!r}: not registered{hint}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def registered() -> frozenset[str]:
    return frozenset(_REGISTRY)


def per_record(name: str, score: Scorer, applies_to_all: bool = False) -> RewardFn:
    """Lifts `score(completion, record) -> float` to a batch reward fn, None where the record names another grader."""

    def fn(prompts, completions, records):
        return [score(c, r) if applies_to_all or r["grader"] == name else None for c, r in zip(completions, records)]

    fn.__name__ = name
    return fn


format_reward = per_record("format", score_format, applies_to_all=True)

# The built-in graders, as a table: the registry starts as exactly this (user graders are added with `register`).
BUILTIN: dict[str, RewardFn] = {
    **{name: per_record(name, score) for name, score in SCORERS.items()},
    "numeric": per_record("numeric", score_numeric),
    "multiple_choice": per_record("multiple_choice", score_multiple_choice),
    "loophole": per_record("loophole", score_loophole),  # the reward-hacking benchmark's tasks (never trained on)
    "format": format_reward,
}
_REGISTRY.update(BUILTIN)


def record_reward(prompts: Sequence, completions: Sequence[str], records: Sequence[dict]) -> list[float | None]:
    """Each completion scored by its own record's grader (one call per distinct grader in the batch)."""
    if not (len(completions) == len(records) and (prompts is None or len(prompts) == len(records))):
        raise ValueError(f"lengths differ: {len(completions)} completions, {len(records)} records")
    out: list[float | None] = [None] * len(records)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r["grader"], []).append(i)
    for name, idx in groups.items():
        fn = get_grader(name)
        sub = fn(
            [prompts[i] for i in idx] if prompts is not None else None,
            [completions[i] for i in idx],
            [records[i] for i in idx],
        )
        for i, s in zip(idx, sub):
            out[i] = s
    return out


__all__ = [
    "Judge",
    "KeywordJudge",
    "RewardFn",
    "format_reward",
    "get_grader",
    "make_rubric_grader",
    "per_record",
    "record_reward",
    "register",
    "registered",
]
