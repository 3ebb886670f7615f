"""Flax NNX decoder-only transformer: Llama / Llama-3 / Mistral / Qwen2 / Qwen3.

Dimension legend (suffixes on array names):
  B batch   L query length   S key length (cache slots)   D model width   V vocab   N layers
  H query heads   K kv heads   G = H // K query heads per kv head   E head dim   F ffn width

Every parameter carries `logical_axes` metadata; `engine.sharding.RULES` maps those names to the
mesh. Positions come from the attention mask (left padding: a row's first real token has position
0), and attention is masked by positions rather than slots, so the same code serves the full
forward, prefill into a KV cache and one-token decode.

Three ways in: `apply` (full forward; or prefill / decode with the general `KVCache`), `apply(...,
return_kv=True)` (a full forward that also returns every layer's keys / values: the sampler's prefill)
and `decode` (one token per row against a `PagedKV`: a prompt segment shared by a group's rows plus
completion blocks, see `rl.sampler`). The self-attention kernel is `cfg.attention` (`models.attention`).

Layers: a Python loop over `nnx.List` blocks, or with `cfg.scan` one block whose parameters are
stacked along a leading "layers" axis and run by `lax.scan` (one traced block: the program is ~N times
smaller and compiles faster). `cfg.remat` checkpoints each block in full forwards (none | block | full,
see `models.config.REMAT_LEVELS`).

Hooks: `apply(..., capture_layers=(l, ...))` returns the residual stream *entering* block l
(l = num_layers gives the final pre-norm residual), matching transformers' `hidden_states[l]` for
l < num_layers; `steer=Steer(layer, vector_D, alpha)` adds alpha * vector there (`ablate=True`
projects the direction out first). Both are Python switches: when off they are not traced at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from engine.sharding import constrain
from models import attention
from models.config import ModelConfig

_INIT_STD = 0.02  # transformers' initializer_range default for this family


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


class Rope(NamedTuple):
    """cos / sin tables [B, L, 1, E/2] of the rows' positions: computed once per forward, shared by the layers."""

    cos: jax.Array
    sin: jax.Array

    @staticmethod
    def of(pos_BxL: jax.Array, inv_freq: np.ndarray) -> Rope:
        ang_BxLxE2 = pos_BxL.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
        return Rope(jnp.cos(ang_BxLxE2)[:, :, None, :], jnp.sin(ang_BxLxE2)[:, :, None, :])

    def __call__(self, x_BxLxNxE: jax.Array) -> jax.Array:
        """Rotate-half RoPE (transformers' layout: first half / second half of each head), in float32."""
        x = x_BxLxNxE.astype(jnp.float32)
        x1, x2 = jnp.split(x, 2, axis=-1)
        out = jnp.concatenate([x1 * self.cos - x2 * self.sin, x2 * self.cos + x1 * self.sin], axis=-1)
        return out.astype(x_BxLxNxE.dtype)


