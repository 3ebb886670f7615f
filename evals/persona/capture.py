"""Activation capture: the residual stream at chosen layers and token positions over a dataset.

One jitted forward per batch (batch sharded over the mesh's data axes, weights as the policy
holds them), stopped at the deepest captured layer (`Decoder.apply(through_layer=...)`), so
capturing layer 8 of 30 costs about a quarter of a full forward. Rows stream into an
`ActivationStore` on disk chunk by chunk.

An example is a chat `{"messages": [...]}` -- when the last turn is the assistant's, that turn is
the *response* (teacher-forced) -- or raw text `{"text": "..."}`, whose tokens all count as the
response. Position modes:

- "response":      every response token (one row each); a chat without a response gives no rows
- "response_mean": one row per example, the mean over its response tokens
- "prompt_last":   one row per example, the last token before the response (where generation starts)
- "all":           every token but the first

The first token of a sequence is an attention sink whose residual norm is several times every
other token's (SmolLM2: ~760 vs a median ~110 at layer 8); it is never captured, or it would
dominate means and an SAE's loss.

Legend: B batch, L padded length, D model width, R rows.
"""

from __future__ import annotations

from typing import Literal

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from engine.errors import UserError
from engine.sharding import sharding_for
from evals.persona.store import ActivationStore, StoreWriter
from models.loader import Policy
from models.tokenizer import left_pad, pad_id
from models.tokenizer import encode_example

POSITIONS = ("response", "response_mean", "prompt_last", "all")
_POOLED = ("response_mean", "prompt_last")


