"""The one home of tokenization: chat templates, encoding, left padding, the pad id and the stop ids.

Every package (the data pipeline, the sampler, SFT, evals, persona capture, the server) encodes and
pads through these functions, so a prompt is tokenized the same way in training, in evals and when
served, and padded once.

Chat prompts are rendered by the tokenizer's own chat template with the assistant turn opened
(`add_generation_prompt=True`) and encoded without extra special tokens - what
`apply_chat_template(tokenize=True)` does - but in batches, which the Rust backend parallelises.
Raw text prompts are encoded as-is (with the tokenizer's special tokens, e.g. a BOS).

Left padding: a batch of prompts is padded on the left to the smallest length bucket that holds the
longest; the mask is True on real tokens, and positions count from each row's first real token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import UserError

Prompt = str | list[dict[str, str]]  # raw text, or chat messages [{"role": ..., "content": ...}]


def pad_id(tokenizer: Any, config: Any = None) -> int:
    """The pad id: the tokenizer's pad token, else the model config's, else the first eos id, else 0."""
    eos = () if config is None else tuple(config.eos_ids)
    tok_eos = None if tokenizer is None else tokenizer.eos_token_id
    for cand in (None if tokenizer is None else tokenizer.pad_token_id,
                 None if config is None else config.pad_token_id, *eos, tok_eos):
        if cand is not None:
            return int(cand)
    return 0


def stop_ids(tokenizer: Any, config: Any, override: Sequence[int] | None = None) -> tuple[int, ...]:
    """Token ids that end a completion: `override` when given, else the config's eos ids plus the tokenizer's eos."""
    if override is not None:
        return tuple(int(s) for s in override)
    ids = list(config.eos_ids)
    tok_eos = None if tokenizer is None else tokenizer.eos_token_id
    if tok_eos is not None and tok_eos not in ids:  # e.g. chat models whose config names another eos
        ids.append(int(tok_eos))
    return tuple(ids)


def _need_template(tokenizer: Any) -> None:
    if tokenizer is None:
        raise UserError("prompts: this model has no tokenizer; give token ids instead of text")
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("tokenizer: has no chat template (expected an instruct tokenizer with chat_template)")


def render_chat(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """The chat as the model sees it (template applied), as text."""
    _need_template(tokenizer)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def encode_chats(tokenizer: Any, conversations: Sequence[Sequence[dict]], chunk: int = 2048) -> list[list[int]]:
    """Chats -> prompt token ids (template + opened assistant turn), batched through the Rust backend."""
    _need_template(tokenizer)
    backend = tokenizer.backend_tokenizer
    out: list[list[int]] = []
    for lo in range(0, len(conversations), chunk):
        texts = [render_chat(tokenizer, m) for m in conversations[lo:lo + chunk]]
        out.extend(e.ids for e in backend.encode_batch(texts, add_special_tokens=False))
    return out


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Text -> token ids as-is; chat messages -> the chat template with the assistant turn opened. Order kept."""
    if tokenizer is None:
        raise UserError("prompts: this model has no tokenizer; give token ids instead of text")
    chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    out: list[list[int] | None] = [None] * len(prompts)
    for i, ids in zip(chats, encode_chats(tokenizer, [prompts[i] for i in chats]) if chats else []):
        out[i] = ids
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            out[i] = tokenizer(p)["input_ids"]
    return out  # type: ignore[return-value]


def encode_example(tokenizer: Any, messages: Sequence[dict]) -> tuple[list[int], list[int]]:
    """(context ids, answer ids) of a chat ending on an assistant turn: the answer is what the template adds
    after the generation prompt, cut after its end-of-turn token (the template's trailing newline is not
    something to learn)."""
    _need_template(tokenizer)
    context = tokenizer.apply_chat_template(list(messages[:-1]), add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template(list(messages), tokenize=True)
    context, full = list(getattr(context, "input_ids", context)), list(getattr(full, "input_ids", full))
    eos = tokenizer.eos_token_id
    if full[: len(context)] != context:  # templates that rewrite earlier turns: fall back to content + EOS
        answer = tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
        return context, answer + ([eos] if eos is not None else [])
    answer = full[len(context):]
    if eos in answer:
        answer = answer[: answer.index(eos) + 1]
    return context, answer


def bucket_for(length: int, buckets: Sequence[int], what: str = "prompt_buckets") -> int:
    """The smallest bucket >= length."""
    for b in buckets:
        if b >= length:
            return int(b)
    raise UserError(f"{what}: a prompt has {length} tokens, more than the largest bucket {buckets[-1]}")


def left_pad(prompts: Sequence[Sequence[int]], buckets: Sequence[int], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token-id prompts to the smallest bucket holding the longest. -> (ids_PxL int32, mask_PxL bool)."""
    if len(prompts) == 0:
        raise UserError("prompts: expected at least one prompt")
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise UserError(f"prompts: prompt {lengths.index(0)} is empty")
    L = bucket_for(max(lengths), buckets)
    ids = np.full((len(prompts), L), pad, np.int32)
    mask = np.zeros((len(prompts), L), bool)
    for row, p in enumerate(prompts):
        ids[row, L - len(p):] = np.asarray(p, np.int32)
        mask[row, L - len(p):] = True
    return ids, mask


def widen(ids_PxL: np.ndarray, mask_PxL: np.ndarray, L: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded arrays widened to length L >= theirs (more padding on the left; rows unchanged)."""
    extra = L - ids_PxL.shape[1]
    if extra < 0:
        raise ValueError(f"widen: arrays of length {ids_PxL.shape[1]} are longer than {L}")
    if extra == 0:
        return ids_PxL, mask_PxL
    return (np.pad(ids_PxL, ((0, 0), (extra, 0)), constant_values=pad),
            np.pad(mask_PxL, ((0, 0), (extra, 0)), constant_values=False))


def unpad(ids_PxL: np.ndarray, mask_PxL: np.ndarray) -> list[list[int]]:
    """The real tokens of each left-padded row."""
    return [row[m.astype(bool)].tolist() for row, m in zip(ids_PxL, mask_PxL, strict=True)]
