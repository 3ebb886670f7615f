"""SAE latent statistics over a store, streamed: firing frequency, mean / max activation, top examples.

The top-activating examples are what makes a latent readable ("fires on the assistant's first
token after a request for medical advice"): the T largest activations of every latent are kept
with the (example, position) they came from, merged chunk by chunk, and rendered as a window of
decoded tokens ending at that position.

Legend: R rows, K active latents per row, N latents, T top examples per latent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from evals.persona.sae import SAE
from evals.persona.store import ActivationStore


@dataclasses.dataclass(frozen=True)
class LatentStats:
    """Per-latent statistics over `rows` rows (activation 0 where a latent is not in a row's top k)."""

    rows: int
    freq_N: np.ndarray  # fraction of rows where the latent is active (> 0)
    mean_N: np.ndarray  # mean activation, zeros included
    sq_mean_N: np.ndarray  # mean squared activation (std = sqrt(sq_mean - mean^2))
    max_N: np.ndarray  # largest activation
    top_values_NxT: np.ndarray  # the T largest activations, descending (0 where fewer than T)
    top_rows_NxTx3: np.ndarray  # their (example, position, token) rows; -1 where empty

    @property
    def std_N(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.sq_mean_N - self.mean_N**2, 0.0))

    @property
    def mean_active_N(self) -> np.ndarray:
        return np.where(self.freq_N > 0, self.mean_N / np.maximum(self.freq_N, 1e-12), 0.0)


def _merge_top(top_v, top_r, vals_E, lat_E, rows_Ex3, T):
    """Keeps the T largest values per latent among the current tops and the new entries (E of them)."""
    N = len(top_v)
    have = top_v > 0
    lat = np.concatenate([np.nonzero(have)[0], lat_E])
    val = np.concatenate([top_v[have], vals_E])
    row = np.concatenate([top_r[have], rows_Ex3])
    order = np.lexsort((-val, lat))
    lat, val, row = lat[order], val[order], row[order]
    first = np.searchsorted(lat, np.arange(N))
    rank = np.arange(len(lat)) - first[lat]
    keep = rank < T
    out_v, out_r = np.zeros_like(top_v), np.full_like(top_r, -1)
    out_v[lat[keep], rank[keep]] = val[keep]
    out_r[lat[keep], rank[keep]] = row[keep]
    return out_v, out_r


def latent_stats(sae: SAE, store: ActivationStore, layer: int, top_n: int = 8, select=None) -> LatentStats:
    """Streams the store through the SAE; `select(rows_Rx3) -> bool [R]` restricts the rows."""
    N = sae.width
    cnt, s, ss, mx = np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(N)
    top_v, top_r = np.zeros((N, top_n), np.float32), np.full((N, top_n, 3), -1, np.int64)
    total = 0
    for x, rows in store.iter_chunks(store.check_layer(layer)):
        if select is not None:
            keep = select(rows)
            x, rows = x[keep], rows[keep]
        if not len(x):
            continue
        v_RxK, i_RxK = sae.encode(x)
        active = v_RxK > 0
        lat, val = i_RxK[active], v_RxK[active]
        np.add.at(cnt, lat, 1)
        np.add.at(s, lat, val)
        np.add.at(ss, lat, val.astype(np.float64) ** 2)
        np.maximum.at(mx, lat, val)
        row_E = np.repeat(rows.astype(np.int64), active.sum(1), axis=0)
        top_v, top_r = _merge_top(top_v, top_r, val, lat, row_E, top_n)
        total += len(x)
    n = max(total, 1)
    return LatentStats(total, cnt / n, s / n, ss / n, mx, top_v, top_r)


def top_examples(stats: LatentStats, store: ActivationStore, latent: int, tokenizer, window: int = 16) -> list[dict]:
    """The latent's top activations as text: `window` tokens of context ending at the activating token."""
    examples = store.examples()
    out = []
    for v, (ex, pos, tok) in zip(stats.top_values_NxT[latent], stats.top_rows_NxTx3[latent]):
        if v <= 0 or ex < 0:
            continue
        ids = examples[ex]["ids"]
        if pos < 0:  # a pooled row (a response mean): show the start of the response
            start = examples[ex]["response_start"]
            context, token = tokenizer.decode(ids[start: start + window]), ""
        else:
            context, token = tokenizer.decode(ids[max(0, pos - window + 1): pos]), tokenizer.decode([ids[pos]])
        out.append({"value": float(v), "example": int(ex), "position": int(pos), "context": context, "token": token})
    return out
