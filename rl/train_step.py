"""The jitted, sharded GRPO and SFT steps, built on the generic state and plumbing of `engine.train_state`.

A batch of B sequences is split into M micro-batches scanned with `lax.scan`; gradients are summed
(each micro-batch's loss is already its share of the whole batch's loss, see `rl.grpo.loss_terms`),
clipped by global norm, and applied by AdamW.

Legend: B sequences, M micro-batches, b = B / M, L full length, T completion length.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from engine.errors import UserError
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


def build_grpo_step(graphdef: nnx.GraphDef, gcfg: grpo.GRPOConfig, optim: OptimConfig, state_sharding=None):
    """`step(state, batch) -> (state, metrics)`, jitted, state donated.

    `state_sharding` (from `state_shardings(state)`) pins the output state to the input's layout.
    """
    tx = optim.optimizer()
    M = optim.micro_batches

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


def build_logps_fn(graphdef: nnx.GraphDef, chunk: int = 64):
    """`fn(params, ids_BxL, mask_BxL, T) -> logps_BxT`: forward only (reference / old policy)."""

    def fn(params, ids_BxL, mask_BxL, T: int):
        return completion_logps(nnx.merge(graphdef, params), ids_BxL, mask_BxL, T, chunk)[0]

    return jax.jit(fn, static_argnums=3)


def build_sft_step(graphdef: nnx.GraphDef, optim: OptimConfig, state_sharding=None):
    """Supervised fine-tuning on the same machinery: token mean of -log p over `loss_mask_BxT`.

    `step(state, ids_BxL, mask_BxL, loss_mask_BxT) -> (state, metrics)`; T = the trailing target span.
    """
    tx = optim.optimizer()
    M = optim.micro_batches

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
