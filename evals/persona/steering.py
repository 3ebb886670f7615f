"""Steering: add (or ablate) a direction during generation through the sampler's `steer=` hook,
with coefficient sweeps and a coherence guard.

A sweep generates greedy completions of the same prompts at each coefficient alpha (one compiled
sampler program serves them all: alpha is a traced argument), scores each completion with a
behaviour function, and measures coherence two ways:
- `logprob`: the completion's mean per-token log-probability under the *unsteered* model. A
  steered model that still writes fluent text keeps it near the unsteered completions' value;
  gibberish or off-distribution text drops it by nats.
- `repetition`: the fraction of a completion's 4-grams that repeat an earlier 4-gram (degenerate
  loops are the usual failure of over-steering).
The guard marks a point incoherent when logprob falls more than `max_logprob_drop` below the
alpha = 0 point or repetition exceeds `max_repetition`; `guarded_range` reports the coefficients
that stay coherent, so a claimed behaviour shift is never read off broken text.

Legend: B sequences, L prompt length, T completion length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from engine.errors import UserError
from evals.persona.directions import Direction
from models.loader import Policy
from models.transformer import Steer
from rl.sampler import Rollout, Sampler, SamplingConfig
from models.tokenizer import encode_prompts
from rl.train_step import build_logps_fn
from engine.sharding import batch_sharding

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=64)  # sweeps compare coefficients, not samples
ScoreFn = Callable[[list[str], list], list[float]]  # (completions, items) -> per-item behaviour scores


@dataclasses.dataclass(frozen=True)
class SteerConfig:
    """Coefficient sweep and coherence guard."""

    alphas: tuple[float, ...] = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)  # multiples of the direction's own vector
    ablate: bool = False  # project the direction out first (then alpha = 0 is directional ablation)
    max_logprob_drop: float = 1.0  # guard: nats/token below the alpha = 0 completions' mean log-prob
    max_repetition: float = 0.3  # guard: fraction of repeated 4-grams
    batch_size: int = 32  # prompts per sampler call

    def __post_init__(self):
        object.__setattr__(self, "alphas", tuple(sorted({float(a) for a in (*self.alphas, 0.0)})))  # 0 = reference
        if self.max_logprob_drop <= 0 or not 0 < self.max_repetition <= 1 or self.batch_size < 1:
            raise UserError("steer: max_logprob_drop > 0, max_repetition in (0, 1], batch_size >= 1 expected")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    alpha: float
    score: float  # mean behaviour score
    logprob: float  # mean per-token log-prob of the completions under the unsteered model
    own_logprob: float  # the same under the steered model that wrote them (what the sampler recorded)
    repetition: float  # mean repeated-4-gram fraction
    coherent: bool  # passed the guard
    scores: list[float]  # per item
    texts: list[str]


def repetition_rate(ids_BxT: np.ndarray, mask_BxT: np.ndarray, n: int = 4) -> np.ndarray:
    """[B] fraction of each row's n-grams that already occurred earlier in the row (0 with < n + 1 tokens)."""
    out = np.zeros(len(ids_BxT))
    for b, (ids, m) in enumerate(zip(ids_BxT, mask_BxT)):
        toks = ids[m].tolist()
        grams = [tuple(toks[i: i + n]) for i in range(len(toks) - n + 1)]
        if len(grams) > 1:
            out[b] = 1.0 - len(set(grams)) / len(grams)
    return out


class CoherenceScorer:
    """Per-token log-probs of completions under a fixed (unsteered) copy of the policy's weights."""

    def __init__(self, policy: Policy, chunk: int = 64):
        graphdef, params = nnx.split(policy.model, nnx.Param)
        self.params = jax.tree.map(jnp.copy, params)  # frozen: later training does not move it
        self.fn, self.mesh = build_logps_fn(graphdef, chunk), policy.mesh

    def mean_logprob(self, r: Rollout) -> np.ndarray:
        """[B] mean log-prob per generated token (NaN for empty completions)."""
        ids = np.concatenate([r.prompt_ids_BxL, r.completion_ids_BxT], 1).astype(np.int32)
        mask = np.concatenate([r.prompt_mask_BxL, r.completion_mask_BxT], 1)
        if self.mesh is not None:
            ids, mask = (jax.device_put(x, batch_sharding(self.mesh, 2)) for x in (ids, mask))
        logps = np.asarray(jax.device_get(self.fn(self.params, ids, mask, r.completion_ids_BxT.shape[1])))
        n = r.completion_mask_BxT.sum(1)
        return np.where(n > 0, (logps * r.completion_mask_BxT).sum(1) / np.maximum(n, 1), np.nan)


