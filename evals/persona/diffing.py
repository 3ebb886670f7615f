"""Model diffing: which SAE latents and directions change between two checkpoints on the same data.

Capture one dataset with the model before and after a fine-tune (two stores, same examples),
then rank:
- SAE latents by the change of their mean activation (Wang et al. 2025 found the "toxic
  persona" latent at the top of this list after narrow misaligned fine-tuning), with the change
  also in units of the latent's spread before (`effect`), so rare latents are comparable;
- named directions (persona, probe, ...) by the change of the mean projection on them;
- and the raw mean shift itself, `mean_shift`: the direction the residual moved, with no SAE.

Legend: N latents, D model width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from engine.errors import UserError
from evals.persona.directions import Direction, project
from evals.persona.latents import LatentStats, latent_stats
from evals.persona.sae import SAE
from evals.persona.store import ActivationStore, stream_moments


@dataclasses.dataclass(frozen=True)
class LatentChange:
    latent: int
    mean_before: float  # mean activation (zeros included)
    mean_after: float
    freq_before: float  # fraction of rows where it fires
    freq_after: float
    delta: float  # mean_after - mean_before
    effect: float  # delta / pooled std of the activation: comparable across latents


@dataclasses.dataclass(frozen=True)
class DirectionChange:
    name: str
    mean_before: float  # mean projection on the unit direction
    mean_after: float
    std_before: float
    delta: float
    effect: float  # delta / pooled std of the projection


def _paired(before: ActivationStore, after: ActivationStore, layer: int) -> None:
    for s in (before, after):
        s.check_layer(layer)
    if before.d_model != after.d_model:
        raise UserError(f"{after.path}: width {after.d_model} differs from {before.path} ({before.d_model})")


def rank_latents(sae: SAE, before: ActivationStore, after: ActivationStore, layer: int, by: str = "delta",
                 stats: tuple[LatentStats, LatentStats] | None = None) -> list[LatentChange]:
    """Every latent, sorted by `by` ("delta" or "effect"), largest increase first.

    Pass precomputed `stats` (before, after) to reuse them (e.g. for top examples).
    """
    if by not in ("delta", "effect"):
        raise UserError(f"option 'by': expected delta or effect, got {by!r}")
    _paired(before, after, layer)
    sb, sa = stats or (latent_stats(sae, before, layer), latent_stats(sae, after, layer))
    delta = sa.mean_N - sb.mean_N
    pooled = np.sqrt(0.5 * (sb.std_N**2 + sa.std_N**2))
    effect = np.where(pooled > 0, delta / np.maximum(pooled, 1e-12), 0.0)
    key = delta if by == "delta" else effect
    order = np.argsort(-key, kind="stable")
    return [LatentChange(int(i), float(sb.mean_N[i]), float(sa.mean_N[i]), float(sb.freq_N[i]), float(sa.freq_N[i]),
                         float(delta[i]), float(effect[i])) for i in order]


def rank_directions(directions: Sequence[Direction], before: ActivationStore, after: ActivationStore,
                    layer: int) -> list[DirectionChange]:
    """Directions at `layer` sorted by |effect| of the change of mean projection, largest first."""
    _paired(before, after, layer)
    out = []
    for d in directions:
        if d.layer != layer:
            raise UserError(f"direction '{d.name}' is at layer {d.layer}, the stores are compared at {layer}")
        pb, pa = project(before, layer, d), project(after, layer, d)
        pooled = np.sqrt(0.5 * (pb.var() + pa.var()))
        delta = float(pa.mean() - pb.mean())
        out.append(DirectionChange(d.name, float(pb.mean()), float(pa.mean()), float(pb.std()), delta,
                                   delta / max(float(pooled), 1e-12)))
    return sorted(out, key=lambda c: -abs(c.effect))


def mean_shift(before: ActivationStore, after: ActivationStore, layer: int, name: str = "mean_shift") -> Direction:
    """mean(after) - mean(before): the direction the residual moved between the checkpoints."""
    _paired(before, after, layer)
    mu_b, _, nb = stream_moments(before, layer)
    mu_a, _, na = stream_moments(after, layer)
    v = (mu_a - mu_b).astype(np.float32)
    return Direction(name, layer, v, {"norm": float(np.linalg.norm(v)), "n_before": nb, "n_after": na})


def decoder_cosines(sae: SAE, direction: Direction) -> np.ndarray:
    """[N] cosine of every decoder row with a direction (which latents write along it)."""
    w = np.asarray(sae.params.w_dec_NxD, np.float32)
    return (w @ direction.unit_D) / np.maximum(np.linalg.norm(w, axis=1), 1e-12)
