"""Token choice: temperature, top-k, top-p (nucleus), min-p, and the log-probability of the choice.

Pure, jittable functions on one step's logits. Dimension legend: B rows (sequences), V vocab,
C candidates (the tokens still in play after top-k / the full sort that top-p needs; C = V when
neither is on).

The filters compose in transformers' order: logits / temperature -> top-k -> top-p -> min-p, each
acting on the renormalised output of the previous one. The log-probability returned for a token
is under that final, renormalised distribution -- the one actually sampled from -- which is what
an importance ratio needs. Greedy decoding (temperature 0) samples from a point mass, whose
log-probability (0) says nothing; there we return the model's own log-softmax (temperature 1,
no filter) instead, the number an evaluation wants.

Filters are Python switches: a disabled filter costs nothing. With top-k on, everything after it
works on the k candidates only, so a step costs O(V) for the top-k plus O(k), not O(V log V).
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
    V = x_BxC.shape[-1]
    if choice.top_k and choice.top_k < V:
        x_BxC, ids_BxC = jax.lax.top_k(x_BxC, choice.top_k)  # sorted, descending
    elif choice.top_p < 1.0:
        x_BxC, ids_BxC = jax.lax.top_k(x_BxC, V)  # a full sort: nucleus needs the order
    if choice.top_p < 1.0:
        # Keep token i (sorted descending) while the mass strictly before it is < top_p: the
        # smallest prefix reaching top_p. The top token is always kept.
        p_BxC = jax.nn.softmax(x_BxC, axis=-1)
        before_BxC = jnp.cumsum(p_BxC, axis=-1) - p_BxC
        keep_BxC = before_BxC < choice.top_p
        cut_Bx1 = jnp.min(jnp.where(keep_BxC, x_BxC, jnp.inf), axis=-1, keepdims=True)
        x_BxC = jnp.where(x_BxC >= cut_Bx1, x_BxC, _NEG_INF)
    if choice.min_p > 0.0:
        # p_i >= min_p * p_max  <=>  x_i >= x_max + log(min_p): no softmax needed.
        cut_Bx1 = jnp.max(x_BxC, axis=-1, keepdims=True) + jnp.log(choice.min_p)
        x_BxC = jnp.where(x_BxC >= cut_Bx1, x_BxC, _NEG_INF)
    return jax.nn.log_softmax(x_BxC, axis=-1), ids_BxC


def choose(keys_B: jax.Array, logits_BxV: jax.Array, choice: TokenChoice) -> tuple[jax.Array, jax.Array]:
    """Draws one token per row with that row's key. Returns (tokens_B int32, logprobs_B float32).

    Gumbel-max with an independent key per row, so a row's draw depends only on its key and its
    logits, never on the other rows of the batch.
    """
    logp_BxC, ids_BxC = candidates(logits_BxV, choice)
    if choice.greedy:
        idx_B = jnp.argmax(logp_BxC, axis=-1)
    else:
        idx_B = jax.vmap(jax.random.categorical)(keys_B, logp_BxC)
    logp_B = jnp.take_along_axis(logp_BxC, idx_B[:, None], axis=-1)[:, 0]
    tok_B = idx_B if ids_BxC is None else jnp.take_along_axis(ids_BxC, idx_B[:, None], axis=-1)[:, 0]
    return tok_B.astype(jnp.int32), logp_B


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
