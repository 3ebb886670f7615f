"""NumPy float64 reference for the GRPO math, written from the papers' formulas (not from rl/grpo.py).

Deliberately plain: loops over groups and sequences, each sequence's valid tokens picked by index. `policy_loss`
accepts any leading dimensions on `logp` (K perturbed copies at once), which `finite_difference_grad` uses to get
the reference gradient by float64 central differences.
"""

from __future__ import annotations

import numpy as np


def combine_rewards(rewards_BxR, weights_R):
    """sum_k w_k r_ik over the functions that applied (non-NaN); NaN when none applied."""
    rewards_BxR = np.asarray(rewards_BxR, np.float64)
    out = np.empty(rewards_BxR.shape[0])
    for i, row in enumerate(rewards_BxR):
        applied = [w * r for w, r in zip(weights_R, row) if not np.isnan(r)]
        out[i] = sum(applied) if applied else np.nan
    return out


def advantages(rewards_B, num_generations, scale_rewards, eps=1e-4):
    """(r - group mean) / (std + eps); std unbiased (ddof 1) over the group or the batch; NaNs left out -> 0."""
    r = np.asarray(rewards_B, np.float64)
    scored = r[~np.isnan(r)]
    batch_std = np.std(scored, ddof=1) if scored.size > 1 else np.nan
    out = np.zeros_like(r)
    for start in range(0, r.size, num_generations):
        group = r[start : start + num_generations]
        valid = group[~np.isnan(group)]
        if valid.size == 0:
            continue
        mean = valid.mean()
        group_std = np.std(valid, ddof=1) if valid.size > 1 else np.nan
        for j, x in enumerate(group):
            if np.isnan(x):
                continue
            if scale_rewards == "none":
                a = x - mean if valid.size > 1 else np.nan
            else:
                std = group_std if scale_rewards == "group" else batch_std
                a = (x - mean) / (std + eps)
            out[start + j] = 0.0 if np.isnan(a) else a
    return out


def frac_zero_std_groups(rewards_B, num_generations):
    r = np.asarray(rewards_B, np.float64).reshape(-1, num_generations)
    zero = []
    for group in r:
        valid = group[~np.isnan(group)]
        zero.append(valid.size > 1 and np.std(valid, ddof=1) <= 1e-8)
    return float(np.mean(zero))


def mask(lengths_B, truncated_B, length_T, mask_truncated):
    out = np.zeros((len(lengths_B), length_T))
    for i, (n, trunc) in enumerate(zip(lengths_B, truncated_B)):
        if not (mask_truncated and trunc):
            out[i, :n] = 1.0
    return out


def policy_loss(logp, old, ref, adv, mask_BxT, *, loss_type, level, beta, bias_kl, eps_low, eps_high, max_len):
    """Loss of the GRPO family, plus (for unbatched `logp`) TRL-named metrics. `logp` is [..., B, T]."""
    logp = np.asarray(logp, np.float64)
    num_seqs = mask_BxT.shape[0]
    total = np.zeros(logp.shape[:-2])
    n_tokens = int(mask_BxT.sum())
    kl_sum, clip = 0.0, {"low": 0.0, "high": 0.0, "region": 0.0}
    for i in range(num_seqs):
        toks = np.flatnonzero(mask_BxT[i])
        if toks.size == 0:  # a fully masked row adds no loss; at sequence level it still counts, unclipped
            continue
        lp = logp[..., i, toks]
        a = adv[i]
        if level == "token":
            ratio = np.exp(lp - old[i, toks])  # pi_theta / pi_old per token (GRPO, DAPO)
        else:  # GSPO: s_i = exp(mean_t log(pi_theta / pi_old)), shared by the sequence's tokens
            s = np.exp(np.mean(lp - old[i, toks], axis=-1, keepdims=True))
            ratio = np.broadcast_to(s, lp.shape)
        clipped = np.clip(ratio, 1 - eps_low, 1 + eps_high)
        surrogate = np.minimum(ratio * a, clipped * a)
        d = ref[i, toks] - lp if beta else 0.0
        kl = np.exp(d) - d - 1.0 if beta else np.zeros_like(lp)
        if beta and bias_kl:
            kl = kl * ratio
        per_token = -surrogate + beta * kl
        if loss_type == "grpo":
            total = total + per_token.sum(-1) / toks.size
        else:
            total = total + per_token.sum(-1)
        if logp.ndim == 2:
            kl_sum += kl.sum()
            low, high = (ratio < 1 - eps_low) & (a < 0), (ratio > 1 + eps_high) & (a > 0)
            # Token level: count tokens; sequence level: count sequences (all of them, as TRL).
            take = (lambda x: float(x.sum())) if level == "token" else (lambda x: float(x[0]))
            clip["low"] += take(low)
            clip["high"] += take(high)
            clip["region"] += take(low | high)
    norm = {"grpo": num_seqs, "bnpo": max(n_tokens, 1), "dapo": max(n_tokens, 1), "dr_grpo": num_seqs * max_len}
    value = total / norm[loss_type]
    if logp.ndim != 2:
        return value
    clip_count = max(n_tokens, 1) if level == "token" else num_seqs
    metrics = {f"clip_ratio/{k}_mean": v / clip_count for k, v in clip.items()}
    if beta:
        metrics["kl"] = kl_sum / max(n_tokens, 1)
    return float(value), metrics


def finite_difference_grad(fn, x_BxT, h=1e-6):
    """Central differences of a scalar fn of a [B, T] array, all coordinates at once (fn takes [..., B, T])."""
    x = np.asarray(x_BxT, np.float64)
    n = x.size
    eye = np.eye(n).reshape(n, *x.shape)
    plus, minus = fn(x[None] + h * eye), fn(x[None] - h * eye)
    return ((plus - minus) / (2 * h)).reshape(x.shape)
