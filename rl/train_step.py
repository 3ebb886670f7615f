"""The jitted, sharded GRPO and SFT steps, built on the generic state and plumbing of `engine.train_state`.

A batch of B sequences is split into M micro-batches scanned with `lax.scan`; gradients are summed
(each micro-batch's loss is already its share of the whole batch's loss, see `rl.grpo.loss_terms`),
clipped by global norm, and applied by AdamW.

The reference forward (`build_logps_fn`) is micro-batched the same way (a `lax.map` over the strided
micro-batches), so its transient is one micro-batch's forward, and it runs on a compute-dtype copy of the
parameters (`reference_params`). `build_batch_fn` assembles the step's batch on device from the rollout's host
arrays and the rewards: the completion mask and the advantages are built where they are used, not computed on
device, pulled to the host and uploaded again.

Legend: B sequences, M micro-batches, b = B / M, L full length, T completion length, R reward functions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jax.sharding import NamedSharding, PartitionSpec

from engine.errors import UserError
from engine.sharding import batch_sharding
from engine.train_state import OptimConfig, TrainState, apply_gradients, jit_step, split_micro
from rl import grpo
from rl.logprobs import completion_logps


class GRPOBatch(NamedTuple):
    """One optimizer batch, on device, sharded along B."""

    ids_BxL: jax.Array  # int32 prompt (left-padded) + completion (right-padded) tokens
    mask_BxL: jax.Array  # bool, real tokens
    completion_mask_BxT: jax.Array  # float32, tokens that get loss
    advantages_B: jax.Array  # float32
    old_logps_BxT: jax.Array | None  # sampler log-probs (num_iterations > 1), else None = on-policy
    ref_logps_BxT: jax.Array | None  # frozen reference log-probs (beta > 0), else None


def merge_micro(y, m: int):
    """The inverse of `split_micro`: [m, B / m, ...] (micro-batch i = rows i, i + m, ...) -> [B, ...]."""
    return y.swapaxes(0, 1).reshape(y.shape[0] * y.shape[1], *y.shape[2:])


def build_grpo_step(graphdef: nnx.GraphDef, gcfg: grpo.GRPOConfig, optim: OptimConfig, state_sharding=None,
                    micro_batches: int | None = None):
    """`step(state, batch) -> (state, metrics)`, jitted, state donated.

    `state_sharding` (from `state_shardings(state)`) pins the output state to the input's layout.
    `micro_batches` overrides `optim.micro_batches` (e.g. the count `models.memory.choose` picked).
    """
    tx = optim.optimizer()
    M = micro_batches or optim.micro_batch_count

    def step(state: TrainState, batch: GRPOBatch):
        B, T = batch.completion_mask_BxT.shape
        if B % M:
            raise UserError(f"optim.micro_batches ({M}) must divide the batch ({B} sequences)")
        normalizer = grpo.loss_normalizer(batch.completion_mask_BxT, gcfg)
        micro = jax.tree.map(lambda x: split_micro(x, M), batch)

        def micro_loss(params, mb: GRPOBatch):
            model = nnx.merge(graphdef, params)
            logps, entropy = completion_logps(model, mb.ids_BxL, mb.mask_BxL, T, optim.logps_chunk)
            value, stats = grpo.loss_terms(logps, mb.old_logps_BxT, mb.ref_logps_BxT, mb.advantages_B,
                                           mb.completion_mask_BxT, gcfg, normalizer)
            ent_sum = jnp.sum(jax.lax.stop_gradient(entropy) * mb.completion_mask_BxT)
            return value, (stats, ent_sum)

        grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

        def body(acc, mb):
            (value, (stats, ent)), g = grad_fn(state.params, mb)
            acc_g, acc_loss, acc_stats, acc_ent = acc
            return (jax.tree.map(jnp.add, acc_g, g), acc_loss + value,
                    jax.tree.map(jnp.add, acc_stats, stats), acc_ent + ent), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        zero_stats = grpo.LossStats(*([jnp.zeros((), jnp.float32)] * len(grpo.LossStats._fields)))
        (grads, loss_value, stats, ent), _ = jax.lax.scan(body, (zeros, jnp.zeros(()), zero_stats, jnp.zeros(())),
                                                          micro)
        metrics = {"loss": loss_value, "entropy": ent / jnp.maximum(stats.token_count, 1.0),
                   **grpo.loss_metrics(stats, gcfg)}
        return apply_gradients(tx, state, grads, metrics)

    return jit_step(step, state_sharding)


def build_logps_fn(graphdef: nnx.GraphDef, chunk: int = 64, micro_batches: int = 1):
    """`fn(params, ids_BxL, mask_BxL, T) -> logps_BxT`: forward only (reference / old policy).

    With `micro_batches` M > 1 the rows run as M strided micro-batches one after another (`lax.map`): the
    transient is one micro-batch's forward, as in the update, and each device keeps its own rows.
    """

    def fn(params, ids_BxL, mask_BxL, T: int):
        model = nnx.merge(graphdef, params)
        if micro_batches == 1:
            return completion_logps(model, ids_BxL, mask_BxL, T, chunk)[0]
        if ids_BxL.shape[0] % micro_batches:
            raise UserError(f"micro_batches ({micro_batches}) must divide the batch ({ids_BxL.shape[0]} sequences)")
        mb = (split_micro(ids_BxL, micro_batches), split_micro(mask_BxL, micro_batches))
        out = jax.lax.map(lambda xs: completion_logps(model, xs[0], xs[1], T, chunk)[0], mb)
        return merge_micro(out, micro_batches)

    return jax.jit(fn, static_argnums=3)


def reference_params(params, dtype: str):
    """A frozen copy of `params` in the compute dtype (the reference only runs forwards): new buffers with the
    same shardings, never aliasing `params` (whose buffers the update donates)."""
    dt = jnp.dtype(dtype)

    @jax.jit
    def cast(p):
        return jax.tree.map(lambda x: x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dt
                            else jnp.copy(x), p)

    return cast(params)


def build_batch_fn(gcfg: grpo.GRPOConfig, mesh=None):
    """`fn(prompt_ids_BxL, prompt_mask_BxL, completion_ids_BxT, lengths_B, truncated_B, rewards_BxR, logprobs_BxT)
    -> (GRPOBatch, reward metrics)`, jitted: the step's batch built on device in one call.

    Inputs are the rollout's host arrays (uploaded once each) and the reward table (NaN = not applicable).
    The attention mask, the loss mask (`grpo.completion_mask`), the combined rewards and the group-normalised
    advantages are computed inside; `old_logps_BxT` is the sampler's log-probs when `num_iterations > 1`
    (else None) and `ref_logps_BxT` is left None for the reference forward to fill. Metrics (`reward`,
    `reward_std`, `frac_reward_zero_std`) stay on device: read them with the step's metrics, no extra sync.
    """

    def fn(prompt_ids_BxL, prompt_mask_BxL, completion_ids_BxT, lengths_B, truncated_B, rewards_BxR, logprobs_BxT):
        T = completion_ids_BxT.shape[1]
        gen_BxT = jnp.arange(T)[None, :] < lengths_B[:, None]
        ids = jnp.concatenate([prompt_ids_BxL, completion_ids_BxT], axis=1).astype(jnp.int32)
        mask = jnp.concatenate([prompt_mask_BxL.astype(jnp.bool_), gen_BxT], axis=1)
        cmask = grpo.completion_mask(lengths_B, truncated_B, T, gcfg).astype(jnp.float32)
        rewards_B = grpo.combine_rewards(rewards_BxR, gcfg.reward_weights)
        adv = grpo.advantages(rewards_B, gcfg).astype(jnp.float32)
        old = logprobs_BxT.astype(jnp.float32) if gcfg.num_iterations > 1 else None
        return GRPOBatch(ids, mask, cmask, adv, old, None), grpo.group_stats(rewards_B, gcfg)

    if mesh is None:
        return jax.jit(fn)
    rows = lambda nd: batch_sharding(mesh, nd)
    out = (GRPOBatch(rows(2), rows(2), rows(2), rows(1), rows(2) if gcfg.num_iterations > 1 else None, None),
           NamedSharding(mesh, PartitionSpec()))
    return jax.jit(fn, out_shardings=out)


def build_sft_step(graphdef: nnx.GraphDef, optim: OptimConfig, state_sharding=None,
                   micro_batches: int | None = None):
    """Supervised fine-tuning on the same machinery: token mean of -log p over `loss_mask_BxT`.

    `step(state, ids_BxL, mask_BxL, loss_mask_BxT) -> (state, metrics)`; T = the trailing target span.
    """
    tx = optim.optimizer()
    M = micro_batches or optim.micro_batch_count

    def step(state: TrainState, ids_BxL, mask_BxL, loss_mask_BxT):
        T = loss_mask_BxT.shape[1]
        total = jnp.maximum(jnp.sum(loss_mask_BxT), 1.0)

        def micro_loss(params, mb):
            ids, mask, lm = mb
            logps, _ = completion_logps(nnx.merge(graphdef, params), ids, mask, T, optim.logps_chunk)
            return -jnp.sum(logps * lm) / total

        def body(acc, mb):
            value, g = jax.value_and_grad(micro_loss)(state.params, mb)
            return (jax.tree.map(jnp.add, acc[0], g), acc[1] + value), None

        micro = jax.tree.map(lambda x: split_micro(x, M), (ids_BxL, mask_BxL, loss_mask_BxT))
        (grads, loss_value), _ = jax.lax.scan(body, (jax.tree.map(jnp.zeros_like, state.params), jnp.zeros(())), micro)
        return apply_gradients(tx, state, grads, {"loss": loss_value})

    return jit_step(step, state_sharding)
