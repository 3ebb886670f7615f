"""Multiple-choice scoring by log-probability, without generation: batched teacher-forced forwards.

Legend: B rows, L prompt / row length (left-padded bucket), C scored positions per row (span bucket), K
candidate tokens per position, P prompts of a group, O option rows of a batch, V vocab, D width, E head dim.

Two item shapes:

- label options ("(A)" / "(B)" ..., or single tokens "Yes" / "No"): options of equal token length
  that differ in exactly one token are scored from ONE row, prompt + shared prefix, as the log-prob of
  each option's distinguishing token at the last position (`_logps`, C = 1, K = options). The identical
  tokens after it (the closing ")") are left out: they follow from the letter, so they would add only cost.
  An A/B item costs one row, not two.
- text options (TruthfulQA answers): each prompt is prefilled ONCE and every option is scored from its KV
  cache. A group of up to `batch_size` prompts, left-padded to [P, L], goes through one forward that keeps
  every layer's keys / values and the last hidden state (`_prefill`). The group's options are then sorted by
  length and cut into batches of `batch_size` rows, each right-padded to the span bucket C of its longest
  (OPTION_BUCKETS): `_option_logps` gives each option row a copy of its prompt's KV plus C empty slots and
  runs one cached forward at positions continuing the prompt's (len(prompt) + j). Option token j is
  predicted by the prompt's last hidden state (j = 0) or by option position j - 1; an option's log-prob is
  the sum over its tokens. Against one row per option (prompt + option[:-1], `_full_row_option_logps`, kept
  as the reference) the prompt runs once per item instead of once per option, and an option costs its own
  span bucket instead of a prompt-length row: a TruthfulQA item (a ~45-token chat prompt, ~7 answers of ~11
  tokens) is ~64 + 7 x 16 token-rows instead of 7 x 64 (the option tokens also pass the lm head, in both).

Only scored positions go through the lm head, so [B, L, V] logits are never formed. Shapes are fixed:
prompts padded to a length bucket, options to a span bucket, the row counts B, P to multiples of
ROW_MULTIPLE and O to multiples of a quarter batch (a full batch: `batch_size`); short batches are padded
with copies, so a fixed item set always makes the same few compilations and repeated evals reuse them. On a
mesh every row axis (B, P, O) is split over the batch axes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from engine.errors import UserError
from engine.sharding import constrain, sharding_for
from evals.items import LENGTH_BUCKETS, Item
from evals.results import ItemResult
from models.loader import Policy
from models.tokenizer import encode_prompts, left_pad, pad_id
from models.transformer import KVCache

ROW_MULTIPLE = 4  # rows of a batch are padded to a multiple of this (fewer distinct shapes)
SPAN_BUCKETS = (1, 8, 16, 32, 64, 128, 256)  # C: scored positions per row (label rows, full rows)
# Shared-prompt path. Its cost is mostly option rows x span (the prompt runs once per item), so spans are
# bucketed finer than SPAN_BUCKETS (a full row's cost is its prompt + option, whose bucket is relatively
# tighter), and prompts get a 48 bucket too (a short chat question under a system prompt: ~35-50 tokens).
# Each bucket a fixed item set uses is one more compilation, once.
OPTION_BUCKETS = (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512)
PROMPT_BUCKETS = tuple(sorted({48, *LENGTH_BUCKETS}))
MODES = ("ab", "mc1", "mc2")


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _logps(graphdef, state, ids_BxL, mask_BxL, targets_BxCxK):
    model = nnx.merge(graphdef, state)
    C = targets_BxCxK.shape[1]
    h_BxCxD = model.apply(ids_BxL, mask_BxL, logits=False).hidden[:, -C:]
    logp_BxCxV = jax.nn.log_softmax(model.logits_from_hidden(h_BxCxD), axis=-1)
    return jnp.take_along_axis(logp_BxCxV, targets_BxCxK, axis=-1)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _prefill(graphdef, state, ids_PxL, mask_PxL):
    """Prompts -> (per-layer keys, values [P, K, L, E], key positions [P, L] (-1 on padding), last hidden [P, D])."""
    model = nnx.merge(graphdef, state)
    out = model.apply(ids_PxL, mask_PxL, logits=False, return_kv=True)
    k, v, kpos_PxL = out.kv
    if model.cfg.scan:  # stacked [N, P, K, L, E] -> per layer, as KVCache holds them
        k, v = (tuple(a[i] for i in range(model.cfg.num_hidden_layers)) for a in (k, v))
    return tuple(k), tuple(v), kpos_PxL, out.hidden[:, -1]  # left padding: the last slot is the last token


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _option_logps(graphdef, state, prompt_kv, opt_OxC, opt_mask_OxC, prompt_O):
    """log p of each option token given its prompt, [O, C] (0 on padding), from the prompts' `_prefill` output.

    prompt_O: the prompt row (of P) each option row continues. An option row's cache is its prompt's KV
    (gathered) followed by C empty slots: the cached forward writes the option at slots [L, L + C) and
    attends by position (prompt keys 0 .. n-1, the option's own keys n .. n+j), so the prompt's left padding
    and the option's right padding are both masked out.
    """
    model = nnx.merge(graphdef, state)
    k, v, kpos_PxL, last_PxD = prompt_kv
    L, (O, C) = kpos_PxL.shape[1], opt_OxC.shape
    rows = lambda a: jnp.take(a, prompt_O, axis=0)

    def slots(a_PxKxLxE):
        a = rows(a_PxKxLxE)
        a = jnp.concatenate([a, jnp.zeros(a.shape[:2] + (C,) + a.shape[3:], a.dtype)], axis=2)
        return constrain(a, ("batch", "kv_heads", None, None), model.mesh)

    kpos_OxL = rows(kpos_PxL)
    cache = KVCache(tuple(map(slots, k)), tuple(map(slots, v)),
                    jnp.concatenate([kpos_OxL, jnp.full((O, C), -1, jnp.int32)], axis=1), jnp.asarray(L, jnp.int32))
    n_O = jnp.max(kpos_OxL, axis=1) + 1  # real prompt tokens: positions 0 .. n-1
    pos_OxC = n_O[:, None] + jnp.arange(C, dtype=jnp.int32)[None, :]
    h_OxCxD = model.apply(opt_OxC, opt_mask_OxC, positions_BxL=pos_OxC, cache=cache, logits=False).hidden
    # Predictors of option tokens 0 .. C-1: the prompt's last hidden state, then option positions 0 .. C-2.
    h_OxCxD = jnp.concatenate([rows(last_PxD)[:, None].astype(h_OxCxD.dtype), h_OxCxD[:, :-1]], axis=1)
    logp_OxCxV = jax.nn.log_softmax(model.logits_from_hidden(h_OxCxD), axis=-1)
    lp_OxC = jnp.take_along_axis(logp_OxCxV, opt_OxC[..., None], axis=-1)[..., 0]
    return jnp.where(opt_mask_OxC, lp_OxC, 0.0)


def _bucket(n: int, buckets: Sequence[int], what: str) -> int:
    for b in buckets:
        if b >= n:
            return b
    raise UserError(f"multiple choice: a {what} of {n} tokens exceeds the largest bucket {buckets[-1]}")


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _on_mesh(arrays, mesh):
    if mesh is None:
        return arrays
    return tuple(jax.device_put(x, sharding_for(x.shape, ("batch",) + (None,) * (x.ndim - 1), mesh)) for x in arrays)


def _row_batches(rows: Sequence[tuple[list[int], np.ndarray]], batch_size: int, pad: int):
    """Yields (row ids, (ids_BxL, mask_BxL, targets_BxCxK)) per batch of `forward_logps`, in NumPy."""
    K = 1 << (max(tg.shape[1] for _, tg in rows) - 1).bit_length()
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), rows[i][1].shape[0]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        L = _bucket(max(len(rows[i][0]) for i in chunk), LENGTH_BUCKETS, "prompt")
        C = _bucket(max(rows[i][1].shape[0] for i in chunk), SPAN_BUCKETS, "scored span")
        size = _round_up(len(chunk), ROW_MULTIPLE)
        chunk_full = chunk + [chunk[0]] * (size - len(chunk))  # padded with copies
        ids_BxL, mask_BxL = left_pad([rows[i][0] for i in chunk_full], (L,), pad)
        tg_BxCxK = np.zeros((size, C, K), np.int32)
        for b, i in enumerate(chunk_full):
            tg = rows[i][1]
            tg_BxCxK[b, C - tg.shape[0]:, : tg.shape[1]] = tg  # right-aligned: the last positions
        yield chunk, (ids_BxL, mask_BxL, tg_BxCxK)


def forward_logps(policy: Policy, rows: Sequence[tuple[list[int], np.ndarray]],
                  batch_size: int = 32) -> list[np.ndarray]:
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
    out: list[np.ndarray | None] = [None] * len(rows)
    for chunk, arrays in _row_batches(rows, batch_size, pad_id(policy.tokenizer, policy.config)):
        C = arrays[2].shape[1]
        logp = np.asarray(jax.device_get(_logps(graphdef, state, *_on_mesh(arrays, policy.mesh))))
        for b, i in enumerate(chunk):
            c, k = rows[i][1].shape
            out[i] = logp[b, C - c:, :k]
    return out  # type: ignore[return-value]


def _text_batches(prompts: Sequence[list[int]], options: Sequence[list[list[int]]], batch_size: int, pad: int):
    """Yields, per group of prompts: (item ids, (ids_PxL, mask_PxL), [(option ids, (opt_OxC, opt_mask_OxC,
    prompt_O)) per option batch]), in NumPy; option ids are (item, option index) pairs.

    Groups: items sorted by prompt length, `batch_size` prompts each (P rounded up to ROW_MULTIPLE, copies),
    left-padded to the PROMPT_BUCKETS bucket of the longest. Option batches: the group's options sorted by
    length, `batch_size` rows each (O rounded up to a multiple of a quarter batch), right-padded to the
    OPTION_BUCKETS bucket of the longest, so a batch's span is close to its options' own length.
    """
    o_step = max(ROW_MULTIPLE, _round_up(batch_size // 4, ROW_MULTIPLE))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        group = order[start:start + batch_size]
        L = _bucket(max(len(prompts[i]) for i in group), PROMPT_BUCKETS, "prompt")
        P = _round_up(len(group), ROW_MULTIPLE)
        ids_PxL, mask_PxL = left_pad([prompts[i] for i in group + [group[0]] * (P - len(group))], (L,), pad)
        opts = sorted(((p, i, j) for p, i in enumerate(group) for j in range(len(options[i]))),
                      key=lambda t: len(options[t[1]][t[2]]))
        batches = []
        for s in range(0, len(opts), batch_size):
            chunk = opts[s:s + batch_size]
            C = _bucket(max(len(options[i][j]) for _, i, j in chunk), OPTION_BUCKETS, "option")
            full = chunk + [chunk[0]] * (_round_up(len(chunk), o_step) - len(chunk))  # padded with copies
            opt_OxC = np.full((len(full), C), pad, np.int32)
            opt_mask_OxC = np.zeros((len(full), C), bool)
            for r, (_, i, j) in enumerate(full):
                o = options[i][j]
                opt_OxC[r, : len(o)], opt_mask_OxC[r, : len(o)] = o, True
            batches.append(([(i, j) for _, i, j in chunk],
                            (opt_OxC, opt_mask_OxC, np.asarray([p for p, _, _ in full], np.int32))))
        yield group, (ids_PxL, mask_PxL), batches


def shared_prompt_logps(policy: Policy, prompts: Sequence[list[int]], options: Sequence[list[list[int]]],
                        batch_size: int = 32) -> list[np.ndarray]:
    """log p(option | prompt) of every option of every item, [n_options] per item: each prompt runs once.

    See `_text_batches` for the shapes; the group's KV stays on the device(s) while its option batches run.
    """
    if not prompts:
        return []
    graphdef, state = nnx.split(policy.model)
    out = [np.zeros(len(o), np.float64) for o in options]
    for _, prompt_arrays, batches in _text_batches(prompts, options, batch_size,
                                                   pad_id(policy.tokenizer, policy.config)):
        kv = _prefill(graphdef, state, *_on_mesh(prompt_arrays, policy.mesh))
        # Every option batch of the group is dispatched before any result is pulled; the group's KV is freed
        # once they are done (pulling per group bounds the live KV to one group's).
        lps = [_option_logps(graphdef, state, kv, *_on_mesh(arrays, policy.mesh)) for _, arrays in batches]
        for (ids, _), lp_OxC in zip(batches, jax.device_get(lps)):
            lp_OxC = np.asarray(lp_OxC, np.float64)
            for r, (i, j) in enumerate(ids):
                out[i][j] = lp_OxC[r].sum()
    return out


def _common_prefix(seqs: Sequence[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    for j in range(n):
        if len({s[j] for s in seqs}) > 1:
            return j
    return n


def _encode(policy: Policy, items: Sequence[Item]) -> tuple[list[list[int]], list[list[list[int]]]]:
    """(prompt ids per item, option ids per option per item), checked."""
    tok = policy.tokenizer
    if tok is None:
        raise UserError("multiple choice: the model has no tokenizer")
    prompts = encode_prompts(tok, [it.messages for it in items])
    options = []
    for it in items:
        if len(it.options) < 2:
            raise UserError(f"{it.id}: multiple choice needs at least two options")
        opts = [tok(o, add_special_tokens=False)["input_ids"] for o in it.options]
        if any(not o for o in opts):
            raise UserError(f"{it.id}: an option is empty after tokenization")
        options.append(opts)
    return prompts, options


def _label_row(prompt: list[int], opts: list[list[int]]) -> tuple[list[int], np.ndarray] | None:
    """The one row of label-style options (one distinguishing token after a shared prefix), else None."""
    j = _common_prefix(opts)
    n = len(opts[0])
    label = all(len(o) == n and o[j + 1:] == opts[0][j + 1:] for o in opts) and j < n
    if label and len({o[j] for o in opts}) == len(opts):
        return prompt + opts[0][:j], np.asarray([[o[j] for o in opts]], np.int32)
    return None


def option_logps(policy: Policy, items: Sequence[Item], batch_size: int = 32) -> list[np.ndarray]:
    """Log-probability of each item's options as the start of the assistant's reply, [n_options] per item.

    Label-style options (one distinguishing token after a shared prefix) take one row per item;
    others are scored from their prompt's KV cache, the prompt prefilled once per item.
    """
    prompts, options = _encode(policy, items)
    label_rows, label_of, text_of = [], {}, []
    for i, (p, opts) in enumerate(zip(prompts, options)):
        row = _label_row(p, opts)
        if row is None:
            text_of.append(i)
        else:
            label_of[i] = len(label_rows)
            label_rows.append(row)
    label_lp = forward_logps(policy, label_rows, batch_size)
    text_lp = dict(zip(text_of, shared_prompt_logps(policy, [prompts[i] for i in text_of],
                                                    [options[i] for i in text_of], batch_size)))
    return [label_lp[label_of[i]][0].astype(np.float64) if i in label_of else text_lp[i] for i in range(len(items))]


def _full_row_option_logps(policy: Policy, items: Sequence[Item], batch_size: int = 32) -> list[np.ndarray]:
    """The previous text-option path, kept as the reference (tests, benchmarks/mc.py): one full row per option,
    prompt + option[:-1], scored at its last len(option) positions. Label-style items as in `option_logps`."""
    prompts, options = _encode(policy, items)
    rows: list[tuple[list[int], np.ndarray]] = []
    plan: list[tuple[bool, list[int]]] = []  # per item: (label, row ids)
    for p, opts in zip(prompts, options):
        row = _label_row(p, opts)
        if row is not None:
            plan.append((True, [len(rows)]))
            rows.append(row)
        else:
            plan.append((False, list(range(len(rows), len(rows) + len(opts)))))
            rows.extend((p + o[:-1], np.asarray(o, np.int32)[:, None]) for o in opts)
    logps = forward_logps(policy, rows, batch_size)
    return [logps[rids[0]][0].astype(np.float64) if label
            else np.asarray([logps[r][:, 0].sum() for r in rids], np.float64) for label, rids in plan]


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
