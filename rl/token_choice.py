"""Token choice: temperature, top-k, top-p (nucleus), min-p, and the log-probability of the choice.

Pure, jittable functions on one step's logits. Dimension legend: B rows (sequences), V vocab,
C candidates (the k tokens kept by top-k, sorted; C = V in vocabulary order without top-k).

The filters compose in transformers' order: logits / temperature -> top-k -> top-p -> min-p, each
acting on the renormalised output of the previous one. The log-probability returned for a token
is under that final, renormalised distribution -- the one actually sampled from -- which is what
an importance ratio needs. Greedy decoding (temperature 0) samples from a point mass, whose
log-probability (0) says nothing; there we return the model's own log-softmax (temperature 1,
no filter) instead, the number an evaluation wants.

Filters are Python switches: a disabled filter costs nothing. With top-k on, everything after it
works on the k candidates only. Nothing sorts the vocabulary (a sort of V per row per token is
the slowest op on CPU): top-p without top-k finds its cut-off by bisection, and the draw is an
inverse CDF over block sums, so every step is a few O(V) passes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

_NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class TokenChoice:
    """The token-choice part of `SamplingConfig` (validated there); hashable, so a jit static."""

    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    top_p: float = 1.0  # keep the smallest top set with mass >= top_p; 1 = off
    min_p: float = 0.0  # keep tokens with p >= min_p * p_max; 0 = off

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def candidates(logits_BxV: jax.Array, choice: TokenChoice) -> tuple[jax.Array, jax.Array | None]:
    """Normalised log-probs over the candidates, and their token ids (None = all V, in order).

    Tokens removed by a filter get -inf. Top-k keeps exactly k (ties broken by lower id); top-p
    and min-p keep every token tied with the cut-off, as transformers does.
    """
    x_BxC = logits_BxV.astype(jnp.float32)
    if choice.greedy:
        return jax.nn.log_softmax(x_BxC, axis=-1), None
    if choice.temperature != 1.0:
        x_BxC = x_BxC / choice.temperature
    ids_BxC = None
    if choice.top_k and choice.top_k < x_BxC.shape[-1]:
        x_BxC, ids_BxC = jax.lax.top_k(x_BxC, choice.top_k)  # sorted, descending
    if choice.top_p < 1.0:
        x_BxC = _nucleus(x_BxC, choice.top_p, is_sorted=ids_BxC is not None)
    if choice.min_p > 0.0:
        # p_i >= min_p * p_max  <=>  x_i >= x_max + log(min_p): no softmax needed.
        cut_Bx1 = jnp.max(x_BxC, axis=-1, keepdims=True) + jnp.log(choice.min_p)
        x_BxC = jnp.where(x_BxC >= cut_Bx1, x_BxC, _NEG_INF)
    return jax.nn.log_softmax(x_BxC, axis=-1), ids_BxC


def _nucleus(x_BxC: jax.Array, top_p: float, is_sorted: bool) -> jax.Array:
    """Keeps the smallest most-likely set with mass >= top_p (every token tied with its last).

    Sorted input (after top-k): keep token i while the mass strictly before it is < top_p.
    Unsorted (the full vocabulary): the same cut-off p_m is the largest tau with
    mass(p >= tau) >= top_p; we bisect for it over the bit patterns of the float32 probabilities
    (monotonic for p >= 0), so 31 O(V) passes find it exactly, without a sort.
    """
    p_BxC = jax.nn.softmax(x_BxC, axis=-1)
    if is_sorted:
        keep_BxC = jnp.cumsum(p_BxC, axis=-1) - p_BxC < top_p
        cut_Bx1 = jnp.min(jnp.where(keep_BxC, p_BxC, jnp.inf), axis=-1, keepdims=True)
    else:
        bits_BxC = jax.lax.bitcast_convert_type(p_BxC, jnp.int32)

        def step(_, lo_hi):  # invariant: mass(bits >= lo) >= top_p, mass(bits >= hi) < top_p
            lo, hi = lo_hi
            mid = lo + (hi - lo) // 2
            ok = jnp.sum(jnp.where(bits_BxC >= mid, p_BxC, 0.0), axis=-1, keepdims=True) >= top_p
            return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

        lo = jnp.zeros(p_BxC.shape[:-1] + (1,), jnp.int32)
        hi = jnp.max(bits_BxC, axis=-1, keepdims=True) + 1
        lo, _ = jax.lax.fori_loop(0, 31, step, (lo, hi))
        cut_Bx1 = jax.lax.bitcast_convert_type(lo, jnp.float32)
    return jnp.where(p_BxC >= cut_Bx1, x_BxC, _NEG_INF)


def choose(keys_B: jax.Array, logits_BxV: jax.Array, choice: TokenChoice) -> tuple[jax.Array, jax.Array]:
    """Draws one token per row with that row's key. Returns (tokens_B int32, logprobs_B float32).

    Inverse-CDF sampling with one uniform per row from the row's own key, so a row's draw depends
    only on its key and its logits, never on the rest of the batch. One uniform instead of V
    Gumbels makes the draw ~O(V) adds: on CPU V threefry draws per row cost as much as the model.
    """
    logp_BxC, ids_BxC = candidates(logits_BxV, choice)
    if choice.greedy:
        idx_B = jnp.argmax(logp_BxC, axis=-1)
    else:
        idx_B = _inverse_cdf(jax.vmap(jax.random.uniform)(keys_B), jnp.exp(logp_BxC))
    logp_B = jnp.take_along_axis(logp_BxC, idx_B[:, None], axis=-1)[:, 0]
    tok_B = idx_B if ids_BxC is None else jnp.take_along_axis(ids_BxC, idx_B[:, None], axis=-1)[:, 0]
    return tok_B.astype(jnp.int32), logp_B


def _inverse_cdf(u_B: jax.Array, p_BxC: jax.Array, block: int = 128) -> jax.Array:
    """Index i with cdf[i-1] <= u * total < cdf[i], so token i is drawn with probability p_i.

    Two levels -- pick a block of `block` tokens by its mass, then a token inside it -- because a
    cumsum over the whole vocabulary is a slow reduce-window on CPU; block sums are one fused
    pass. Zero-probability tokens are never drawn (they do not raise the cdf); the clamps absorb
    float rounding of u * total and of the in-block remainder. float32 cumsums bound the error in
    any token's probability by ~1e-7 absolute.
    """
    B, C = p_BxC.shape
    n = -(-C // block)
    p_BxNxW = jnp.pad(p_BxC, ((0, 0), (0, n * block - C))).reshape(B, n, block)
    mass_BxN = jnp.sum(p_BxNxW, axis=-1)
    cdf_BxN = jnp.cumsum(mass_BxN, axis=-1)
    x_B = u_B * cdf_BxN[:, -1]
    j_B = _clamped_search(cdf_BxN, x_B, mass_BxN > 0)
    p_BxW = jnp.take_along_axis(p_BxNxW, j_B[:, None, None], axis=1)[:, 0]
    # Remainder inside block j; >= 0 so leading zero-probability tokens (cdf 0 <= rest) are skipped.
    rest_B = jnp.maximum(x_B - jnp.take_along_axis(cdf_BxN - mass_BxN, j_B[:, None], axis=-1)[:, 0], 0.0)
    i_B = _clamped_search(jnp.cumsum(p_BxW, axis=-1), rest_B, p_BxW > 0)
    return j_B * block + i_B


def _clamped_search(cdf_BxN: jax.Array, x_B: jax.Array, positive_BxN: jax.Array) -> jax.Array:
    """Number of cdf entries <= x, clamped to the last entry with positive mass."""
    N = cdf_BxN.shape[-1]
    idx_B = jnp.sum(cdf_BxN <= x_B[:, None], axis=-1)
    last_B = N - 1 - jnp.argmax(positive_BxN[:, ::-1], axis=-1)
    return jnp.minimum(idx_B, last_B)


def token_logprobs(logits_BxV: jax.Array, tokens_B: jax.Array, choice: TokenChoice) -> jax.Array:
    """Log-prob of given tokens under the filtered distribution (-inf if a filter removed it).

    The teacher-forced counterpart of `choose`: the learner can score sampled tokens exactly as
    the sampler did. Any leading dims are flattened into rows.
    """
    lead = tokens_B.shape
    logits = logits_BxV.reshape(-1, logits_BxV.shape[-1])
    tok = tokens_B.reshape(-1)
    logp_BxC, ids_BxC = candidates(logits, choice)
    if ids_BxC is None:
        out = jnp.take_along_axis(logp_BxC, tok[:, None], axis=-1)[:, 0]
    else:
        hit_BxC = ids_BxC == tok[:, None]
        out = jnp.where(hit_BxC.any(-1), jnp.sum(jnp.where(hit_BxC, logp_BxC, 0.0), axis=-1), _NEG_INF)
    return out.reshape(lead)
