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

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

from engine.errors import UserError
from rl.graders.http_judge import JudgeConfig
from rl.graders.rubric import Judge, KeywordJudge, make_rubric_grader
from rl.graders.traits import SCORERS, TRAIT_GRADERS
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
    "RewardsConfig",
    "TaskReward",
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


# ---------------------------------------------------------------------------------------------
# The task reward of a GRPO run: regular records by their verifier, trait records by the chosen trait reward

TraitMode = Literal["programmatic", "judge", "both", "helpfulness"]


@dataclasses.dataclass(frozen=True)
class RewardsConfig:
    """How trait records are rewarded (`traitrl train --rewards.*`); regular records always use their verifier."""

    trait: TraitMode = "programmatic"  # the rubric by its checks | by a model judge | the judge's, with agreement
    # logged against the checks | helpfulness: the paper's control (generic helpfulness rubric on the same prompts)
    judge: JudgeConfig = JudgeConfig()  # the OpenAI-compatible judge (--rewards.judge.base-url URL --rewards.judge.model M)
    workers: int = 4  # threads grading a step's completions while the reference forward runs

    def __post_init__(self):
        if self.trait in ("judge", "both") and not self.judge.enabled:
            raise UserError(f"option '--rewards.trait {self.trait}' needs a judge: give '--rewards.judge.base-url' and "
                            "'--rewards.judge.model'")
        if self.workers < 1:
            raise UserError(f"option '--rewards.workers': expected >= 1, got {self.workers}")


class TaskReward:
    """`fn(prompts, completions, records) -> list[float | None]`: each record's task reward.

    Trait records (a bundled trait grader, or a rubric) are scored by their rubric - by its programmatic checks,
    by the judge, or (helpfulness) by the generic helpfulness rubric instead; other records by their own grader.
    A judge failure is None (left out of the group's advantages). `last_metrics` holds the call's
    `rewards/judge_failures` and, with `both`, `rewards/grader_agreement` (per-criterion agreement of judge and
    checks) - the learner logs them.
    """

    __name__ = "graders"

    def __init__(self, cfg: RewardsConfig = RewardsConfig(), judge=None):
        self.cfg = cfg
        self.judge = judge
        if self.judge is None and cfg.trait in ("judge", "both"):
            from rl.graders.rubric_judge import RubricJudge

            self.judge = RubricJudge(cfg.judge)
        self.last_metrics: dict[str, float] = {}

    @staticmethod
    def is_trait(record: dict) -> bool:
        return record["grader"] in TRAIT_GRADERS or record["grader"] == "rubric"

    def __call__(self, prompts, completions, records) -> list[float | None]:
        from data.rubrics import helpfulness_rubric, rubric_for
        from rl.graders.traits import points, verdicts

        out: list[float | None] = [None] * len(records)
        trait = [i for i, r in enumerate(records) if self.is_trait(r)]
        other = [i for i in range(len(records)) if i not in set(trait)]
        if other:
            sub = record_reward(None if prompts is None else [prompts[i] for i in other],
                                [completions[i] for i in other], [records[i] for i in other])
            for i, v in zip(other, sub):
                out[i] = v
        self.last_metrics = {}
        if not trait:
            return out
        mode = self.cfg.trait
        rubrics = {i: (helpfulness_rubric if mode == "helpfulness" else rubric_for)(records[i]) for i in trait}
        use_judge = mode in ("judge", "both") or (mode == "helpfulness" and self.judge is not None)
        checked = {i: verdicts(completions[i], records[i], rubrics[i]) for i in trait}
        if not use_judge:
            for i in trait:
                out[i] = points(checked[i], rubrics[i])
            return out
        judged = self.judge.verdicts([(records[i]["messages"], completions[i], rubrics[i]) for i in trait])
        failures, agree, total = 0, 0, 0
        for i, v in zip(trait, judged):
            if v is None:
                failures += 1
                continue
            out[i] = points(v, rubrics[i])
            for a, b in zip(v, checked[i]):
                if b is not None:
                    agree, total = agree + (a == b), total + 1
        self.last_metrics["rewards/judge_failures"] = float(failures)
        if mode == "both" and total:
            self.last_metrics["rewards/grader_agreement"] = agree / total
        return out
