"""GRPO math: reward combination, group advantages, the clipped policy loss with KL, and its metrics.

Small pure functions, each jittable; the learner composes them. Dimension legend:

    B  sequences in the optimizer batch (B = P * G; groups contiguous: rows [p*G, (p+1)*G) share prompt p)
    P  prompts, G generations per prompt (`num_generations`)
    T  completion positions (padded; T <= `max_completion_length` in practice)
    R  reward functions

Papers, and the symbols used in the docstrings below:

    GRPO      Shao et al. 2024, "DeepSeekMath" (arXiv 2402.03300), Eq. 3/4: per-token ratio
              r_it = pi_theta(o_it) / pi_old(o_it), outcome advantage A_i = (R_i - mean(R)) / std(R),
              objective 1/G sum_i 1/|o_i| sum_t [min(r_it A_i, clip(r_it, 1-eps, 1+eps) A_i) - beta D_KL],
              D_KL the k3 estimator pi_ref/pi_theta - log(pi_ref/pi_theta) - 1.
    DAPO      Yu et al. 2025 (arXiv 2503.14476): clip-higher (eps_low, eps_high), token-level normalisation
              1 / sum_i |o_i| over the batch, overlong filtering (mask truncated samples), no KL.
    Dr. GRPO  Liu et al. 2025, "Understanding R1-Zero-like training" (arXiv 2503.20783): drops the 1/|o_i|
              length normalisation and the std scaling of advantages; sums tokens over a constant.
    GSPO      Zheng et al. 2025 (arXiv 2507.18071): sequence-level ratio
              s_i = (pi_theta(o_i) / pi_old(o_i))^(1/|o_i|) = exp(1/|o_i| sum_t log r_it), clipped per sequence.

Option names and defaults follow TRL's `GRPOConfig` (trl 1.x); where TRL's semantics differ from a paper the
docstring says which one we follow and why.

Gradient accumulation. `loss` is split into `loss_terms` (a micro-batch's share of the loss, plus additive
statistics) and `loss_normalizer` (computed once over the whole optimizer batch). For micro-batches b_k of the
batch,

    N = loss_normalizer(mask_BxT, cfg)
    sum_k loss_terms(<b_k slices>, cfg, N)[0] == loss(<whole batch>, cfg)[0]

exactly (up to float summation order) for every `loss_type`, so summing the micro-batch gradients gives the
full-batch gradient, whatever the micro-batch sizes. Summing the `LossStats` of the micro-batches and calling
`loss_metrics` gives the full-batch metrics. Rows whose mask is all zero add nothing to the loss, its gradient or
the token statistics, so micro-batches may be padded to one size for `jax.lax.scan`; compute N on the real rows
then (grpo and dr_grpo count rows, and so do the sequence-level clip fractions).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from engine.errors import UserError

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
SCALE_REWARDS = ("group", "batch", "none")

# TRL flags a group's reward std as zero with torch.isclose(std, 0), i.e. |std| <= atol = 1e-8.
_ZERO_STD_ATOL = 1e-8


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """GRPO objective options, named as in TRL's `GRPOConfig`; validated on construction (`UserError`)."""

    # G: completions sampled per prompt; advantages are normalised within each group of G (TRL requires >= 2).
    num_generations: int = 8
    # Longest completion the sampler produces; also dr_grpo's constant length normaliser. None: the caller's
    # sampler decides (`traitrl train` sets it to sampling.max_new_tokens).
    max_completion_length: int | None = None
    # mu: optimizer passes over each rollout batch, reusing the sampler's old log-probs (GRPO Alg. 1).
    num_iterations: int = 1
    # How token losses are aggregated: grpo (per-sequence mean, then mean over sequences) | bnpo | dapo
    # (token mean over the optimizer batch) | dr_grpo (token sum / (B * max_completion_length)). TRL's default.
    loss_type: Literal["grpo", "bnpo", "dapo", "dr_grpo"] = "dapo"
    # Weight of the k3 KL penalty to the frozen reference; 0.0 (TRL's default) keeps no reference model.
    beta: float = 0.0
    # eps_low: the ratio is clipped below at 1 - epsilon.
    epsilon: float = 0.2
    # eps_high: the ratio is clipped above at 1 + epsilon_high (DAPO clip-higher, 0.28 there); None -> epsilon.
    epsilon_high: float | None = None
    # token: one ratio per token (GRPO, DAPO) | sequence: one length-normalised ratio per sequence (GSPO).
    importance_sampling_level: Literal["token", "sequence"] = "token"
    # Advantage scaling: group (divide by the group's std) | batch (by the whole batch's std) | none (Dr. GRPO).
    scale_rewards: Literal["group", "batch", "none"] = "group"
    # Added to the std before dividing the advantages (TRL hard-codes 1e-4).
    advantage_eps: float = 1e-4
    # Multiply the per-token KL by the unclipped importance ratio, gradient flowing through it (DeepSeek-V3.2's
    # unbiased KL estimate under samples from pi_old). No effect when beta == 0, as in TRL.
    use_bias_correction_kl: bool = False
    # DAPO overlong filtering: completions that hit max_completion_length without EOS get no loss (their rewards
    # still count in the group statistics, as in TRL).
    mask_truncated_completions: bool = False
    # One weight per reward function for the weighted sum of rewards; None -> all 1.0.
    reward_weights: tuple[float, ...] | None = None

    @property
    def uses_reference(self) -> bool:
        """Whether a frozen reference model is kept and its KL penalised (beta != 0): the one place this is decided."""
        return self.beta != 0.0

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(f"GRPOConfig: {msg}")

        def is_int(x: object) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        def is_real(x: object) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        need(self.loss_type in LOSS_TYPES, f"loss_type must be one of {'|'.join(LOSS_TYPES)}, got {self.loss_type!r}")
        need(
            self.importance_sampling_level in IMPORTANCE_SAMPLING_LEVELS,
            f"importance_sampling_level must be token|sequence, got {self.importance_sampling_level!r}",
        )
        need(
            self.scale_rewards in SCALE_REWARDS,
            f"scale_rewards must be group|batch|none, got {self.scale_rewards!r}",
        )
        need(
            is_int(self.num_generations) and self.num_generations >= 2,
            f"num_generations must be an integer >= 2 (a group needs a std), got {self.num_generations!r}",
        )
        need(
            self.max_completion_length is None or (is_int(self.max_completion_length) and self.max_completion_length >= 1),
            f"max_completion_length must be an integer >= 1, got {self.max_completion_length!r}",
        )
        need(
            is_int(self.num_iterations) and self.num_iterations >= 1,
            f"num_iterations must be an integer >= 1, got {self.num_iterations!r}",
        )
        need(is_real(self.beta) and self.beta >= 0, f"beta must be a finite number >= 0, got {self.beta!r}")
        need(
            is_real(self.epsilon) and 0 <= self.epsilon < 1,
            f"epsilon must be in [0, 1) (the lower clip bound is 1 - epsilon), got {self.epsilon!r}",
        )
        need(
            self.epsilon_high is None or (is_real(self.epsilon_high) and self.epsilon_high >= 0),
            f"epsilon_high must be None or a finite number >= 0, got {self.epsilon_high!r}",
        )
        need(
            is_real(self.advantage_eps) and self.advantage_eps > 0,
            f"advantage_eps must be a finite number > 0, got {self.advantage_eps!r}",
        )
        need(
            isinstance(self.use_bias_correction_kl, bool),
            f"use_bias_correction_kl must be a bool, got {self.use_bias_correction_kl!r}",
        )
        need(
            isinstance(self.mask_truncated_completions, bool),
            f"mask_truncated_completions must be a bool, got {self.mask_truncated_completions!r}",
        )
        if self.reward_weights is not None:
            weights = tuple(self.reward_weights)  # a list from the CLI; a tuple keeps the config hashable for jit
            need(
                len(weights) >= 1 and all(is_real(w) for w in weights),
                f"reward_weights must be None or a non-empty list of finite numbers, got {self.reward_weights!r}",
            )
            object.__setattr__(self, "reward_weights", tuple(float(w) for w in weights))

    @property
    def clip_low(self) -> float:
        """Lower clip bound of the ratio, 1 - eps_low."""
        return 1.0 - self.epsilon

    @property
    def clip_high(self) -> float:
        """Upper clip bound of the ratio, 1 + eps_high (epsilon_high None -> epsilon, as TRL)."""
        return 1.0 + (self.epsilon if self.epsilon_high is None else self.epsilon_high)


