"""The dataset record schema (DESIGN.md "Contracts") and its validator.

A record is a plain dict so that it survives JSONL / Parquet / Grain without a custom codec:

    {"id": "trait/truthfulness/health/...", "messages": [{"role": "user", "content": "..."}],
     "kind": "trait", "domain": "health", "trait": "truthfulness",
     "grader": "truthfulness", "grader_args": {...}, "meta": {...}}

`meta` is optional and free-form (template id, split, pair id); graders must not read it, so
ground truth always lives in `grader_args`. Validation is strict (unknown keys are errors) because
a misspelt key in a user file would otherwise be silently ignored.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from engine.errors import UserError

KINDS = ("trait", "regular")
TRAITS = (
    "truthfulness",
    "epistemic_humility",
    "corrigibility",
    "transparency",
    "fairness",
    "wellbeing",
)
DOMAINS = ("health", "education", "science", "law", "engineering", "economics", "business")
ROLES = ("system", "user", "assistant")
REQUIRED_KEYS = ("id", "messages", "kind", "domain", "trait", "grader", "grader_args")
OPTIONAL_KEYS = ("meta",)


class Message(TypedDict):
    """One chat turn, in the OpenAI / HF chat-template shape."""

    role: str
    content: str


class Record(TypedDict):
    """One prompt for RL: the chat so far plus how to grade a completion of it."""

    id: str
    messages: list[Message]
    kind: str
    domain: str
    trait: str | None
    grader: str
    grader_args: dict[str, Any]
    meta: NotRequired[dict[str, Any]]


def _fail(where: str, field: str, expected: str, got: Any) -> UserError:
    shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return UserError(f"{where}: field '{field}': expected {expected}, got {shown}")


def validate_record(d: Any, where: str = "<record>", known_graders: frozenset[str] | None = None) -> Record:
    """Checks one record and returns it (same object) typed as `Record`.

    Raises `UserError` naming `where` (e.g. "train.jsonl:17") and the first bad field. Domains are
    open (user files may bring their own, e.g. "math"); kinds, traits and roles are closed sets
    because the mixture and the trait graders key on them. `known_graders`, when given, also
    checks that `grader` names a registered grader.
    """
    if not isinstance(d, dict):
        raise _fail(where, "<record>", "a JSON object", d)
    for key in REQUIRED_KEYS:
        if key not in d:
            raise UserError(f"{where}: field '{key}': missing (required: {', '.join(REQUIRED_KEYS)})")
    for key in d:
        if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            raise _fail(where, str(key), f"no unknown keys (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})", key)
    if not isinstance(d["id"], str) or not d["id"]:
        raise _fail(where, "id", "a non-empty string", d["id"])
    _validate_messages(d["messages"], where)
    if d["kind"] not in KINDS:
        raise _fail(where, "kind", " | ".join(KINDS), d["kind"])
    if not isinstance(d["domain"], str) or not d["domain"]:
        raise _fail(where, "domain", "a non-empty string", d["domain"])
    if d["kind"] == "trait":
        if d["trait"] not in TRAITS:
            raise _fail(where, "trait", "one of " + ", ".join(TRAITS) + " for kind 'trait'", d["trait"])
    elif d["trait"] is not None:
        raise _fail(where, "trait", "null for kind 'regular'", d["trait"])
    if not isinstance(d["grader"], str) or not d["grader"]:
        raise _fail(where, "grader", "a grader registry name", d["grader"])
    if known_graders is not None and d["grader"] not in known_graders:
        raise _fail(where, "grader", "a registered grader (" + ", ".join(sorted(known_graders)) + ")", d["grader"])
    if not isinstance(d["grader_args"], dict):
        raise _fail(where, "grader_args", "an object", d["grader_args"])
    if "meta" in d and not isinstance(d["meta"], dict):
        raise _fail(where, "meta", "an object", d["meta"])
    return d  # type: ignore[return-value]


def _validate_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail(where, "messages", "a non-empty list of {role, content}", messages)
    for i, m in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _fail(where, field, "an object {role, content}", m)
        if m.get("role") not in ROLES:
            raise _fail(where, field + ".role", " | ".join(ROLES), m.get("role"))
        if not isinstance(m.get("content"), str):
            raise _fail(where, field + ".content", "a string", m.get("content"))
        extra = set(m) - {"role", "content"}
        if extra:
            raise _fail(where, field, "only 'role' and 'content'", min(extra))
    if messages[-1]["role"] == "assistant":
        raise _fail(
            where, f"messages[{len(messages) - 1}].role", "the prompt to end on a user/system turn", "assistant"
        )
