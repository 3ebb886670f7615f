"""Per-token log-probabilities of given tokens, computed in chunks of the length axis.

The float32 logits of a GRPO batch are [B, L, V] (64 x 96 x 49k = 1.2 GB for SmolLM2): we never
build them whole. The trunk runs once; the lm head + log-softmax run per chunk of T positions under
`jax.checkpoint`, so the backward pass recomputes one chunk's logits at a time.

The picked token's logit is a masked sum over the vocabulary rather than a gather: with the logits' vocabulary
axis sharded (`Decoder.logits_from_hidden` pins it to the "vocab" rule: the tensor axis), the sum, the
logsumexp and the entropy all reduce locally and then across devices, so no device ever holds a chunk's full
[B, C, V] logits. On one device the sum is exact (one non-zero term) and costs one fused pass.

Legend: B batch, L full length (prompt + completion), T completion length, C chunk, D width, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _chunk_logps(model, h_BxCxD, targets_BxC, temperature):
    logits = model.logits_from_hidden(h_BxCxD)
    if temperature != 1.0:
        logits = logits / temperature
    logz = jax.nn.logsumexp(logits, axis=-1)
    vocab_V = jax.lax.broadcasted_iota(jnp.int32, (logits.shape[-1],), 0)
    picked = jnp.sum(jnp.where(vocab_V == targets_BxC[..., None], logits, 0.0), axis=-1)
    # Entropy of the (temperature-scaled) distribution, a free by-product for the metrics.
    p = jnp.exp(logits - logz[..., None])
    entropy = logz - jnp.sum(p * logits, axis=-1)
    return picked - logz, entropy


def completion_logps(model, ids_BxL, mask_BxL, num_completion: int, chunk: int = 64,
                     temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Log-probs [B, T] (and entropies [B, T]) of the last T = `num_completion` tokens of each row.

    The token at position j is predicted by the hidden state at j - 1, so we take hidden states
    [L-T-1, L-1) and targets [L-T, L). Rows are left-padded prompts followed by completions.
    """
    B, L = ids_BxL.shape
    T = num_completion
    h = model.apply(ids_BxL, mask_BxL, logits=False).hidden
    h_BxTxD = h[:, L - T - 1 : L - 1]
    tgt_BxT = ids_BxL[:, L - T :]
    C = min(chunk, T)
    n = -(-T // C)
    pad = n * C - T
    if pad:
        h_BxTxD = jnp.pad(h_BxTxD, ((0, 0), (0, pad), (0, 0)))
        tgt_BxT = jnp.pad(tgt_BxT, ((0, 0), (0, pad)))
    hs = h_BxTxD.reshape(B, n, C, -1).swapaxes(0, 1)
    ts = tgt_BxT.reshape(B, n, C).swapaxes(0, 1)
    fn = jax.checkpoint(lambda hc, tc: _chunk_logps(model, hc, tc, temperature))
    logps, ent = jax.lax.map(lambda xs: fn(*xs), (hs, ts))
    logps = logps.swapaxes(0, 1).reshape(B, n * C)[:, :T]
    ent = ent.swapaxes(0, 1).reshape(B, n * C)[:, :T]
    return logps, ent