# --------------------------------------------------------------------------------------------------------------
# Rewards and advantages (host-side or jitted; small arrays)


def combine_rewards(rewards_BxR: jax.Array, weights_R=None) -> jax.Array:
    """Weighted sum of several reward functions' outputs: R_i = sum_k w_k r_ik over the applicable k.

    NaN marks "not applicable" (a reward function returned None). As in TRL, NaNs are skipped (nansum), and a row
    where every function is NaN stays NaN: such a completion is unscorable, `advantages` leaves it out of its
    group's mean/std and gives it advantage 0 (TRL does the same since it stopped collapsing it to reward 0).
    """
    r_BxR = jnp.asarray(rewards_BxR, dtype=float)
    if r_BxR.ndim != 2:
        raise ValueError(f"rewards_BxR must be 2-D [B, R], got shape {r_BxR.shape}")
    if weights_R is None:
        w_R = jnp.ones(r_BxR.shape[1], r_BxR.dtype)
    else:
        w_R = jnp.asarray(weights_R, r_BxR.dtype)
        if w_R.shape != (r_BxR.shape[1],):
            raise UserError(f"reward_weights has {w_R.size} weights but there are {r_BxR.shape[1]} reward functions")
    applicable_BxR = ~jnp.isnan(r_BxR)
    total_B = jnp.sum(jnp.where(applicable_BxR, r_BxR * w_R, 0.0), axis=1)
    return jnp.where(applicable_BxR.any(axis=1), total_B, jnp.nan)


