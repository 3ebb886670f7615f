"""Rubric grader (HealthBench-style `{criterion, points}` items) scored by a pluggable judge.

Score = (sum of points of the criteria the judge says are met) / (sum of positive points),
clipped to [0, 1]; negative-point criteria (e.g. "recommends an unsafe dose", -5) subtract when
met, as in HealthBench. A judge is anything with `judge(items) -> list[bool]` where each item is
`(conversation, criterion)` and the conversation ends with the assistant's completion; the grader
batches every (completion, criterion) pair of a call into one judge call so an HTTP or on-mesh
judge can batch them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.errors import UserError

Conversation = list[dict]


class Judge(Protocol):
    """Decides whether each criterion is met by the last assistant turn of its conversation."""

    def judge(self, items: Sequence[tuple[Conversation, str]]) -> list[bool]: ...


def rubric_items(record: dict) -> list[dict]:
    items = record["grader_args"].get("rubric")
    if not isinstance(items, list) or not items:
        raise UserError(
            f"record {record.get('id')}: field 'grader_args.rubric': expected a non-empty list of {{criterion, points}}"
        )
    for i, it in enumerate(items):
        if not (
            isinstance(it, dict) and isinstance(it.get("criterion"), str) and isinstance(it.get("points"), (int, float))
        ):
            raise UserError(
                f"record {record.get('id')}: field 'grader_args.rubric[{i}]': expected {{criterion: str, "
                f"points: number}}, got {it!r}"
            )
    return items


def rubric_score(met: Sequence[bool], items: Sequence[dict]) -> float:
    possible = sum(it["points"] for it in items if it["points"] > 0)
    if possible <= 0:
        return 0.0
    got = sum(it["points"] for it, m in zip(items, met) if m)
    return min(1.0, max(0.0, got / possible))


def make_rubric_grader(judge: Judge):
    """Returns a reward fn `(prompts, completions, records) -> list[float | None]` backed by `judge`."""

    def rubric(prompts, completions, records):
        batch: list[tuple[Conversation, str]] = []
        spans: list[tuple[int, int, list[dict]] | None] = []
        for c, r in zip(completions, records):
            if r.get("grader") != "rubric":
                spans.append(None)
                continue
            items = rubric_items(r)
            conv = list(r["messages"]) + [{"role": "assistant", "content": c}]
            start = len(batch)
            batch.extend((conv, it["criterion"]) for it in items)
            spans.append((start, len(batch), items))
        verdicts = list(judge.judge(batch)) if batch else []
        if len(verdicts) != len(batch):
            raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(batch)} items")
        out: list[float | None] = []
        for c, span in zip(completions, spans):
            if span is None:
                out.append(None)
            elif not c.strip():
                out.append(0.0)
            else:
                lo, hi, items = span
                out.append(rubric_score(verdicts[lo:hi], items))
        return out

    return rubric


class KeywordJudge:
    """A judge for tests and offline smoke runs: a criterion is met when all its `[[term]]` markers appear.

    Real runs plug in an LLM judge; this one lets the rubric path run end to end without one.
    """

    def judge(self, items: Sequence[tuple[Conversation, str]]) -> list[bool]:
        import re

        out = []
        for conv, criterion in items:
            reply = conv[-1]["content"].lower()
            terms = re.findall(r"\[\[([^\]]+)\]\]", criterion)
            out.append(bool(terms) and all(t.lower() in reply for t in terms))
        return out
