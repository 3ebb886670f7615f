"""Attention kernels: the reference einsum, fused / memory-efficient kernels, and grouped decode attention.

Dimension legend: B batch, L query length, S key length, H query heads, K kv heads, Q = H // K query heads
per kv head, E head dim, R rows per row of a KV segment (the G generations that share one prompt's KV).

Masks come from positions, never from slots: a query at position p sees the keys at positions 0 <= k <= p
(and p - k < window with sliding-window attention); key position -1 marks padding or an empty cache slot. A
row's real tokens are contiguous and in position order (left-padded prompt, then completion, then right
padding), so "causal by slot" and "causal by position" agree on every real query: the kernels below that
need a slot-causal mask (cuDNN, splash) compute the same outputs on real tokens. Outputs at padding
positions differ between kernels and are never read (no real query attends to a padding key).

Self-attention over L new tokens (the full forward and the sampler's prefill), `ModelConfig.attention`:

  reference  einsum with a materialised float32 [B, K, Q, L, S] score tensor: today's numerics, the
             implementation every other one is tested against.
  xla        `jax.nn.dot_product_attention(implementation="xla")` with the position mask: the same memory
             as the reference (JAX's XLA path also materialises float32 logits), left to XLA's fusions.
  chunked    query chunks of `attention_chunk` rows in a `lax.map`, each under `jax.checkpoint`: the score
             tensor is bounded by [B, K, Q, C, L] in the forward and the backward (which recomputes it, as
             flash attention does); the reference's FLOPs plus one recomputation. Any backend.
  cudnn      cuDNN flash attention (GPU, bf16 / fp16 only). cuDNN's padding mask is "the first n tokens of
             the row": the decoder rolls each row left to right padding first (`right_padding`) and back
             after the last block; the kernel gets `is_causal` plus per-row lengths.
  splash     Pallas splash attention (TPU; `interpret=True` elsewhere, which the CPU tests use): causal mask
             plus segment ids (left padding 0, real tokens 1, right padding 2), so no row is fully masked
             and no roll is needed. Under a mesh it runs inside `shard_map` over the batch (and heads).

Decode (`segment_attention`) is always the grouped einsum: one query row per sequence reads a few KV
segments -- the prompt's KV shared by its G generations (R = G: queried as extra query rows, never copied),
the completion blocks filled so far, the new token -- with one softmax across them. A 1-row query is
memory-bound; fused kernels would not read the cache faster.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models.config import ModelConfig

NEG = -1e30  # finite "minus infinity": fully masked rows (padding) give a uniform, NaN-free softmax
CPU_DEFAULT = "reference"  # measured on the 2-core CPU host (benchmarks/forward.py): the plain einsum is fastest


@functools.cache
def splash_available() -> bool:
    try:
        from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not here"
        return False
    return True


def resolve(cfg: ModelConfig, length: int, backend: str | None = None) -> str:
    """The self-attention kernel `cfg.attention` means for rows of `length` tokens on `backend`.

    "auto": cuDNN on GPU when the compute dtype is bf16 and the head size is one cuDNN takes (a multiple of
    8, at most 128), else the chunked kernel; splash on TPU when importable and the length tiles by 128, else
    chunked; the reference einsum on CPU (`CPU_DEFAULT`, the fastest there). Splash (asked for or chosen)
    needs the length to be a multiple of 128, else the chunked kernel runs.
    """
    impl = cfg.attention
    backend = backend or jax.default_backend()
    if impl == "auto":
        if backend == "gpu":
            ok = cfg.dtype == "bfloat16" and cfg.head_size % 8 == 0 and cfg.head_size <= 128
            impl = "cudnn" if ok else "chunked"
        elif backend == "tpu":
            impl = "splash" if splash_available() and length % 128 == 0 else "chunked"
        else:
            impl = CPU_DEFAULT
    if impl == "splash" and length % 128:  # the kernel tiles the length by 128 lanes
        impl = "chunked"
    return impl


def allowed_mask(qpos_BxL: jax.Array, kpos_BxS: jax.Array, window: int | None) -> jax.Array:
    """[B, L, S] bool: query position p sees key position k iff 0 <= k <= p (and p - k < window)."""
    qp, kp = qpos_BxL[:, :, None], kpos_BxS[:, None, :]
    allowed = (kp >= 0) & (kp <= qp)
    if window is not None:
        allowed &= qp - kp < window
    return allowed


def heads_major(q_BxLxHxE: jax.Array, num_kv: int) -> jax.Array:
    """[B, L, H, E] -> [B, K, Q, L, E] (query head h = k * Q + q, as transformers' repeat_kv)."""
    B, L, H, E = q_BxLxHxE.shape
    return q_BxLxHxE.reshape(B, L, num_kv, H // num_kv, E).transpose(0, 2, 3, 1, 4)


def dense(q_BxKxQxLxE, k_BxKxSxE, v_BxKxSxE, allowed_BxLxS) -> jax.Array:
    """The reference: float32 scores, masked, softmax, probabilities cast to the compute dtype. -> [B, K, Q, L, E]."""
    E = q_BxKxQxLxE.shape[-1]
    scores = jnp.einsum("bkgle,bkse->bkgls", q_BxKxQxLxE, k_BxKxSxE, preferred_element_type=jnp.float32)
    scores = jnp.where(allowed_BxLxS[:, None, None], scores * (E ** -0.5), NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_BxKxSxE.dtype)
    return jnp.einsum("bkgls,bkse->bkgle", probs, v_BxKxSxE)


def _chunked(q5, k4, v4, qpos_BxL, kpos_BxS, window, chunk):
    """Query chunks of `chunk` rows in a `lax.map`, each under jax.checkpoint, over all keys (masks decide).

    A loop, not a Python unroll: XLA runs the chunks (and, in the backward pass, their recomputation) one at a
    time, so one chunk's scores are alive at once -- an unrolled version lets the scheduler hoist every
    chunk's recomputation and keep them all (seen on XLA:CPU).
    """
    B, K, Q, L, E = q5.shape
    n = -(-L // chunk)
    pad = n * chunk - L
    if pad:
        q5 = jnp.pad(q5, ((0, 0), (0, 0), (0, 0), (0, pad), (0, 0)))
        qpos_BxL = jnp.pad(qpos_BxL, ((0, 0), (0, pad)))
    qs = q5.reshape(B, K, Q, n, chunk, E).transpose(3, 0, 1, 2, 4, 5)
    ps = qpos_BxL.reshape(B, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one(xs):
        q, qp = xs
        return dense(q, k4, v4, allowed_mask(qp, kpos_BxS, window))

    out = jax.lax.map(one, (qs, ps))  # [n, B, K, Q, C, E]
    return out.transpose(1, 2, 3, 0, 4, 5).reshape(B, K, Q, n * chunk, E)[:, :, :, :L]


def _splash_kernel(num_heads: int, length: int, window: int | None, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    if window is None:
        one = sm.CausalMask((length, length))
    else:
        one = sm.LocalMask((length, length), window_size=(window - 1, 0), offset=0)
    blk = next((b for b in (512, 256, 128) if length % b == 0), length)
    sizes = sk.BlockSizes(block_q=blk, block_kv=blk, block_kv_compute=blk, block_q_dkv=blk, block_kv_dkv=blk,
                          block_kv_dkv_compute=blk, block_q_dq=blk, block_kv_dq=blk)
    return sk.make_splash_mha(sm.MultiHeadMask([one] * num_heads), block_sizes=sizes, head_shards=1,
                              q_seq_shards=1, interpret=interpret)


def splash_segments(mask_BxL: jax.Array) -> jax.Array:
    """Segment ids for splash: 0 before a row's first real token, 1 on real tokens, 2 after them."""
    m = mask_BxL.astype(jnp.int32)
    seen = jnp.cumsum(m, axis=1) > 0
    return jnp.where(m > 0, 1, jnp.where(seen, 2, 0)).astype(jnp.int32)


def _splash(q, k, v, seg_BxL, window, mesh):
    """q [B, L, H, E], k / v [B, L, K, E] -> [B, L, H, E] through the Pallas splash kernel."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.sharding import PartitionSpec as P

    B, L, H, E = q.shape
    K = k.shape[2]
    interpret = jax.default_backend() != "tpu"
    qh = (q * jnp.asarray(E ** -0.5, q.dtype)).transpose(0, 2, 1, 3)  # splash applies no scale itself
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)

    def local(qh, kh, vh, seg):
        kernel = _splash_kernel(qh.shape[1], L, window, interpret)
        return jax.vmap(kernel)(qh, kh, vh, segment_ids=sk.SegmentIds(seg, seg))

    if mesh is None:
        out = local(qh, kh, vh, seg_BxL)
    else:  # a Pallas call is not partitioned by XLA: run it per shard (batch over data x fsdp, heads over tensor)
        bax = tuple(a for a in ("data", "fsdp") if mesh.shape[a] > 1)
        bsz = int(np.prod([mesh.shape[a] for a in bax])) if bax else 1
        batch = (bax if len(bax) > 1 else bax[0]) if bax and B % bsz == 0 else None
        t = mesh.shape["tensor"]
        heads = "tensor" if t > 1 and H % t == 0 and K % t == 0 else None
        spec4, seg_spec = P(batch, heads, None, None), P(batch, None)
        out = jax.shard_map(local, mesh=mesh, in_specs=(spec4, spec4, spec4, seg_spec), out_specs=spec4,
                            check_vma=False)(qh, kh, vh, seg_BxL)
    return out.transpose(0, 2, 1, 3)


def self_attention(impl: str, q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, qpos_BxL, kpos_BxL, *, window: int | None,
                   chunk: int, lengths_B=None, segments_BxL=None, mesh=None) -> jax.Array:
    """Attention of L new tokens over themselves. Returns [B, K, Q, L, E] (reference, chunked) or [B, L, H, E].

    `lengths_B` (cudnn: rows already right-padded) and `segments_BxL` (splash) come from the decoder.
    """
    K = k_BxLxKxE.shape[2]
    if impl in ("reference", "chunked"):
        q5 = heads_major(q_BxLxHxE, K)
        k4, v4 = k_BxLxKxE.transpose(0, 2, 1, 3), v_BxLxKxE.transpose(0, 2, 1, 3)
        if impl == "reference" or q5.shape[3] <= chunk:
            return dense(q5, k4, v4, allowed_mask(qpos_BxL, kpos_BxL, window))
        return _chunked(q5, k4, v4, qpos_BxL, kpos_BxL, window, chunk)
    if impl == "xla":
        mask = allowed_mask(qpos_BxL, kpos_BxL, window)[:, None]
        return jax.nn.dot_product_attention(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, mask=mask, implementation="xla")
    if impl == "cudnn":
        return jax.nn.dot_product_attention(
            q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, is_causal=True, query_seq_lengths=lengths_B,
            key_value_seq_lengths=lengths_B, local_window_size=None if window is None else (window - 1, 0),
            implementation="cudnn")
    if impl == "splash":
        return _splash(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, segments_BxL, window, mesh)
    raise ValueError(f"unknown attention implementation {impl!r}")


# ---------------------------------------------------------------------------------------------
# Right padding for cuDNN


def right_padding(mask_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(gather index [B, L] that rolls each row's first real token to slot 0, real-token count [B] >= 1)."""
    B, L = mask_BxL.shape
    first_B = jnp.argmax(mask_BxL, axis=1).astype(jnp.int32)
    idx_BxL = (jnp.arange(L, dtype=jnp.int32)[None, :] + first_B[:, None]) % L
    return idx_BxL, jnp.maximum(jnp.sum(mask_BxL, axis=1, dtype=jnp.int32), 1)


def unroll_index(mask_BxL: jax.Array) -> jax.Array:
    """The inverse of `right_padding`'s roll: slot j of the original row is slot (j - first) % L."""
    L = mask_BxL.shape[1]
    first_B = jnp.argmax(mask_BxL, axis=1).astype(jnp.int32)
    return (jnp.arange(L, dtype=jnp.int32)[None, :] - first_B[:, None]) % L


# ---------------------------------------------------------------------------------------------
# Decode: grouped segments


class KVSegment(NamedTuple):
    """Keys / values a query reads: [Bs, K, S, E] with positions [Bs, S] (-1 = empty); row b of the query batch
    reads segment row b // (B // Bs)."""

    k: jax.Array
    v: jax.Array
    pos: jax.Array


def segment_attention(q_BxKxQxLxE: jax.Array, qpos_BxL: jax.Array, segments: tuple[KVSegment, ...],
                      window: int | None) -> jax.Array:
    """One softmax over several KV segments, none of them copied or concatenated. -> [B, K, Q, L, E].

    A segment with fewer rows than the query batch (a prompt's KV shared by its R = G generations) is read
    once: its R query rows join the query-row axis of the einsum, as GQA's query heads do.
    """
    B, K, Q, L, E = q_BxKxQxLxE.shape
    dt = segments[0].v.dtype
    if len(segments) == 1 and segments[0].k.shape[0] == B:
        s = segments[0]
        return dense(q_BxKxQxLxE, s.k, s.v, allowed_mask(qpos_BxL, s.pos, window))
    scores, maxes = [], []
    for s in segments:
        Bs = s.k.shape[0]
        R = B // Bs
        q6 = q_BxKxQxLxE.reshape(Bs, R, K, Q, L, E)
        sc = jnp.einsum("brkqle,bkse->brkqls", q6, s.k, preferred_element_type=jnp.float32) * (E ** -0.5)
        ok = allowed_mask(qpos_BxL, jnp.repeat(s.pos, R, axis=0) if R > 1 else s.pos, window)  # [B, L, S]
        sc = jnp.where(ok.reshape(Bs, R, 1, 1, L, -1), sc, NEG)
        scores.append(sc)
        maxes.append(jnp.max(sc, axis=-1).reshape(B, K, Q, L))
    m_BxKxQxL = functools.reduce(jnp.maximum, maxes)
    total = jnp.zeros((B, K, Q, L), jnp.float32)
    ctx = jnp.zeros((B, K, Q, L, E), jnp.float32)
    for s, sc in zip(segments, scores):
        Bs = s.k.shape[0]
        R = B // Bs
        p = jnp.exp(sc - m_BxKxQxL.reshape(Bs, R, K, Q, L)[..., None])
        total = total + jnp.sum(p, axis=-1).reshape(B, K, Q, L)
        # In the compute dtype, as the reference's probs @ v (XLA:CPU has no bf16 x bf16 -> f32 dot thunk here).
        part = jnp.einsum("brkqls,bkse->brkqle", p.astype(dt), s.v)
        ctx = ctx + part.reshape(B, K, Q, L, E).astype(jnp.float32)
    return (ctx / total[..., None]).astype(dt)