def _grouped(rewards_B: jax.Array, cfg: GRPOConfig) -> jax.Array:
    r_B = jnp.asarray(rewards_B, dtype=float)
    if r_B.ndim != 1 or r_B.shape[0] % cfg.num_generations:
        raise UserError(
            f"num_generations={cfg.num_generations} must divide the number of completions, got rewards of shape "
            f"{r_B.shape}"
        )
    return r_B.reshape(-1, cfg.num_generations)


def advantages(rewards_B: jax.Array, cfg: GRPOConfig) -> jax.Array:
    """Group-relative advantages A_i = (R_i - mean_group(R)) / (std(R) + eps), one per completion.

    GRPO (DeepSeekMath Sec. 4.1.2, outcome supervision) normalises by the group's std; Dr. GRPO drops the std
    (`scale_rewards="none"`: it biases towards questions of low reward variance); `"batch"` divides by the std of
    the whole batch but still subtracts the group mean (TRL's "batch", from PPO-Lite). As in TRL: the std is the
    unbiased one (n - 1, torch.std's default), eps = `advantage_eps` = 1e-4, NaN rewards (unscorable) are left out
    of means and stds and get advantage 0, and a group with fewer than two scorable rewards gets advantage 0.
    For `"batch"` the rewards must be the global batch (the learner computes advantages before sharding).
    """
    r_PxG = _grouped(rewards_B, cfg)
    mean_Px1 = jnp.nanmean(r_PxG, axis=1, keepdims=True)
    adv_PxG = r_PxG - mean_Px1
    if cfg.scale_rewards == "group":
        adv_PxG = adv_PxG / (jnp.nanstd(r_PxG, axis=1, ddof=1, keepdims=True) + cfg.advantage_eps)
    elif cfg.scale_rewards == "batch":
        adv_PxG = adv_PxG / (jnp.nanstd(r_PxG, ddof=1) + cfg.advantage_eps)
    # A NaN reward, or a NaN group std (fewer than two scorable values; then r - mean is 0 anyway), gives NaN:
    # no learning signal, advantage 0. jnp.where rather than nan_to_num, which would also rewrite infinities.
    return jnp.where(jnp.isnan(adv_PxG), 0.0, adv_PxG).reshape(-1)