@dataclasses.dataclass(frozen=True)
class CaptureConfig:
    """What to capture and how to batch it."""

    layers: tuple[int, ...] = (15,)  # residual entering these blocks (num_layers = final pre-norm residual)
    positions: Literal["response", "response_mean", "prompt_last", "all"] = "response"  # see the module docstring
    batch_size: int = 16  # sequences per jitted forward (a multiple of the mesh's data axes to shard it)
    max_len: int = 256  # tokens kept per example (its first max_len: prompt first, then the response)
    chunk_rows: int = 8192  # rows per chunk file
    dtype: Literal["float32", "float16"] = "float32"  # on disk

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if not self.layers or min(self.layers) < 0:
            raise UserError(f"option 'layers': expected one or more layer indices >= 0, got {self.layers}")
        if self.positions not in POSITIONS:
            raise UserError(f"option 'positions': expected one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.batch_size < 1 or self.max_len < 2 or self.chunk_rows < 1:
            raise UserError("options 'batch_size', 'chunk_rows' must be >= 1 and 'max_len' >= 2")


def encode(tokenizer, example: dict, i: int = 0) -> tuple[list[int], int]:
    """(token ids, response start): the response is the final assistant turn, or all of a raw text."""
    if isinstance(example, dict) and isinstance(example.get("text"), str):
        return tokenizer(example["text"], add_special_tokens=False)["input_ids"], 1
    msgs = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise UserError(f"example {i}: expected {{'messages': [...]}} or {{'text': '...'}}, got {str(example)[:60]!r}")
    if msgs[-1].get("role") == "assistant":
        context, answer = encode_example(tokenizer, msgs)
        return list(context) + list(answer), len(context)
    ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = list(getattr(ids, "input_ids", ids))
    return ids, len(ids)


def check_layers(policy: Policy, layers: Sequence[int]) -> None:
    n = policy.config.num_hidden_layers
    if any(not 0 <= x <= n for x in layers):
        raise UserError(f"option 'layers': {policy.source or 'the model'} has residual layers 0..{n}, got {list(layers)}")


def _forward(state, ids_BxL, mask_BxL, resp_BxL, *, graphdef, layers, pooled):
    """Captured residuals: {layer: [B, L, D]} or, pooled, {layer: [B, D]} (masked mean over `resp_BxL`)."""
    model = nnx.merge(graphdef, state)
    out = model.apply(ids_BxL, mask_BxL, capture_layers=layers, logits=False, through_layer=max(layers))
    if not pooled:
        return out.captured
    w_BxL = resp_BxL.astype(jnp.float32)
    denom_B = jnp.maximum(w_BxL.sum(1), 1.0)
    return {k: jnp.einsum("bld,bl->bd", v.astype(jnp.float32), w_BxL) / denom_B[:, None] for k, v in out.captured.items()}


_forward_jit = jax.jit(_forward, static_argnames=("graphdef", "layers", "pooled"))


def _dispatch(policy: Policy, ids_BxL, mask_BxL, layers: Sequence[int], pool_BxL=None) -> dict:
    """Launches one sharded forward and returns its device outputs without waiting for them."""
    graphdef, state = nnx.split(policy.model)
    pooled = pool_BxL is not None
    arrays = [np.asarray(ids_BxL, np.int32), np.asarray(mask_BxL, bool),
              np.asarray(pool_BxL if pooled else mask_BxL, bool)]
    if policy.mesh is not None:
        arrays = [jax.device_put(a, sharding_for(a.shape, ("batch", None), policy.mesh)) for a in arrays]
    return _forward_jit(state, *arrays, graphdef=graphdef, layers=tuple(sorted(set(layers))), pooled=pooled)


def residuals(policy: Policy, ids_BxL: np.ndarray, mask_BxL: np.ndarray, layers: Sequence[int],
              pool_BxL: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """One sharded forward: {layer: [B, L, D]} residuals, or {layer: [B, D]} means over `pool_BxL` when given.

    Rows are left-padded (positions follow the mask). Used by capture, the monitor and steering.
    """
    out = _dispatch(policy, ids_BxL, mask_BxL, layers, pool_BxL)
    return {k: np.asarray(v, np.float32) for k, v in jax.device_get(out).items()}


def _buckets(max_len: int) -> tuple[int, ...]:
    b, out = 32, []
    while b < max_len:
        out.append(b)
        b *= 2
    return (*out, max_len)


def capture(policy: Policy, examples: Sequence[dict], out_dir: str | Path, cfg: CaptureConfig = CaptureConfig(),
            meta: dict | None = None) -> ActivationStore:
    """Runs the dataset through the model in batches and writes the selected rows to a store at `out_dir`."""
    if policy.tokenizer is None:
        raise UserError(f"{policy.source or 'model'}: capture needs a tokenizer")
    if not examples:
        raise UserError("capture: no examples")
    check_layers(policy, cfg.layers)
    pooled = cfg.positions in _POOLED
    writer = StoreWriter(out_dir, cfg.layers, policy.config.hidden_size, cfg.positions, cfg.chunk_rows, cfg.dtype,
                         {"model": policy.source, **(meta or {})})
    pad, buckets = pad_id(policy.tokenizer, policy.config), _buckets(cfg.max_len)
    encoded = [encode(policy.tokenizer, ex, i) for i, ex in enumerate(examples)]
    pending = None  # batch i is written to disk after batch i + 1 is dispatched: host and device overlap
    for start in range(0, len(encoded), cfg.batch_size):
        part = [(ids[: cfg.max_len], min(r, cfg.max_len)) for ids, r in encoded[start: start + cfg.batch_size]]
        idx = [writer.add_example(ids, r) for ids, r in part]
        rows = [ids for ids, _ in part] + [part[0][0]] * (cfg.batch_size - len(part))  # one shape per bucket
        ids_BxL, mask_BxL = left_pad(rows, buckets, pad)
        L = ids_BxL.shape[1]
        # sel_BxL: which (row, column) each mode keeps; column j holds token j - (L - n) of a row of n tokens.
        sel_BxL = np.zeros_like(mask_BxL)
        for b, (ids, r) in enumerate(part):
            off = L - len(ids)
            if cfg.positions == "prompt_last":
                sel_BxL[b, off + r - 1] = True
            elif cfg.positions == "all":
                sel_BxL[b, off + 1:] = True
            else:
                sel_BxL[b, off + max(r, 1):] = True
        out = _dispatch(policy, ids_BxL, mask_BxL, cfg.layers, sel_BxL if pooled else None)
        if pending is not None:
            _write(writer, *pending, pooled=pooled, positions=cfg.positions)
        pending = (out, part, idx, ids_BxL, sel_BxL)
    _write(writer, *pending, pooled=pooled, positions=cfg.positions)
    return writer.close()


def _write(writer: StoreWriter, out, part, idx, ids_BxL, sel_BxL, *, pooled: bool, positions: str) -> None:
    """Pulls one batch's captured residuals and appends the selected rows (with their metadata)."""
    acts = {k: np.asarray(v, np.float32) for k, v in jax.device_get(out).items()}
    n, L = len(part), ids_BxL.shape[1]
    if pooled:
        b_idx = np.flatnonzero(sel_BxL[:n].any(1))  # chats without a response give no row
        meta_Rx3 = np.stack([np.asarray(idx)[b_idx], np.full(len(b_idx), -1), np.full(len(b_idx), -1)], 1)
        if positions == "prompt_last":
            meta_Rx3[:, 1] = [part[b][1] - 1 for b in b_idx]
            meta_Rx3[:, 2] = [part[b][0][part[b][1] - 1] for b in b_idx]
        writer.add({k: v[b_idx] for k, v in acts.items()}, meta_Rx3)
    else:
        b_idx, col = np.nonzero(sel_BxL[:n])
        pos = col - (L - np.asarray([len(part[b][0]) for b in b_idx], int))
        meta_Rx3 = np.stack([np.asarray(idx)[b_idx], pos, ids_BxL[b_idx, col]], 1)
        writer.add({k: v[b_idx, col] for k, v in acts.items()}, meta_Rx3)


def completion_means(policy: Policy, prompt_ids_BxL: np.ndarray, prompt_mask_BxL: np.ndarray,
                     completion_ids_BxT: np.ndarray, completion_mask_BxT: np.ndarray,
                     layers: Sequence[int]) -> dict[int, np.ndarray]:
    """{layer: [B, D]}: mean residual over each row's generated tokens (a sampler `Rollout`'s layout).

    The completion is re-read teacher-forced after the prompt, so this is what the model computes
    on its own answer -- the quantity the persona monitor projects on a direction.
    """
    ids = np.concatenate([prompt_ids_BxL, completion_ids_BxT], 1)
    mask = np.concatenate([prompt_mask_BxL, completion_mask_BxT], 1)
    pool = np.concatenate([np.zeros_like(prompt_mask_BxL), completion_mask_BxT], 1)
    return residuals(policy, ids, mask, layers, pool)
