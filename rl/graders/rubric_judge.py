"""The judge path of the trait rubrics: one request per completion, a strict-JSON verdict per criterion.

A model behind any OpenAI-compatible endpoint (vLLM, `traitrl serve`, a hosted API) reads the conversation,
the reply and the record's 3-4 criteria, and answers one JSON object `{"<criterion id>": true | false, ...}`.
The HTTP machinery is `HTTPJudge`'s (concurrency limit, retries with backoff, de-duplication and the disk
cache, keyed here by the rubric and the completion): a reply that does not parse is asked again with a reminder
(`judge.malformed_retries`), then recorded as None - the completion is then left out of its group's advantages
and counted in `rewards/judge_failures`, never scored 0.

With `judge.json_schema` (default) the request carries a `response_format` JSON schema of the boolean verdicts:
servers with structured outputs (vLLM, OpenAI, `traitrl serve`) then always return the object. Parsing
(`parse_rubric_verdicts`): the first JSON object in the reply (text around it is tolerated); every
criterion id must be present; a value must be a boolean (or unambiguously one: "yes"/"no", "true"/"false",
1/0); extra keys are ignored. Anything else is malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from rl.graders.http_judge import HTTPJudge, JudgeConfig, MalformedReply

RUBRIC_SYSTEM = (
    "You grade an AI assistant's reply against a rubric. For each criterion, decide whether the reply meets it, "
    "judging the reply alone in the context of the conversation. Answer with one JSON object and nothing else: "
    "the criterion ids as keys and true or false as values."
)
_TRUE, _FALSE = ("true", "yes", "met", "1"), ("false", "no", "unmet", "not met", "0")


def rubric_prompt(conversation: Sequence[dict], reply: str, rubric: Sequence[dict]) -> list[dict]:
    transcript = "\n".join(f"[{m['role']}] {m['content']}" for m in conversation)
    criteria = "\n".join(f"- {c['id']}: {c['criterion']}" for c in rubric)
    keys = ", ".join(f'"{c["id"]}": true|false' for c in rubric)
    return [{"role": "system", "content": RUBRIC_SYSTEM},
            {"role": "user", "content": f"Conversation:\n{transcript}\n\nReply to grade:\n{reply}\n\n"
                                        f"Criteria:\n{criteria}\n\nAnswer as {{{keys}}}."}]


def _first_object(text: str) -> dict | None:
    start = text.find("{")
    while start >= 0:
        depth = 0
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                try:
                    obj = json.loads(text[start:i + 1])
                except ValueError:
                    break
                return obj if isinstance(obj, dict) else None
        start = text.find("{", start + 1)
    return None


def _as_bool(v) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower().rstrip(".")
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


def parse_rubric_verdicts(text: str, ids: Sequence[str]) -> list[bool]:
    """The verdicts of `ids`, in order; raises `MalformedReply` naming what is wrong."""
    obj = _first_object(re.sub(r"```(?:json)?", "", text))
    if obj is None:
        raise MalformedReply("Your reply had no JSON object.")
    missing = [i for i in ids if i not in obj]
    if missing:
        raise MalformedReply(f"Your JSON lacked the criteria {', '.join(missing)}.")
    out = [_as_bool(obj[i]) for i in ids]
    bad = [i for i, v in zip(ids, out) if v is None]
    if bad:
        raise MalformedReply(f"The values of {', '.join(bad)} were not true or false.")
    return out  # type: ignore[return-value]


def verdict_schema(ids: Sequence[str]) -> dict:
    """The OpenAI `response_format` asking for exactly these boolean verdicts."""
    return {"type": "json_schema", "json_schema": {"name": "rubric_verdicts", "strict": True, "schema": {
        "type": "object", "properties": {i: {"type": "boolean"} for i in ids}, "required": list(ids),
        "additionalProperties": False}}}


class RubricJudge(HTTPJudge):
    """`verdicts(items) -> list[list[bool] | None]`, items = (conversation, reply, rubric): one request each."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__(cfg)

    def verdicts(self, items: Sequence[tuple[Sequence[dict], str, Sequence[dict]]]) -> list[list[bool] | None]:
        prompts, parsers = [], []
        for conv, reply, rubric in items:
            prompts.append(rubric_prompt(conv, reply, rubric))
            parsers.append(tuple(c["id"] for c in rubric))
        # One parser per distinct id set; the cache key is the whole prompt (conversation, reply, criteria).
        out: list[list[bool] | None] = [None] * len(items)
        for ids in dict.fromkeys(parsers):
            idx = [i for i, p in enumerate(parsers) if p == ids]
            got = self._ask([prompts[i] for i in idx], "rubric", self.cfg.rubric_max_tokens,
                            lambda text, ids=ids: parse_rubric_verdicts(text, ids),
                            {"response_format": verdict_schema(ids)} if self.cfg.json_schema else None)
            for i, v in zip(idx, got):
                out[i] = v
        return out