def group_stats(rewards_B: jax.Array, cfg: GRPOConfig) -> dict[str, jax.Array]:
    """Reward metrics with TRL's names: `reward`, `reward_std` (over the batch) and `frac_reward_zero_std`.

    `frac_reward_zero_std` is the fraction of groups whose reward std is zero (all G completions scored alike:
    zero advantage, no gradient; DAPO's dynamic sampling filters exactly these). TRL computes it from the std used
    for scaling, so under `scale_rewards="batch"` it reports whether the *batch* std is zero; we always count
    groups, which is what the name says.
    """
    r_PxG = _grouped(rewards_B, cfg)
    std_P = jnp.nanstd(r_PxG, axis=1, ddof=1)
    return {
        "reward": jnp.nanmean(r_PxG),
        "reward_std": jnp.nanstd(r_PxG, ddof=1),
        "frac_reward_zero_std": jnp.mean(jnp.abs(std_P) <= _ZERO_STD_ATOL),
    }


def completion_mask(lengths_B: jax.Array, truncated_B: jax.Array, length_T: int, cfg: GRPOConfig) -> jax.Array:
    """Loss mask [B, T]: position t of row i is trained on iff t < lengths_B[i].

    `lengths_B` counts the completion's tokens including its EOS (TRL's completion_mask keeps the EOS);
    `truncated_B` is True where the completion hit max_completion_length without EOS. With
    `mask_truncated_completions` those rows are zeroed (DAPO's overlong filtering, TRL's option).
    """
    lengths_B = jnp.asarray(lengths_B)
    mask_BxT = jnp.arange(length_T)[None, :] < lengths_B[:, None]
    if cfg.mask_truncated_completions:
        mask_BxT = mask_BxT & ~jnp.asarray(truncated_B, bool)[:, None]
    return mask_BxT


# --------------------------------------------------------------------------------------------------------------
# Policy loss


class LossStats(NamedTuple):
    """Additive statistics of one micro-batch: sum them over micro-batches, then call `loss_metrics`."""

    kl_sum: jax.Array  # sum over masked tokens of the per-token KL (bias-corrected when enabled, as TRL logs it)
    token_count: jax.Array  # number of masked (trained-on) tokens
    clip_low_sum: jax.Array  # tokens (sequences, at sequence level) with ratio < 1 - eps_low and A < 0
    clip_high_sum: jax.Array  # tokens (sequences) with ratio > 1 + eps_high and A > 0
    clip_region_sum: jax.Array  # either of the two
    clip_count: jax.Array  # the clip fractions' denominator: token_count, or the number of sequences


def loss_normalizer(mask_BxT: jax.Array, cfg: GRPOConfig) -> jax.Array:
    """The denominator of the loss, computed once over the whole optimizer batch (all micro-batches, all devices).

    grpo: B (each sequence's token mean, averaged over sequences; fully masked rows count, as TRL's .mean());
    bnpo, dapo: the number of masked tokens (at least 1); dr_grpo: B * max_completion_length.
    """
    mask_BxT = jnp.asarray(mask_BxT)
    num_seqs = mask_BxT.shape[0]
    if cfg.loss_type == "grpo":
        return jnp.asarray(num_seqs, jnp.float32)
    if cfg.loss_type in ("bnpo", "dapo"):
        return jnp.maximum(jnp.sum(mask_BxT > 0, dtype=jnp.float32), 1.0)
    T = cfg.max_completion_length or mask_BxT.shape[1]  # None: the padded completion length (the sampler's cap)
    return jnp.asarray(num_seqs * T, jnp.float32)  # dr_grpo


