"""Flax NNX decoder-only transformer: Llama / Llama-3 / Mistral / Qwen2 / Qwen3.

Dimension legend (suffixes on array names):
  B batch   L query length   S key length (cache slots)   D model width   V vocab
  H query heads   K kv heads   G = H // K query heads per kv head   E head dim   F ffn width

Every parameter carries `logical_axes` metadata; `engine.sharding.RULES` maps those names to the
mesh. Positions come from the attention mask (left padding: a row's first real token has position
0), and attention is masked by positions rather than slots, so the same code serves the full
forward, prefill into a KV cache and one-token decode.

Hooks: `apply(..., capture_layers=(l, ...))` returns the residual stream *entering* block l
(l = num_layers gives the final pre-norm residual), matching transformers' `hidden_states[l]` for
l < num_layers; `steer=Steer(layer, vector_D, alpha)` adds alpha * vector there (`ablate=True`
projects the direction out first). Both are Python switches: when off they are not traced at all.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from engine.sharding import constrain
from models.config import ModelConfig

_INIT_STD = 0.02  # transformers' initializer_range default for this family
_NEG = -1e30  # finite "minus infinity": fully masked rows (left padding) give a uniform, NaN-free softmax


def _param(rngs: nnx.Rngs | None, shape, axes, dtype, init: str = "normal") -> nnx.Param:
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        value = (_INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
    return nnx.Param(value, logical_axes=axes)


# ---------------------------------------------------------------------------------------------
# RoPE


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Inverse frequencies [E/2] in float32, with Llama-3 / linear scaling as transformers does."""
    E = cfg.head_size
    inv = (1.0 / (cfg.rope_theta ** (np.arange(0, E, 2, dtype=np.int64).astype(np.float32) / E))).astype(np.float32)
    rs = cfg.rope_scaling
    if rs is None:
        return inv
    if rs.rope_type == "linear":
        return (inv / rs.factor).astype(np.float32)
    # Llama 3: keep high frequencies, divide low ones by `factor`, interpolate in between.
    old = rs.original_max_position_embeddings
    low_wavelen, high_wavelen = old / rs.low_freq_factor, old / rs.high_freq_factor
    wavelen = 2 * np.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rs.factor, inv)
    smooth = (old / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x_BxLxNxE: jax.Array, pos_BxL: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate-half RoPE (transformers' layout: first half / second half of each head)."""
    ang_BxLxE2 = pos_BxL.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    cos = jnp.cos(ang_BxLxE2)[:, :, None, :]
    sin = jnp.sin(ang_BxLxE2)[:, :, None, :]
    x = x_BxLxNxE.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxNxE.dtype)


# ---------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nnx.Module):
    def __init__(self, width: int, eps: float, param_dtype):
        self.scale = _param(None, (width,), ("norm",), param_dtype, init="ones")
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        # Normalise in float32, cast back, then scale: the order transformers uses.
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(x.dtype) * xf.astype(x.dtype)


class KVCache(NamedTuple):
    """Static-size KV cache. Slots are filled left to right; `pos_BxS` is -1 for empty / padding."""

    # Per layer [B, K, S, E]: (batch, kv head) leading, as the attention dots batch over them, so
    # a decode step reads the cache in place instead of transposing all S slots every token.
    k: tuple[jax.Array, ...]  # per layer [B, K, S, E]
    v: tuple[jax.Array, ...]  # per layer [B, K, S, E]
    pos_BxS: jax.Array  # int32 position of the token in each slot, -1 = nothing to attend to
    index: jax.Array  # int32 scalar: next slot to write

    @staticmethod
    def zeros(cfg: ModelConfig, batch: int, slots: int, mesh: Mesh | None = None) -> KVCache:
        dt = jnp.dtype(cfg.dtype)
        shape = (batch, cfg.num_key_value_heads, slots, cfg.head_size)
        kv = lambda: tuple(constrain(jnp.zeros(shape, dt), ("batch", "kv_heads", None, None), mesh)
                           for _ in range(cfg.num_hidden_layers))
        return KVCache(kv(), kv(), jnp.full((batch, slots), -1, jnp.int32), jnp.zeros((), jnp.int32))


@dataclasses.dataclass(frozen=True)
class Steer:
    """Add `alpha * vector_D` to the residual stream entering block `layer` (all positions).

    `ablate=True` first projects the residual onto the complement of the direction (directional
    ablation): alpha = 0 removes the direction, alpha != 0 clamps the component along it to
    alpha * |vector_D| at every position.
    """

    layer: int
    vector_D: jax.Array
    alpha: float | jax.Array = 1.0
    ablate: bool = False  # project the direction out before adding (a Python switch: static under jit)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        if self.ablate:
            u_D = self.vector_D.astype(jnp.float32)
            u_D = u_D / jnp.maximum(jnp.linalg.norm(u_D), 1e-12)
            xf = x_BxLxD.astype(jnp.float32)
            x_BxLxD = (xf - jnp.einsum("bld,d->bl", xf, u_D)[..., None] * u_D).astype(x_BxLxD.dtype)
        return x_BxLxD + (self.alpha * self.vector_D).astype(x_BxLxD.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, H, K, E, pd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_size, cfg.param_dtype
        self.q_DxHxE = _param(rngs, (D, H, E), ("embed", "heads", "head_dim"), pd)
        self.k_DxKxE = _param(rngs, (D, K, E), ("embed", "kv_heads", "head_dim"), pd)
        self.v_DxKxE = _param(rngs, (D, K, E), ("embed", "kv_heads", "head_dim"), pd)
        self.o_HxExD = _param(rngs, (H, E, D), ("heads", "head_dim", "embed"), pd)
        if cfg.attention_bias:
            self.q_bias_HxE = _param(None, (H, E), ("heads", "head_dim"), pd, init="zeros")
            self.k_bias_KxE = _param(None, (K, E), ("kv_heads", "head_dim"), pd, init="zeros")
            self.v_bias_KxE = _param(None, (K, E), ("kv_heads", "head_dim"), pd, init="zeros")
        if cfg.qk_norm:
            self.q_norm = RMSNorm(E, cfg.rms_norm_eps, pd)
            self.k_norm = RMSNorm(E, cfg.rms_norm_eps, pd)
        self.cfg = cfg

    def __call__(self, x_BxLxD, pos_BxL, kpos_BxL, cache_kv, cache_pos_BxS, index):
        """Returns (out_BxLxD, new (k, v) cache entries or None).

        `kpos_BxL` is the position of each new token as a key (-1 for padding). With a cache the
        new keys are written at slots [index, index + L) and attention spans all S slots.
        """
        cfg, dt = self.cfg, x_BxLxD.dtype
        q = jnp.einsum("bld,dhe->blhe", x_BxLxD, self.q_DxHxE[...].astype(dt))
        k = jnp.einsum("bld,dke->blke", x_BxLxD, self.k_DxKxE[...].astype(dt))
        v = jnp.einsum("bld,dke->blke", x_BxLxD, self.v_DxKxE[...].astype(dt))
        if cfg.attention_bias:
            q = q + self.q_bias_HxE[...].astype(dt)
            k = k + self.k_bias_KxE[...].astype(dt)
            v = v + self.v_bias_KxE[...].astype(dt)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        inv_freq = rope_inv_freq(cfg)  # trace-time NumPy constant
        q = apply_rope(q, pos_BxL, inv_freq)
        k = apply_rope(k, pos_BxL, inv_freq)

        # Attention runs batched over (b, k): q as [B, K, G, L, E] (query head h = k * G + g, as
        # transformers' repeat_kv), keys / values as [B, K, S, E]. Only the new L tokens are
        # transposed; with these layouts XLA moves neither the cache nor the weights per step.
        B, L, H, E = q.shape
        Kh = cfg.num_key_value_heads
        q_BxKxGxLxE = q.reshape(B, L, Kh, H // Kh, E).transpose(0, 2, 3, 1, 4)
        k_BxKxSxE, v_BxKxSxE = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
        new_cache = None
        if cache_kv is not None:
            ck, cv = cache_kv
            ck = jax.lax.dynamic_update_slice(ck, k_BxKxSxE.astype(ck.dtype), (0, 0, index, 0))
            cv = jax.lax.dynamic_update_slice(cv, v_BxKxSxE.astype(cv.dtype), (0, 0, index, 0))
            new_cache, k_BxKxSxE, v_BxKxSxE, kpos_BxS = (ck, cv), ck.astype(dt), cv.astype(dt), cache_pos_BxS
        else:
            kpos_BxS = kpos_BxL

        scores_BxKxGxLxS = jnp.einsum("bkgle,bkse->bkgls", q_BxKxGxLxE, k_BxKxSxE,
                                      preferred_element_type=jnp.float32)
        scores_BxKxGxLxS = scores_BxKxGxLxS * (E ** -0.5)
        qp, kp = pos_BxL[:, :, None], kpos_BxS[:, None, :]
        allowed_BxLxS = (kp >= 0) & (kp <= qp)
        if cfg.sliding_window is not None:
            allowed_BxLxS &= qp - kp < cfg.sliding_window
        scores_BxKxGxLxS = jnp.where(allowed_BxLxS[:, None, None], scores_BxKxGxLxS, _NEG)
        probs = jax.nn.softmax(scores_BxKxGxLxS, axis=-1).astype(dt)
        ctx_BxKxGxLxE = jnp.einsum("bkgls,bkse->bkgle", probs, v_BxKxSxE)
        o_KxGxExD = self.o_HxExD[...].astype(dt).reshape(Kh, H // Kh, E, -1)
        out = jnp.einsum("bkgle,kged->bld", ctx_BxKxGxLxE, o_KxGxExD)
        return out, new_cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, F, pd = cfg.hidden_size, cfg.intermediate_size, cfg.param_dtype
        self.gate_DxF = _param(rngs, (D, F), ("embed", "mlp"), pd)
        self.up_DxF = _param(rngs, (D, F), ("embed", "mlp"), pd)
        self.down_FxD = _param(rngs, (F, D), ("mlp", "embed"), pd)

    def __call__(self, x_BxLxD):
        dt = x_BxLxD.dtype
        g = jnp.einsum("bld,df->blf", x_BxLxD, self.gate_DxF[...].astype(dt))
        u = jnp.einsum("bld,df->blf", x_BxLxD, self.up_DxF[...].astype(dt))
        return jnp.einsum("blf,fd->bld", jax.nn.silu(g) * u, self.down_FxD[...].astype(dt))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.param_dtype)
        self.attn = Attention(cfg, rngs)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.param_dtype)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x_BxLxD, pos_BxL, kpos_BxL, cache_kv, cache_pos_BxS, index):
        a, new_kv = self.attn(self.input_norm(x_BxLxD), pos_BxL, kpos_BxL, cache_kv, cache_pos_BxS, index)
        x_BxLxD = x_BxLxD + a
        return x_BxLxD + self.mlp(self.post_attn_norm(x_BxLxD)), new_kv


class Output(NamedTuple):
    logits: jax.Array | None  # [B, L, V] float32, or None with logits=False
    hidden: jax.Array  # [B, L, D] final normed hidden state (input of the lm head)
    cache: KVCache | None  # updated cache when one was given
    captured: dict[int, jax.Array]  # layer -> residual [B, L, D] entering that block


def positions_from_mask(mask_BxL: jax.Array) -> jax.Array:
    """Position of each token counted from its row's first unmasked token (left padding)."""
    return jnp.maximum(jnp.cumsum(mask_BxL.astype(jnp.int32), axis=1) - 1, 0)


class Decoder(nnx.Module):
    """The policy network. `model(ids_BxL, attention_mask=mask_BxL)` -> float32 logits [B, L, V]."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, mesh: Mesh | None = None):
        V, D, pd = cfg.vocab_size, cfg.hidden_size, cfg.param_dtype
        self.embed_VxD = _param(rngs, (V, D), ("vocab", "embed"), pd)
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.final_norm = RMSNorm(D, cfg.rms_norm_eps, pd)
        if not cfg.tie_word_embeddings:
            self.lm_head_DxV = _param(rngs, (D, V), ("embed", "vocab"), pd)
        self.cfg = cfg
        self.mesh = mesh

    def __call__(self, input_ids_BxL: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        return self.apply(input_ids_BxL, attention_mask).logits

    def logits_from_hidden(self, h_BxLxD: jax.Array) -> jax.Array:
        """The lm head alone: lets callers compute logits in chunks of the length axis."""
        dt = h_BxLxD.dtype
        if self.cfg.tie_word_embeddings:
            return jnp.einsum("bld,vd->blv", h_BxLxD, self.embed_VxD[...].astype(dt),
                              preferred_element_type=jnp.float32)
        return jnp.einsum("bld,dv->blv", h_BxLxD, self.lm_head_DxV[...].astype(dt),
                          preferred_element_type=jnp.float32)

    def apply(self, input_ids_BxL, attention_mask=None, *, positions_BxL=None, cache: KVCache | None = None,
              capture_layers=(), steer: Steer | None = None, logits: bool = True,
              through_layer: int | None = None) -> Output:
        """Full forward, cache prefill, or decode step.

        Without `positions_BxL` they are derived from `attention_mask`. With a cache, pass the
        positions of the new tokens (decode: the next position of each row); new tokens are
        written at slots [cache.index, cache.index + L).

        `through_layer=l` (no cache) stops once the residual entering block l is known: blocks >= l
        never run, `hidden` is that raw residual and `logits` None. Activation capture at early
        layers then costs a fraction of a full forward.
        """
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        B, L = input_ids_BxL.shape
        mask_BxL = jnp.ones((B, L), jnp.bool_) if attention_mask is None else attention_mask.astype(jnp.bool_)
        pos_BxL = positions_from_mask(mask_BxL) if positions_BxL is None else positions_BxL.astype(jnp.int32)
        kpos_BxL = jnp.where(mask_BxL, pos_BxL, -1)

        x = jnp.take(self.embed_VxD[...], input_ids_BxL, axis=0).astype(dt)
        x = constrain(x, ("batch", None, None), self.mesh)
        cache_pos_BxS = index = None
        if cache is not None:
            index = cache.index
            cache_pos_BxS = jax.lax.dynamic_update_slice(cache.pos_BxS, kpos_BxL, (0, index))
        captured, new_k, new_v = {}, [], []
        if through_layer is not None and cache is not None:
            raise ValueError("through_layer is for capture-only forwards, not with a KV cache")
        for i, block in enumerate(self.layers):
            if steer is not None and steer.layer == i:
                x = steer(x)
            if i in capture_layers:
                captured[i] = x
            if i == through_layer:
                return Output(None, x, None, captured)
            cache_kv = None if cache is None else (cache.k[i], cache.v[i])
            if cfg.remat and cache is None:
                x, kv = nnx.remat(lambda blk, *a: blk(*a))(block, x, pos_BxL, kpos_BxL, None, None, None)
            else:
                x, kv = block(x, pos_BxL, kpos_BxL, cache_kv, cache_pos_BxS, index)
            x = constrain(x, ("batch", None, None), self.mesh)
            if kv is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
        if steer is not None and steer.layer == len(self.layers):
            x = steer(x)
        if len(self.layers) in capture_layers:
            captured[len(self.layers)] = x
        h = self.final_norm(x)
        new_cache = None
        if cache is not None:
            new_cache = KVCache(tuple(new_k), tuple(new_v), cache_pos_BxS, cache.index + L)
        return Output(self.logits_from_hidden(h) if logits else None, h, new_cache, captured)
