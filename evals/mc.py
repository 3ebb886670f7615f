"""Multiple-choice scoring by log-probability, without generation: one batched teacher-forced forward.

Legend: B rows, L row length (left-padded bucket), C scored positions per row, K candidate tokens per
position, V vocab, D width.

Two row shapes, one jitted function (`_logps`: log-softmax of the last C positions, gathered at
targets_BxCxK):

- label options ("(A)" / "(B)" ..., or single tokens "Yes" / "No"): options of equal token length
  that differ in exactly one token are scored from ONE row, prompt + shared prefix, as the log-prob of
  each option's distinguishing token at the last position (C = 1, K = options). The identical tokens
  after it (the closing ")") are left out: they follow from the letter, so they would add only cost.
  An A/B item costs one row, not two.
- text options (TruthfulQA answers): one row per option, prompt + option[:-1], scored at the last
  C = len(option) positions with K = 1; the option's log-prob is the sum over its tokens.

Only the last C positions go through the lm head, so the [B, L, V] logits are never formed. Rows are
batched at a fixed batch size and length bucket (a short batch is padded with copies), so repeated
evals reuse one compilation per bucket; on a mesh the rows are split over the batch axes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from engine.errors import UserError
from engine.sharding import sharding_for
from evals.items import LENGTH_BUCKETS, Item
from evals.results import ItemResult
from models.loader import Policy
from models.tokenizer import encode_prompts, left_pad, pad_id

ROW_MULTIPLE = 4  # rows of a batch are padded to a multiple of this (fewer distinct shapes)
SPAN_BUCKETS = (1, 8, 16, 32, 64, 128, 256)  # C: scored positions per row
MODES = ("ab", "mc1", "mc2")


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _logps(graphdef, state, ids_BxL, mask_BxL, targets_BxCxK):
    model = nnx.merge(graphdef, state)
    C = targets_BxCxK.shape[1]
    h_BxCxD = model.apply(ids_BxL, mask_BxL, logits=False).hidden[:, -C:]
    logp_BxCxV = jax.nn.log_softmax(model.logits_from_hidden(h_BxCxD), axis=-1)
    return jnp.take_along_axis(logp_BxCxV, targets_BxCxK, axis=-1)


def _bucket(n: int, buckets: Sequence[int], what: str) -> int:
    for b in buckets:
        if b >= n:
            return b
    raise UserError(f"multiple choice: a {what} of {n} tokens exceeds the largest bucket {buckets[-1]}")


def forward_logps(policy: Policy, rows: Sequence[tuple[list[int], np.ndarray]], batch_size: int = 32) -> list[np.ndarray]:
    """rows: (ids, targets_CxK) -> log p of each target at the row's last C positions, [C, K] per row.

    Row r's target [c, k] is scored at position len(ids) - C + c (the hidden state there predicts
    the next token), so a text option's row is prompt + option[:-1] with targets = option tokens.
    Rows are sorted by length and cut into batches of `batch_size`, each padded to the bucket of its
    longest row (rows to a multiple of ROW_MULTIPLE): a fixed item set always makes the same few shapes,
    so the in-loop evals compile once; the one-batch case (an in-loop subset) compiles once in total.
    """
    if not rows:
        return []
    graphdef, state = nnx.split(policy.model)
    pad, mesh = pad_id(policy.tokenizer, policy.config), policy.mesh
    K = 1 << (max(tg.shape[1] for _, tg in rows) - 1).bit_length()
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), rows[i][1].shape[0]))
    out: list[np.ndarray | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        L = _bucket(max(len(rows[i][0]) for i in chunk), LENGTH_BUCKETS, "prompt")
        C = _bucket(max(rows[i][1].shape[0] for i in chunk), SPAN_BUCKETS, "scored span")
        size = -(-len(chunk) // ROW_MULTIPLE) * ROW_MULTIPLE
        chunk_full = chunk + [chunk[0]] * (size - len(chunk))  # padded with copies
        ids_BxL, mask_BxL = left_pad([rows[i][0] for i in chunk_full], (L,), pad)
        tg_BxCxK = np.zeros((size, C, K), np.int32)
        for b, i in enumerate(chunk_full):
            tg = rows[i][1]
            tg_BxCxK[b, C - tg.shape[0]:, : tg.shape[1]] = tg  # right-aligned: the last positions
        arrays = (ids_BxL, mask_BxL, tg_BxCxK)
        if mesh is not None:
            arrays = tuple(jax.device_put(x, sharding_for(x.shape, ("batch",) + (None,) * (x.ndim - 1), mesh))
                           for x in arrays)
        logp = np.asarray(jax.device_get(_logps(graphdef, state, *arrays)))
        for b, i in enumerate(chunk):
            c, k = rows[i][1].shape
            out[i] = logp[b, C - c:, :k]
    return out  # type: ignore[return-value]


def _common_prefix(seqs: Sequence[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    for j in range(n):
        if len({s[j] for s in seqs}) > 1:
            return j
    return n


def option_logps(policy: Policy, items: Sequence[Item], batch_size: int = 32) -> list[np.ndarray]:
    """Log-probability of each item's options as the start of the assistant's reply, [n_options] per item.

    Label-style options (one distinguishing token after a shared prefix) take one row per item;
    others take one row per option (the sum of the option's token log-probs).
    """
    tok = policy.tokenizer
    if tok is None:
        raise UserError("multiple choice: the model has no tokenizer")
    prompts = encode_prompts(tok, [it.messages for it in items])
    rows: list[tuple[list[int], np.ndarray]] = []
    plan: list[tuple[str, list[int]]] = []  # per item: ("label", [row]) or ("text", [row per option])
    for it, p in zip(items, prompts):
        if len(it.options) < 2:
            raise UserError(f"{it.id}: multiple choice needs at least two options")
        opts = [tok(o, add_special_tokens=False)["input_ids"] for o in it.options]
        if any(not o for o in opts):
            raise UserError(f"{it.id}: an option is empty after tokenization")
        j = _common_prefix(opts)
        n = len(opts[0])
        label = all(len(o) == n and o[j + 1:] == opts[0][j + 1:] for o in opts) and j < n
        if label and len({o[j] for o in opts}) == len(opts):
            plan.append(("label", [len(rows)]))
            rows.append((p + opts[0][:j], np.asarray([[o[j] for o in opts]], np.int32)))
        else:
            plan.append(("text", list(range(len(rows), len(rows) + len(opts)))))
            rows.extend((p + o[:-1], np.asarray(o, np.int32)[:, None]) for o in opts)
    logps = forward_logps(policy, rows, batch_size)
    out = []
    for kind, rids in plan:
        if kind == "label":
            out.append(logps[rids[0]][0].astype(np.float64))
        else:
            out.append(np.asarray([logps[r][:, 0].sum() for r in rids], np.float64))
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def score_from_logps(items: Sequence[Item], logps: Sequence[np.ndarray], mode: str) -> list[ItemResult]:
    """ab: probability of the desired answer, normalised over the labelled answers (good + bad);
    mc1: 1 if the most likely option is a right one; mc2: normalised probability mass of the right options."""
    if mode not in MODES:
        raise UserError(f"multiple-choice mode {mode!r}: expected one of {', '.join(MODES)}")
    results = []
    for it, lp in zip(items, logps, strict=True):
        choice = int(np.argmax(lp))
        if mode == "ab":
            p = _softmax(lp[list(it.good) + list(it.bad)])
            score = float(p[: len(it.good)].sum())
        elif mode == "mc1":
            score = float(choice in it.good)
        else:
            score = float(_softmax(lp)[list(it.good)].sum())
        extra = {"choice": it.options[choice], "logps": [round(float(x), 4) for x in lp]}
        results.append(ItemResult(it.id, min(1.0, max(0.0, score)), it.domain, extra))
    return results