def loss_terms(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    ref_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    cfg: GRPOConfig,
    normalizer: jax.Array,
) -> tuple[jax.Array, LossStats]:
    """One micro-batch's share of the GRPO loss (numerator / `normalizer`) and its additive statistics.

    Per token (minimised, so the objectives' signs flip):

        l_it = -min(w_it A_i, clip(w_it, 1 - eps_low, 1 + eps_high) A_i) + beta * k3_it [* w_it]
        k3_it = exp(ref_it - logp_it) - (ref_it - logp_it) - 1        (GRPO Eq. 4; Schulman's k3)

    w_it = exp(logp_it - old_it) at token level (GRPO; DAPO's clip-higher via eps_high), or at sequence level the
    GSPO ratio s_i = exp(sum_t m_it (logp_it - old_it) / max(|o_i|, 1)), the same for all tokens of row i. We
    differentiate s_i itself, which is GSPO's gradient, rather than building GSPO-token's stop-gradient form
    sg[s_i] * pi_it / sg[pi_it]: with one advantage per sequence the two have the same value and the same policy
    gradient for every loss_type (tested), and only the direct form gives TRL's bias-corrected KL, which multiplies
    the KL by s_i with its full gradient (through all of the row's tokens). The KL term `[* w_it]` is
    `use_bias_correction_kl` (unclipped ratio, gradient through it). Aggregation by `loss_type`:

        grpo:      sum_i (sum_t m_it l_it / max(|o_i|, 1))   / N,  N = B
        bnpo/dapo: sum_i sum_t m_it l_it                    / N,  N = sum_it m_it
        dr_grpo:   sum_i sum_t m_it l_it                    / N,  N = B * max_completion_length

    where N = `loss_normalizer` of the whole optimizer batch. TRL's bnpo divides by the tokens of the *local*
    micro-batch (so it depends on how the batch is split) and its dapo by the global token count; in one jitted
    step over the global batch both mean DAPO's token mean, so here they coincide (bnpo is kept as a name for
    TRL configs). At sequence level with bnpo/dapo/dr_grpo, as in TRL, each sequence's term is weighted by its
    length (TRL warns; loss_type="grpo" is GSPO's objective).

    `old_logps_BxT=None` means on-policy (num_iterations == 1): old = stop_gradient(logps), ratio 1, as TRL does.
    `ref_logps_BxT` may be None when beta == 0. Masked positions may hold anything (even inf): they are zeroed
    before use so neither values nor gradients see them. `logps_BxT` is the only input gradients are taken of.
    """
    if cfg.uses_reference and ref_logps_BxT is None:
        raise ValueError(f"beta={cfg.beta} needs ref_logps_BxT (reference log-probs), got None")
    valid_BxT = jnp.asarray(mask_BxT) > 0
    m_BxT = valid_BxT.astype(logps_BxT.dtype)

    def clean(x_BxT: jax.Array) -> jax.Array:
        return jnp.where(valid_BxT, x_BxT, 0.0)

    logp_BxT = clean(logps_BxT)
    old_BxT = jax.lax.stop_gradient(logp_BxT) if old_logps_BxT is None else clean(old_logps_BxT)
    adv_Bx1 = jnp.asarray(advantages_B, logp_BxT.dtype)[:, None]
    len_Bx1 = jnp.sum(m_BxT, axis=1, keepdims=True)

    log_ratio_BxT = logp_BxT - old_BxT
    if cfg.importance_sampling_level == "token":
        log_w = log_ratio_BxT  # [B, T]
    else:
        log_w = jnp.sum(log_ratio_BxT, axis=1, keepdims=True) / jnp.maximum(len_Bx1, 1.0)  # [B, 1]
    w = jnp.exp(log_w)
    w_clipped = jnp.clip(w, cfg.clip_low, cfg.clip_high)
    per_token_BxT = jnp.broadcast_to(-jnp.minimum(w * adv_Bx1, w_clipped * adv_Bx1), m_BxT.shape)

    kl_BxT = jnp.zeros_like(m_BxT)
    if cfg.uses_reference:
        delta_BxT = clean(ref_logps_BxT) - logp_BxT
        kl_BxT = jnp.exp(delta_BxT) - delta_BxT - 1.0
        if cfg.use_bias_correction_kl:
            kl_BxT = kl_BxT * w
        per_token_BxT = per_token_BxT + cfg.beta * kl_BxT

    masked_BxT = per_token_BxT * m_BxT
    if cfg.loss_type == "grpo":
        numerator = jnp.sum(jnp.sum(masked_BxT, axis=1, keepdims=True) / jnp.maximum(len_Bx1, 1.0))
    else:
        numerator = jnp.sum(masked_BxT)
    loss_share = numerator / normalizer

    # Clip fractions as TRL defines them: the ratio left the trust region on the side where clipping stops the
    # gradient (below for A < 0, above for A > 0). Metrics carry no gradient.
    w, kl_BxT = jax.lax.stop_gradient(w), jax.lax.stop_gradient(kl_BxT)
    low = ((w < cfg.clip_low) & (adv_Bx1 < 0)).astype(m_BxT.dtype)
    high = ((w > cfg.clip_high) & (adv_Bx1 > 0)).astype(m_BxT.dtype)
    region = jnp.maximum(low, high)
    token_count = jnp.sum(m_BxT)
    if cfg.importance_sampling_level == "token":
        clip_sums = [jnp.sum(x * m_BxT) for x in (low, high, region)]
        clip_count = token_count
    else:  # one ratio per sequence: TRL averages over all sequences
        clip_sums = [jnp.sum(x) for x in (low, high, region)]
        clip_count = jnp.asarray(m_BxT.shape[0], m_BxT.dtype)
    stats = LossStats(jnp.sum(kl_BxT * m_BxT), token_count, *clip_sums, clip_count)
    return loss_share, stats


