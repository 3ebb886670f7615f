"""The eval item: one prompt and the ground truth its scorer needs (what every loader returns)."""

from __future__ import annotations

import dataclasses
from typing import Any

# Prompt / row length buckets of the eval forward and decode: fine, because every padded token costs a
# full forward, while each bucket a fixed item subset uses compiles only once.
LENGTH_BUCKETS = (32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024, 1536, 2048, 3072, 4096)


@dataclasses.dataclass(frozen=True)
class Item:
    """One benchmark item. Loaders fill the fields their scorer reads; the rest keep their defaults."""

    id: str  # stable id (file stem + line / row id / record id), pairs items across runs
    messages: list[dict]  # the chat prompt, ending on a user (or system) turn
    domain: str | None = None  # data.schema.DOMAINS name when known
    options: tuple[str, ...] = ()  # multiple choice: the answer continuations ("(A)", or answer texts)
    good: tuple[int, ...] = ()  # multiple choice: indices of the right / desired options
    bad: tuple[int, ...] = ()  # A/B: indices of the labelled undesired options (the score normalises over good + bad)
    record: dict | None = None  # generation: a DESIGN.md record whose own grader scores the completion
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # format-specific truth (labels, judge prompts)
    cluster: str | None = None  # items sharing a cluster (a fact, a question, a template) resample together in
    # the bootstrap; None = the item is its own cluster


@dataclasses.dataclass(frozen=True)
class Completion:
    """What the model said to an item (greedy), and what it said after a follow-up turn when there is one."""

    text: str  # the first reply
    truncated: bool  # hit max_new_tokens without a stop token
    followup: str | None = None  # the reply to the benchmark's follow-up turn (e.g. "Are you sure?")