def apply_rope(x_BxLxNxE: jax.Array, pos_BxL: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate-half RoPE at positions `pos_BxL` (transformers' layout)."""
    return Rope.of(pos_BxL, inv_freq)(x_BxLxNxE)


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
    """Static-size KV cache. Slots are filled left to right; `pos_BxS` is -1 for empty / padding.

    The general cache (any caller, any layout): the new tokens are written at slots [index, index + L) and
    attention reads all S slots. The sampler uses the leaner `PagedKV` instead.
    """

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


class PagedKV(NamedTuple):
    """The sampler's decode context: the prompts' KV once per prompt, the completions' KV in blocks.

    "Layered" fields are a tuple of N per-layer arrays, or with `cfg.scan` one array stacked along a
    leading N axis. A decode step reads every segment and writes nothing: the caller puts the returned new
    keys / values into the current block (so no block is copied inside the layer loop).
    """

    prompt_k: Any  # layered [P, K, Lp, E]; row b of the batch reads prompt row b // (B // P)
    prompt_v: Any
    prompt_pos: jax.Array  # [P, Lp] positions, -1 on padding
    blocks_k: tuple[Any, ...]  # per completion block: layered [B, K, S_j, E]
    blocks_v: tuple[Any, ...]
    blocks_pos: tuple[jax.Array, ...]  # per block [B, S_j], -1 on slots not filled yet

    @staticmethod
    def block(cfg: ModelConfig, batch: int, slots: int, mesh: Mesh | None = None) -> tuple[Any, Any, jax.Array]:
        """An empty completion block: (layered k, layered v, pos [B, S] = -1)."""
        dt, K, E, N = jnp.dtype(cfg.dtype), cfg.num_key_value_heads, cfg.head_size, cfg.num_hidden_layers
        axes = ("batch", "kv_heads", None, None)
        if cfg.scan:
            make = lambda: constrain(jnp.zeros((N, batch, K, slots, E), dt), ("layers",) + axes, mesh)
        else:
            make = lambda: tuple(constrain(jnp.zeros((batch, K, slots, E), dt), axes, mesh) for _ in range(N))
        return make(), make(), jnp.full((batch, slots), -1, jnp.int32)


def kv_blocks(slots: int, kv_block: int = 0) -> list[tuple[int, int]]:
    """(first slot, size) of the completion KV blocks covering `slots` slots (auto: at most 4, >= 128 each)."""
    if slots <= 0:
        return []
    size = kv_block or -(-slots // min(4, max(1, -(-slots // 128))))
    return [(a, min(size, slots - a)) for a in range(0, slots, size)]


def write_block(cfg: ModelConfig, layered: Any, new: Any, offset: jax.Array) -> Any:
    """Writes one token's layered keys (or values) [.., B, K, 1, E] at slot `offset` of a layered block."""
    if cfg.scan:
        return jax.lax.dynamic_update_slice(layered, new.astype(layered.dtype), (0, 0, 0, offset, 0))
    return tuple(jax.lax.dynamic_update_slice(b, n.astype(b.dtype), (0, 0, offset, 0)) for b, n in zip(layered, new))


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


# attend(q_BxLxHxE, k_BxLxKxE, v_BxLxKxE, layer_x) -> (context, per-layer output): how a block's attention
# reads its keys (self-attention, a KVCache, a PagedKV); layer_x is that layer's slice of the cache.
Attend = Callable[[jax.Array, jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


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

    def __call__(self, x_BxLxD, rope: Rope, attend: Attend, layer_x):
        """Returns (out_BxLxD, whatever `attend` returns for this layer: new cache entries, keys, ...)."""
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
        q, k = rope(q), rope(k)
        ctx, out_x = attend(q, k, v, layer_x)
        H, E, Kh = cfg.num_attention_heads, cfg.head_size, cfg.num_key_value_heads
        if ctx.ndim == 5:  # [B, K, G, L, E] straight from the einsum kernels: no transpose back
            o_KxGxExD = self.o_HxExD[...].astype(dt).reshape(Kh, H // Kh, E, -1)
            return jnp.einsum("bkgle,kged->bld", ctx, o_KxGxExD), out_x
        return jnp.einsum("blhe,hed->bld", ctx.astype(dt), self.o_HxExD[...].astype(dt)), out_x


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

    def __call__(self, x_BxLxD, rope: Rope, attend: Attend, layer_x):
        a, out_x = self.attn(self.input_norm(x_BxLxD), rope, attend, layer_x)
        x_BxLxD = x_BxLxD + a
        return x_BxLxD + self.mlp(self.post_attn_norm(x_BxLxD)), out_x


def stack_blocks(blocks: list[Block]) -> Block:
    """One Block whose parameters are the blocks' parameters stacked along a new leading "layers" axis."""
    graphdef, first = nnx.split(blocks[0])
    states = [first] + [nnx.split(b)[1] for b in blocks[1:]]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    for _, var in nnx.to_flat_state(stacked):
        var.set_metadata("logical_axes", ("layers",) + tuple(var.get_metadata()["logical_axes"]))
    return nnx.merge(graphdef, stacked)


class Output(NamedTuple):
    logits: jax.Array | None  # [B, L, V] float32, or None with logits=False
    hidden: jax.Array  # [B, L, D] final normed hidden state (input of the lm head)
    cache: KVCache | None  # updated cache when one was given
    captured: dict[int, jax.Array]  # layer -> residual [B, L, D] entering that block
    kv: tuple | None = None  # return_kv=True: (layered k [B, K, L, E], layered v, key positions [B, L])


def positions_from_mask(mask_BxL: jax.Array) -> jax.Array:
    """Position of each token counted from its row's first unmasked token (left padding)."""
    return jnp.maximum(jnp.cumsum(mask_BxL.astype(jnp.int32), axis=1) - 1, 0)


def remat_policy(level: str):
    """The jax.checkpoint policy of a remat level ("block": matmul outputs saved; "full": nothing saved)."""
    return jax.checkpoint_policies.dots_with_no_batch_dims_saveable if level == "block" else None


class Decoder(nnx.Module):
    """The policy network. `model(ids_BxL, attention_mask=mask_BxL)` -> float32 logits [B, L, V]."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, mesh: Mesh | None = None):
        V, D, pd = cfg.vocab_size, cfg.hidden_size, cfg.param_dtype
        self.embed_VxD = _param(rngs, (V, D), ("vocab", "embed"), pd)
        blocks = [Block(cfg, rngs) for _ in range(cfg.num_hidden_layers)]  # same draws in both layouts
        self.layers = stack_blocks(blocks) if cfg.scan else nnx.List(blocks)
        self.final_norm = RMSNorm(D, cfg.rms_norm_eps, pd)
        if not cfg.tie_word_embeddings:
            self.lm_head_DxV = _param(rngs, (D, V), ("embed", "vocab"), pd)
        self.cfg = cfg
        self.mesh = mesh

    def __call__(self, input_ids_BxL: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        return self.apply(input_ids_BxL, attention_mask).logits

    def logits_from_hidden(self, h_BxLxD: jax.Array) -> jax.Array:
        """The lm head alone: lets callers compute logits in chunks of the length axis.

        The logits are pinned to (batch, -, vocab): with a tensor axis each device computes its slice of the
        vocabulary and the log-softmax reduces across devices; the [B, L, V] block is never all-gathered.
        """
        dt = h_BxLxD.dtype
        if self.cfg.tie_word_embeddings:
            out = jnp.einsum("bld,vd->blv", h_BxLxD, self.embed_VxD[...].astype(dt),
                             preferred_element_type=jnp.float32)
        else:
            out = jnp.einsum("bld,dv->blv", h_BxLxD, self.lm_head_DxV[...].astype(dt),
                             preferred_element_type=jnp.float32)
        return constrain(out, ("batch", None, "vocab"), self.mesh)

    def _embed(self, ids_BxL: jax.Array) -> jax.Array:
        x = jnp.take(self.embed_VxD[...], ids_BxL, axis=0).astype(jnp.dtype(self.cfg.dtype))
        return constrain(x, ("batch", None, None), self.mesh)

    # ---- the layer stack ------------------------------------------------------------------

    def _run(self, x, rope: Rope, attend: Attend, layer_xs, lo: int, hi: int, remat: str, loop: bool = False):
        """Blocks [lo, hi) on x. `layer_xs`: per-layer list (loop) or stacked pytree (scan) of cache slices.

        Returns (x, outs): the blocks' per-layer outputs as a list (loop) or stacked along axis 0 (scan).
        `loop=True` forces the Python loop in scan mode (slicing the stacked parameters per layer).
        """
        mesh, policy = self.mesh, remat_policy(remat)
        scan = self.cfg.scan
        if scan and not loop:
            graphdef, state = nnx.split(self.layers)
            if (lo, hi) != (0, self.cfg.num_hidden_layers):
                state = jax.tree.map(lambda a: a[lo:hi], state)

            def body(x, xs):
                st, lx = xs
                x, out = nnx.merge(graphdef, st)(x, rope, attend, lx)
                return constrain(x, ("batch", None, None), mesh), out

            if remat != "none":
                body = jax.checkpoint(body, policy=policy, prevent_cse=False)
            return jax.lax.scan(body, x, (state, layer_xs))
        outs = []
        for i in range(lo, hi):
            if scan:
                graphdef, state = nnx.split(self.layers)
                block = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))
            else:
                block = self.layers[i]
            lx = None if layer_xs is None else layer_xs[i]
            if remat != "none":
                graphdef, state = nnx.split(block)
                fn = jax.checkpoint(lambda st, x, lx, g=graphdef: nnx.merge(g, st)(x, rope, attend, lx), policy=policy)
                x, out = fn(state, x, lx)
            else:
                x, out = block(x, rope, attend, lx)
            x = constrain(x, ("batch", None, None), mesh)
            outs.append(out)
        return x, outs

    def _stack_run(self, x, rope, attend, layer_xs, remat, capture_layers=(), steer=None, through_layer=None,
                   loop=False):
        """All blocks, with the hooks at their layer boundaries. Returns (x, outs, captured, stopped)."""
        n = self.cfg.num_hidden_layers
        marks = {0, n} | set(capture_layers) | ({steer.layer} if steer is not None else set())
        if through_layer is not None and through_layer >= n:  # nothing to skip: the full forward
            through_layer = None
        if through_layer is not None:
            marks.add(through_layer)
        marks = sorted(m for m in marks if 0 <= m <= n)
        captured, parts = {}, []
        for a, b in zip(marks, marks[1:] + [None]):
            if steer is not None and steer.layer == a:
                x = steer(x)
            if a in capture_layers:
                captured[a] = x
            if a == through_layer or b is None:
                return x, parts, captured, a == through_layer
            lx = layer_xs
            if self.cfg.scan and not loop and layer_xs is not None and (a, b) != (0, n):
                lx = jax.tree.map(lambda t: t[a:b], layer_xs)
            x, out = self._run(x, rope, attend, lx, a, b, remat, loop)
            parts.append(out)
        raise AssertionError("unreachable")

    def _join(self, parts):
        """Per-layer outputs of the stack's parts, as one list (loop) or one stacked pytree (scan)."""
        if not self.cfg.scan:
            return [o for p in parts for o in p]
        return parts[0] if len(parts) == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

    # ---- entry points -----------------------------------------------------------------------

    def apply(self, input_ids_BxL, attention_mask=None, *, positions_BxL=None, cache: KVCache | None = None,
              capture_layers=(), steer: Steer | None = None, logits: bool = True,
              through_layer: int | None = None, return_kv: bool = False) -> Output:
        """Full forward, cache prefill, or decode step.

        Without `positions_BxL` they are derived from `attention_mask`. With a cache, pass the
        positions of the new tokens (decode: the next position of each row); new tokens are
        written at slots [cache.index, cache.index + L).

        `through_layer=l` (no cache) stops once the residual entering block l is known: blocks >= l
        never run, `hidden` is that raw residual and `logits` None. Activation capture at early
        layers then costs a fraction of a full forward.

        `return_kv=True` (no cache) also returns each layer's keys and values [B, K, L, E] and their
        positions (`Output.kv`): the prefill of `PagedKV`. Under the cuDNN kernel they are in the rolled
        (right-padded) slot order, with matching positions; decode masks by position, so order is moot.
        """
        cfg = self.cfg
        B, L = input_ids_BxL.shape
        mask_BxL = jnp.ones((B, L), jnp.bool_) if attention_mask is None else attention_mask.astype(jnp.bool_)
        pos_BxL = positions_from_mask(mask_BxL) if positions_BxL is None else positions_BxL.astype(jnp.int32)
        if through_layer is not None and cache is not None:
            raise ValueError("through_layer is for capture-only forwards, not with a KV cache")
        if return_kv and cache is not None:
            raise ValueError("return_kv is for full forwards (prefill), not with a KV cache")
        inv_freq = rope_inv_freq(cfg)  # trace-time NumPy constant
        if cache is not None:
            return self._apply_cache(input_ids_BxL, mask_BxL, pos_BxL, cache, capture_layers, steer, logits)

        # Slot-causal kernels assume positions follow the mask; explicit positions take the reference.
        impl = "reference" if positions_BxL is not None else attention.resolve(cfg, L)
        unroll = lengths_B = segments = None
        if impl == "cudnn":  # cuDNN's padding mask is "the first n slots": roll every row to right padding
            idx_BxL, lengths_B = attention.right_padding(mask_BxL)
            unroll = attention.unroll_index(mask_BxL)
            input_ids_BxL, mask_BxL, pos_BxL = (jnp.take_along_axis(a, idx_BxL, axis=1)
                                                for a in (input_ids_BxL, mask_BxL, pos_BxL))
        if impl == "splash":
            segments = attention.splash_segments(mask_BxL)
        kpos_BxL = jnp.where(mask_BxL, pos_BxL, -1)
        window, chunk, mesh = cfg.sliding_window, cfg.attention_chunk, self.mesh

        def attend(q, k, v, _):
            ctx = attention.self_attention(impl, q, k, v, pos_BxL, kpos_BxL, window=window, chunk=chunk,
                                           lengths_B=lengths_B, segments_BxL=segments, mesh=mesh)
            return ctx, ((k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)) if return_kv else None)

        x = self._embed(input_ids_BxL)
        layer_xs = None if cfg.scan else [None] * cfg.num_hidden_layers
        x, parts, captured, stopped = self._stack_run(x, Rope.of(pos_BxL, inv_freq), attend, layer_xs, cfg.remat,
                                                      capture_layers, steer, through_layer)
        back = (lambda a: a) if unroll is None else (lambda a: jnp.take_along_axis(a, unroll[:, :, None], axis=1))
        captured = {i: back(c) for i, c in captured.items()}
        if stopped:
            return Output(None, back(x), None, captured)
        kv = None
        if return_kv:
            outs = self._join(parts)
            if cfg.scan:
                kv = (outs[0], outs[1], kpos_BxL)
            else:
                kv = (tuple(o[0] for o in outs), tuple(o[1] for o in outs), kpos_BxL)
        h = back(self.final_norm(x))
        return Output(self.logits_from_hidden(h) if logits else None, h, None, captured, kv)

    def _apply_cache(self, ids_BxL, mask_BxL, pos_BxL, cache: KVCache, capture_layers, steer, logits) -> Output:
        """The general KVCache path: write the new keys at [index, index + L), attend over all S slots."""
        cfg, L = self.cfg, ids_BxL.shape[1]
        kpos_BxL = jnp.where(mask_BxL, pos_BxL, -1)
        index = cache.index
        cache_pos_BxS = jax.lax.dynamic_update_slice(cache.pos_BxS, kpos_BxL, (0, index))
        window = cfg.sliding_window

        def attend(q, k, v, kv):
            ck, cv = kv
            ck = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3).astype(ck.dtype), (0, 0, index, 0))
            cv = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3).astype(cv.dtype), (0, 0, index, 0))
            dt = q.dtype
            ctx = attention.dense(attention.heads_major(q, cfg.num_key_value_heads), ck.astype(dt), cv.astype(dt),
                                  attention.allowed_mask(pos_BxL, cache_pos_BxS, window))
            return ctx, (ck, cv)

        x = self._embed(ids_BxL)
        x, parts, captured, _ = self._stack_run(x, Rope.of(pos_BxL, rope_inv_freq(cfg)), attend,
                                                list(zip(cache.k, cache.v)), "none", capture_layers, steer,
                                                loop=True)
        outs = [o for p in parts for o in p]
        h = self.final_norm(x)
        new_cache = KVCache(tuple(o[0] for o in outs), tuple(o[1] for o in outs), cache_pos_BxS, cache.index + L)
        return Output(self.logits_from_hidden(h) if logits else None, h, new_cache, captured)

    def decode(self, tok_B: jax.Array, pos_B: jax.Array, kv: PagedKV, steer: Steer | None = None):
        """One token per row against a PagedKV. Returns (hidden [B, 1, D], layered new k, layered new v).

        The new token attends to itself as one more segment; the caller writes its keys / values into the
        current block afterwards (`write_block`), so the step reads the cache and writes one slot.
        """
        cfg = self.cfg
        pos_Bx1 = pos_B[:, None].astype(jnp.int32)
        window, Kh = cfg.sliding_window, cfg.num_key_value_heads

        def attend(q, k, v, lx):
            pk, pv, bks, bvs = lx
            k_new, v_new = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
            segs = ((attention.KVSegment(pk, pv, kv.prompt_pos),)
                    + tuple(attention.KVSegment(bk, bv, bp) for bk, bv, bp in zip(bks, bvs, kv.blocks_pos))
                    + (attention.KVSegment(k_new, v_new, pos_Bx1),))
            return attention.segment_attention(attention.heads_major(q, Kh), pos_Bx1, segs, window), (k_new, v_new)

        if cfg.scan:
            layer_xs = (kv.prompt_k, kv.prompt_v, tuple(kv.blocks_k), tuple(kv.blocks_v))
        else:
            layer_xs = [(kv.prompt_k[i], kv.prompt_v[i], tuple(b[i] for b in kv.blocks_k),
                         tuple(b[i] for b in kv.blocks_v)) for i in range(cfg.num_hidden_layers)]
        x = self._embed(tok_B[:, None])
        x, parts, _, _ = self._stack_run(x, Rope.of(pos_Bx1, rope_inv_freq(cfg)), attend, layer_xs, "none", (),
                                         steer)
        outs = self._join(parts)
        if cfg.scan:
            new_k, new_v = outs
        else:
            new_k, new_v = tuple(o[0] for o in outs), tuple(o[1] for o in outs)
        return self.final_norm(x), new_k, new_v
