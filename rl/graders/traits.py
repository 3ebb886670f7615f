"""The trait rewards: each record's rubric (data/rubrics.py) scored by its programmatic checks.

`score_rubric(completion, record)` = points of the criteria met / total points, in [0, 1]; negative-point
criteria (HealthBench style) subtract when met. A reply the gate refuses (empty, a copy of the prompt, a
keyword soup, a loop) scores 0. `verdicts(completion, record)` gives the per-criterion booleans the score is
built from - what `traitrl grader audit` compares with hand labels, and what the judge path's agreement metric
compares with the judge. A criterion without a check (a user's rubric) has verdict None: such records need the
judge (`--rewards.trait judge`), and the programmatic grader returns None for them (not graded, not 0).
"""

from __future__ import annotations

from collections.abc import Sequence

from data.rubrics import rubric_for
from rl.graders.checks import gate, run_check


def verdicts(completion: str, record: dict, rubric: Sequence[dict] | None = None) -> list[bool | None]:
    """Per-criterion verdicts of the record's rubric (None where a criterion has no programmatic check)."""
    rubric = rubric_for(record) if rubric is None else rubric
    if gate(completion, record) is not None:
        return [False if c["check"] is not None else None for c in rubric]
    return [None if c["check"] is None else run_check(c["check"]["name"], completion, c["check"]["args"])
            for c in rubric]


def points(met: Sequence[bool | None], rubric: Sequence[dict]) -> float | None:
    """Share of the positive points met, clipped to [0, 1]. A criterion with `requires` earns its points only when
    those criteria are met too; negative-point criteria subtract whenever they are met."""
    if any(m is None for m in met):
        return None
    possible = sum(c["points"] for c in rubric if c["points"] > 0)
    if possible <= 0:
        return 0.0
    ok = {c["id"]: bool(m) for c, m in zip(rubric, met)}
    got = sum(c["points"] for c, m in zip(rubric, met)
              if m and (c["points"] < 0 or all(ok.get(r, False) for r in c.get("requires", ()))))
    return min(1.0, max(0.0, got / possible))


def score_rubric(completion: str, record: dict) -> float | None:
    rubric = rubric_for(record)
    return points(verdicts(completion, record, rubric), rubric)


TRAIT_GRADERS = ("truthfulness", "epistemic_humility", "corrigibility", "transparency", "fairness", "wellbeing")
SCORERS = {name: score_rubric for name in TRAIT_GRADERS}


def score_truthfulness(completion: str, record: dict) -> float | None:
    """The truthfulness rubric (kept by name for the persona behaviour probes)."""
    return score_rubric(completion, record)