def rollouts(sampler: Sampler, policy: Policy, prompt_ids: Sequence[Sequence[int]], steer: Steer | None,
             batch_size: int) -> list[tuple[range, Rollout]]:
    """Greedy rollouts in fixed-size batches (the last padded with copies of its first prompt)."""
    out = []
    for s in range(0, len(prompt_ids), batch_size):
        part = list(prompt_ids[s: s + batch_size])
        n = len(part)
        size = min(batch_size, len(prompt_ids))
        r = sampler(policy, part + [part[0]] * (size - n), steer=steer)
        out.append((range(s, s + n), r))
    return out


def sweep(policy: Policy, prompts: Sequence[list[dict]], direction: Direction, score_fn: ScoreFn,
          items: Sequence | None = None, cfg: SteerConfig = SteerConfig(), sampling: SamplingConfig = GREEDY,
          sampler: Sampler | None = None) -> list[SweepPoint]:
    """Steers generation at every alpha of `cfg`; scores, coherence and texts per point (alpha ascending).

    Pass a `sampler` (built with `sampling`) to reuse its compiled programs across sweeps.
    """
    if not prompts:
        raise UserError("steer: no prompts")
    if not 0 <= direction.layer <= policy.config.num_hidden_layers:
        raise UserError(f"direction '{direction.name}': layer {direction.layer} is not a residual layer of the model")
    items = list(prompts) if items is None else list(items)
    ids = encode_prompts(policy.tokenizer, prompts)
    sampler, scorer = sampler or Sampler(sampling), CoherenceScorer(policy)
    vec = jnp.asarray(direction.vector_D, jnp.float32)
    raw = []
    for alpha in cfg.alphas:
        texts, lp, own, rep = [""] * len(ids), np.zeros(len(ids)), np.zeros(len(ids)), np.zeros(len(ids))
        steer = Steer(direction.layer, vec, jnp.float32(alpha), cfg.ablate)
        for rows, r in rollouts(sampler, policy, ids, steer, cfg.batch_size):
            k = len(rows)
            lp[rows.start: rows.stop] = scorer.mean_logprob(r)[:k]
            n = np.maximum(r.completion_mask_BxT.sum(1), 1)
            own[rows.start: rows.stop] = ((r.logprobs_BxT * r.completion_mask_BxT).sum(1) / n)[:k]
            rep[rows.start: rows.stop] = repetition_rate(r.completion_ids_BxT, r.completion_mask_BxT)[:k]
            texts[rows.start: rows.stop] = r.texts[:k]
        scores = [float(s) for s in score_fn(texts, items)]
        raw.append((alpha, scores, float(np.nanmean(lp)), float(own.mean()), float(rep.mean()), texts))
    base_lp = next(r[2] for r in raw if r[0] == 0.0)
    return [SweepPoint(a, float(np.mean(s)), lp, own, rep,
                       bool(lp >= base_lp - cfg.max_logprob_drop and rep <= cfg.max_repetition), s, t)
            for a, s, lp, own, rep, t in raw]


def guarded_range(points: Sequence[SweepPoint]) -> tuple[float, float]:
    """(lowest, highest) alpha of the contiguous coherent run around alpha = 0."""
    alphas = [p.alpha for p in points]
    i0 = alphas.index(0.0)
    lo = hi = i0
    while lo > 0 and points[lo - 1].coherent:
        lo -= 1
    while hi < len(points) - 1 and points[hi + 1].coherent:
        hi += 1
    return alphas[lo], alphas[hi]