def loss_metrics(stats: LossStats, cfg: GRPOConfig) -> dict[str, jax.Array]:
    """Means of (summed) `LossStats` under TRL's metric names; `kl` only when beta != 0, as in TRL."""
    clip_count = jnp.maximum(stats.clip_count, 1.0)
    metrics = {
        "clip_ratio/low_mean": stats.clip_low_sum / clip_count,
        "clip_ratio/high_mean": stats.clip_high_sum / clip_count,
        "clip_ratio/region_mean": stats.clip_region_sum / clip_count,
    }
    if cfg.uses_reference:
        metrics["kl"] = stats.kl_sum / jnp.maximum(stats.token_count, 1.0)
    return metrics


def loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    ref_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    cfg: GRPOConfig,
    normalizer: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO loss and metrics of a batch; see `loss_terms` for the formula and the papers.

    With `normalizer=None` the batch is the whole optimizer batch. Given the whole batch's `loss_normalizer`, the
    returned loss is this micro-batch's share (the shares sum to the full loss) and the metrics are this
    micro-batch's own; to aggregate metrics across micro-batches, sum `loss_terms`' stats instead.
    """
    if normalizer is None:
        normalizer = loss_normalizer(mask_BxT, cfg)
    value, stats = loss_terms(logps_BxT, old_logps_BxT, ref_logps_BxT, advantages_B, mask_BxT, cfg, normalizer)
    return value, loss_metrics(stats, cfg)
