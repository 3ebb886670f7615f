"""GRPO math against the NumPy float64 reference in grpo_reference.py.

The loss matrix: loss_type x importance_sampling_level x beta (0, > 0) x use_bias_correction_kl, one jit each;
inside each, scale_rewards x mask_truncated_completions vary only the (traced) advantages and mask. Each case
checks the full-batch loss, its gradient w.r.t. logps and its metrics, and the same from gradient accumulation
over uneven micro-batches (3, 5, 8 of 16), against the reference loss and its central-difference gradient.
"""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.errors import UserError
from rl import grpo
from tests.rl import grpo_reference as ref

B, G, T, MAX_LEN = 16, 4, 8, 12  # T < max_completion_length, so dr_grpo must use the config's length
SPLITS = (3, 5, 8)  # uneven micro-batches; the first holds only truncated rows
WEIGHTS = (1.0, 0.5)
TOL = {"rtol": 1e-5, "atol": 1e-6}


def make_batch(seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    rewards_BxR = rng.normal(size=(B, 2))
    rewards_BxR[4:8] = [1.0, 2.0]  # group 1: identical rewards -> zero std, zero advantage
    rewards_BxR[8:12, 0] = rng.integers(0, 2, 4)  # group 2: a binary verifier ...
    rewards_BxR[8:12, 1] = np.nan  # ... and a grader that does not apply to it
    rewards_BxR[13] = np.nan  # group 3: one unscorable completion
    lengths_B = rng.integers(1, T + 1, B)
    truncated_B = np.zeros(B, bool)
    truncated_B[[0, 1, 2, 9]] = True  # hit the length limit without EOS
    lengths_B[truncated_B] = T
    old_BxT = -rng.exponential(1.5, (B, T))
    # Token ratios around 1 +- 0.3 and a per-sequence drift, so both clip sides are hit at both levels.
    logps_BxT = old_BxT + rng.normal(0.0, 0.3, (B, T)) + rng.normal(0.0, 0.3, (B, 1))
    ref_BxT = old_BxT + rng.normal(0.0, 0.3, (B, T))
    pad_BxT = np.arange(T)[None, :] >= lengths_B[:, None]
    # Garbage beyond each completion: the loss must not see it, in value or gradient.
    old_BxT[pad_BxT], ref_BxT[pad_BxT], logps_BxT[pad_BxT] = -np.inf, np.inf, 30.0
    return {
        "rewards_BxR": rewards_BxR,
        "lengths_B": lengths_B,
        "truncated_B": truncated_B,
        "logps": logps_BxT,
        "old": old_BxT,
        "ref": ref_BxT,
    }


@functools.cache
def batch() -> dict:
    return make_batch()


def ref_loss_and_grad(b, adv, mask, cfg, old=None):
    old = b["old"] if old is None else old
    kw = {
        "loss_type": cfg.loss_type,
        "level": cfg.importance_sampling_level,
        "beta": cfg.beta,
        "bias_kl": cfg.use_bias_correction_kl,
        "eps_low": cfg.epsilon,
        "eps_high": cfg.epsilon if cfg.epsilon_high is None else cfg.epsilon_high,
        "max_len": cfg.max_completion_length,
    }
    value, metrics = ref.policy_loss(b["logps"], old, b["ref"], adv, mask, **kw)
    grad = ref.finite_difference_grad(lambda x: ref.policy_loss(x, old, b["ref"], adv, mask, **kw), b["logps"])
    return value, grad, metrics


def full_and_accumulated(cfg: grpo.GRPOConfig):
    """One jitted function: the full-batch loss and the same from micro-batches, each with d/d logps."""

    def full(logps, old, ref_lp, adv, mask):
        (value, metrics), grad = jax.value_and_grad(grpo.loss, has_aux=True)(logps, old, ref_lp, adv, mask, cfg)
        return value, grad, metrics

    def accumulated(logps, old, ref_lp, adv, mask):
        normalizer = grpo.loss_normalizer(mask, cfg)  # once, over the whole batch
        value, grads, stats, start = 0.0, [], None, 0
        for size in SPLITS:
            mb = [None if x is None else x[start : start + size] for x in (logps, old, ref_lp, adv, mask)]
            (share, mb_stats), grad = jax.value_and_grad(grpo.loss_terms, has_aux=True)(*mb, cfg, normalizer)
            value, start = value + share, start + size
            grads.append(grad)
            stats = mb_stats if stats is None else jax.tree.map(jnp.add, stats, mb_stats)
        return value, jnp.concatenate(grads), grpo.loss_metrics(stats, cfg)

    # 32 tiny graphs are compiled here: XLA's backend optimisation costs more time than it saves at this size.
    return jax.jit(
        lambda *args: (full(*args), accumulated(*args)), compiler_options={"xla_backend_optimization_level": 0}
    )


LOSS_CONFIGS = [
    {"loss_type": lt, "importance_sampling_level": lvl, "beta": beta, "use_bias_correction_kl": bias}
    for lt, lvl, beta, bias in itertools.product(grpo.LOSS_TYPES, ("token", "sequence"), (0.0, 0.1), (False, True))
]


@pytest.mark.parametrize("opts", LOSS_CONFIGS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_loss_matches_reference(opts):
    b = batch()
    base = grpo.GRPOConfig(
        num_generations=G, max_completion_length=MAX_LEN, epsilon=0.2, epsilon_high=0.28, reward_weights=WEIGHTS, **opts
    )
    step = full_and_accumulated(base)  # scale_rewards and mask_truncated_completions only change traced inputs
    logps, old = jnp.asarray(b["logps"], jnp.float32), jnp.asarray(b["old"], jnp.float32)
    ref_lp = jnp.asarray(b["ref"], jnp.float32) if base.beta else None  # no reference model when beta == 0
    for scale, mask_trunc in itertools.product(grpo.SCALE_REWARDS, (False, True)):
        cfg = dataclasses.replace(base, scale_rewards=scale, mask_truncated_completions=mask_trunc)
        rewards = grpo.combine_rewards(b["rewards_BxR"], cfg.reward_weights)
        adv = grpo.advantages(rewards, cfg)
        mask = grpo.completion_mask(b["lengths_B"], b["truncated_B"], T, cfg)
        adv_np = ref.advantages(ref.combine_rewards(b["rewards_BxR"], WEIGHTS), G, scale)
        mask_np = ref.mask(b["lengths_B"], b["truncated_B"], T, mask_trunc)
        np.testing.assert_allclose(adv, adv_np, **TOL)
        np.testing.assert_array_equal(mask, mask_np)

        want_value, want_grad, want_metrics = ref_loss_and_grad(b, adv_np, mask_np, cfg)
        for value, grad, metrics in step(logps, old, ref_lp, adv, mask):
            np.testing.assert_allclose(value, want_value, **TOL, err_msg=f"loss {scale=} {mask_trunc=}")
            np.testing.assert_allclose(grad, want_grad, **TOL, err_msg=f"grad {scale=} {mask_trunc=}")
            assert metrics.keys() == want_metrics.keys()
            for name, want in want_metrics.items():
                np.testing.assert_allclose(metrics[name], want, **TOL, err_msg=name)
        if mask_trunc:
            assert not mask[:3].any()  # the first micro-batch contributes nothing, without NaNs
    # The data exercises every branch: both clip sides, and a zero-advantage group.
    _, _, full_metrics = step(logps, old, ref_lp, adv, mask)[0]
    assert float(full_metrics["clip_ratio/low_mean"]) > 0 and float(full_metrics["clip_ratio/high_mean"]) > 0


@pytest.mark.parametrize("loss_type,level", [("dapo", "token"), ("grpo", "sequence")])
def test_on_policy_old_logps_none(loss_type, level):
    """old_logps=None (num_iterations == 1): ratio 1 with pi_old = stop_gradient(pi_theta), bias-corrected KL on."""
    b = batch()
    cfg = grpo.GRPOConfig(
        num_generations=G,
        max_completion_length=MAX_LEN,
        loss_type=loss_type,
        importance_sampling_level=level,
        beta=0.1,
        use_bias_correction_kl=True,
    )
    adv = grpo.advantages(grpo.combine_rewards(b["rewards_BxR"]), cfg)
    mask = grpo.completion_mask(b["lengths_B"], b["truncated_B"], T, cfg)
    fn = jax.jit(jax.value_and_grad(grpo.loss, has_aux=True), static_argnames="cfg")
    (value, metrics), grad = fn(jnp.asarray(b["logps"], jnp.float32), None, jnp.asarray(b["ref"]), adv, mask, cfg=cfg)
    want_value, want_grad, want_metrics = ref_loss_and_grad(
        b, np.asarray(adv, np.float64), np.asarray(mask), cfg, old=b["logps"]
    )
    np.testing.assert_allclose(value, want_value, **TOL)
    np.testing.assert_allclose(grad, want_grad, **TOL)
    assert float(metrics["clip_ratio/region_mean"]) == 0.0
    np.testing.assert_allclose(metrics["kl"], want_metrics["kl"], **TOL)


def test_sequence_level_gradient_equals_gspo_token_form():
    """With one advantage per sequence, differentiating GSPO's s_i directly gives the gradient of GSPO-token's
    s_it = sg[s_i] * pi_theta(y_it) / sg[pi_theta(y_it)], for every loss_type (no KL)."""
    b = batch()
    mask = jnp.asarray(ref.mask(b["lengths_B"], b["truncated_B"], T, False))
    logps, old = jnp.asarray(np.where(mask, b["logps"], 0.0)), jnp.asarray(np.where(mask, b["old"], 0.0))
    adv = jnp.asarray(ref.advantages(ref.combine_rewards(b["rewards_BxR"], (1.0, 1.0)), G, "group"), jnp.float32)
    lengths = jnp.maximum(mask.sum(1, keepdims=True), 1.0)

    def gspo_token(lp, cfg):
        s = jnp.exp(jnp.sum((lp - old) * mask, 1, keepdims=True) / lengths)
        s_it = jax.lax.stop_gradient(s) * jnp.exp(lp - jax.lax.stop_gradient(lp))
        per_token = -jnp.minimum(s_it * adv[:, None], jnp.clip(s_it, cfg.clip_low, cfg.clip_high) * adv[:, None])
        if cfg.loss_type == "grpo":
            return jnp.sum(jnp.sum(per_token * mask, 1) / lengths[:, 0]) / B
        return jnp.sum(per_token * mask) / grpo.loss_normalizer(mask, cfg)

    @jax.jit
    def both_grads(lp):
        out = {}
        for loss_type in grpo.LOSS_TYPES:
            cfg = grpo.GRPOConfig(num_generations=G, max_completion_length=MAX_LEN, loss_type=loss_type)
            seq_cfg = dataclasses.replace(cfg, importance_sampling_level="sequence")
            got = jax.grad(lambda x, c=seq_cfg: grpo.loss(x, old, None, adv, mask, c)[0])(lp)
            out[loss_type] = got, jax.grad(gspo_token)(lp, cfg)
        return out

    for loss_type, (got, want) in both_grads(logps).items():
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=loss_type)


def test_advantages_and_group_stats():
    rewards = np.array([0.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0, 1.0, np.nan, 4.0, 0.5, 3.0, np.nan, np.nan, np.nan])
    for scale in grpo.SCALE_REWARDS:
        cfg = grpo.GRPOConfig(num_generations=4, scale_rewards=scale)
        adv = grpo.advantages(rewards, cfg)
        np.testing.assert_allclose(adv, ref.advantages(rewards, 4, scale), **TOL, err_msg=scale)
        assert np.all(np.asarray(adv)[4:8] == 0.0)  # zero-std group
        assert np.all(np.asarray(adv)[12:] == 0.0)  # one scorable reward: no baseline, no signal
    # group std: unbiased; (1 - 0.5) / (std([0, 1, 1, 0], ddof=1) + 1e-4)
    adv = grpo.advantages(rewards, grpo.GRPOConfig(num_generations=4))
    np.testing.assert_allclose(adv[1], 0.5 / (np.std([0, 1, 1, 0], ddof=1) + 1e-4), rtol=1e-6)
    stats = grpo.group_stats(rewards, grpo.GRPOConfig(num_generations=4))
    assert float(stats["frac_reward_zero_std"]) == 0.25 == ref.frac_zero_std_groups(rewards, 4)
    np.testing.assert_allclose(stats["reward"], np.nanmean(rewards), rtol=1e-6)
    np.testing.assert_allclose(stats["reward_std"], np.nanstd(rewards, ddof=1), rtol=1e-6)
    all_equal = grpo.group_stats(np.ones(8), grpo.GRPOConfig(num_generations=4, scale_rewards="batch"))
    assert float(all_equal["frac_reward_zero_std"]) == 1.0
    with pytest.raises(UserError, match="num_generations"):
        grpo.advantages(np.zeros(6), grpo.GRPOConfig(num_generations=4))


def test_combine_rewards():
    rewards = np.array([[1.0, 2.0], [np.nan, 2.0], [1.0, np.nan], [np.nan, np.nan]])
    got = np.asarray(grpo.combine_rewards(rewards, (2.0, -1.0)))
    np.testing.assert_allclose(got, ref.combine_rewards(rewards, (2.0, -1.0)))
    np.testing.assert_allclose(got[:3], [0.0, -2.0, 2.0])
    assert np.isnan(got[3])
    np.testing.assert_allclose(grpo.combine_rewards(rewards[:3]), [3.0, 2.0, 1.0])
    with pytest.raises(UserError, match="reward_weights"):
        grpo.combine_rewards(rewards, (1.0,))


@pytest.mark.parametrize(
    "option,value",
    [
        ("loss_type", "ppo"),
        ("importance_sampling_level", "sentence"),
        ("scale_rewards", True),
        ("num_generations", 1),
        ("max_completion_length", 0),
        ("num_iterations", 0),
        ("beta", -0.1),
        ("beta", float("nan")),
        ("epsilon", 1.0),
        ("epsilon_high", -0.1),
        ("advantage_eps", 0.0),
        ("use_bias_correction_kl", "yes"),
        ("mask_truncated_completions", 1),
        ("reward_weights", ()),
        ("reward_weights", (1.0, float("inf"))),
    ],
)
def test_config_validation(option, value):
    with pytest.raises(UserError, match=option) as err:
        grpo.GRPOConfig(**{option: value})
    assert "\n" not in str(err.value)


def test_config_defaults_follow_trl():
    cfg = grpo.GRPOConfig(reward_weights=[1, 2])
    assert (cfg.loss_type, cfg.beta, cfg.epsilon, cfg.scale_rewards) == ("dapo", 0.0, 0.2, "group")
    assert (cfg.clip_low, cfg.clip_high) == (0.8, 1.2)
    assert cfg.reward_weights == (1.0, 2.0) and hash(cfg)  # hashable: usable as a static jit argument
    assert grpo.GRPOConfig(epsilon_high=0.28).clip_high == 1.28
    with pytest.raises(ValueError, match="ref_logps_BxT"):
        grpo.loss(jnp.zeros((2, 3)), None, None, jnp.zeros(2), jnp.ones((2, 3)), grpo.GRPOConfig(beta=0.04))
