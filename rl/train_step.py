"""The jitted, sharded training steps (GRPO and SFT) and the train state they update.

One `jax.jit` per step kind with explicit in/out shardings and the state donated: parameters and
optimizer state are updated in place. A batch of B sequences is split into M equal micro-batches
scanned with `lax.scan`; gradients are summed (each micro-batch's loss is already its share of the
whole batch's loss, see `rl.grpo.loss_terms`), clipped by global norm, and applied by AdamW.

Legend: B sequences, M micro-batches, b = B / M, L full length, T completion length.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from engine.errors import UserError
from rl import grpo
from rl.logprobs import completion_logps


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine (or constant) decay, global-norm clipping."""

    learning_rate: float = 1e-6  # peak learning rate
    warmup_steps: int = 0  # linear warmup from 0 over this many optimizer steps
    schedule: str = "cosine"  # cosine (to final_lr_fraction * lr at total_steps) | constant
    total_steps: int = 1000  # optimizer steps the cosine schedule spans
    final_lr_fraction: float = 0.1  # cosine floor as a fraction of the peak
    b1: float = 0.9  # Adam beta1
    b2: float = 0.999  # Adam beta2
    eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.0  # decoupled weight decay (AdamW)
    max_grad_norm: float = 1.0  # global-norm clip (0 = off)
    micro_batches: int = 1  # M: the batch is split into M equal micro-batches, gradients accumulated
    logps_chunk: int = 64  # positions per chunk of the lm head + log-softmax (bounds the [b, C, V] logits)

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise UserError(f"optim.learning_rate: expected > 0, got {self.learning_rate}")
        if self.schedule not in ("cosine", "constant"):
            raise UserError(f"optim.schedule: expected cosine or constant, got {self.schedule}")
        if self.warmup_steps < 0 or self.total_steps < 1:
            raise UserError("optim.warmup_steps must be >= 0 and optim.total_steps >= 1")
        if self.micro_batches < 1 or self.logps_chunk < 1:
            raise UserError("optim.micro_batches and optim.logps_chunk must be >= 1")

    def schedule_fn(self) -> optax.Schedule:
        if self.schedule == "constant":
            decay = optax.constant_schedule(self.learning_rate)
        else:
            decay = optax.cosine_decay_schedule(self.learning_rate, max(1, self.total_steps - self.warmup_steps),
                                                alpha=self.final_lr_fraction)
        if not self.warmup_steps:
            return decay
        warm = optax.linear_schedule(0.0, self.learning_rate, self.warmup_steps)
        return optax.join_schedules([warm, decay], [self.warmup_steps])

    def optimizer(self) -> optax.GradientTransformation:
        adamw = optax.adamw(self.schedule_fn(), b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay)
        if self.max_grad_norm:
            return optax.chain(optax.clip_by_global_norm(self.max_grad_norm), adamw)
        return adamw


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Everything a resume needs besides the data iterator: one pytree, checkpointed whole."""

    step: jax.Array  # int32 optimizer steps taken
    params: Any  # nnx.State of the policy's parameters
    opt_state: Any  # optax state
    rng: jax.Array  # uint32 key data for rollouts (advanced by the learner each step)


class GRPOBatch(NamedTuple):
    """One optimizer batch, on device, sharded along B."""

    ids_BxL: jax.Array  # int32 prompt (left-padded) + completion (right-padded) tokens
    mask_BxL: jax.Array  # bool, real tokens
    completion_mask_BxT: jax.Array  # float32, tokens that get loss
    advantages_B: jax.Array  # float32
    old_logps_BxT: jax.Array | None  # sampler log-probs (num_iterations > 1), else None = on-policy
    ref_logps_BxT: jax.Array | None  # frozen reference log-probs (beta > 0), else None


def init_state(model: nnx.Module, optim: OptimConfig, seed: int = 0,
               mesh: Mesh | None = None) -> tuple[nnx.GraphDef, TrainState]:
    """Splits the model; optimizer state is created with the parameters' shardings (jit, no host copy)."""
    graphdef, params = nnx.split(model, nnx.Param)
    opt_state = jax.jit(optim.optimizer().init)(params)
    rng = jax.random.key_data(jax.random.key(seed))
    state = TrainState(jnp.zeros((), jnp.int32), params, opt_state, rng)
    if mesh is not None:  # scalars (step, counts, rng) replicated on the mesh; arrays keep their layout
        state = jax.device_put(state, state_shardings(state, mesh))
    return graphdef, state


def state_shardings(state: TrainState, mesh: Mesh | None):
    """Shardings of a concrete state: what it has (params decide, optimizer moments follow them)."""
    if mesh is None:
        return None
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: x.sharding if isinstance(x.sharding, NamedSharding) else replicated, state)


def batch_sharding(mesh: Mesh | None, ndim: int):
    if mesh is None:
        return None
    return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def _split_micro(x, m: int):
    return None if x is None else x.reshape(m, x.shape[0] // m, *x.shape[1:])


def _apply(tx, state: TrainState, grads, extra_metrics) -> tuple[TrainState, dict]:
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"grad_norm": optax.global_norm(grads), **extra_metrics}
    return TrainState(state.step + 1, params, opt_state, state.rng), metrics


def _jit(step, state_sharding):
    """Donated state; with a mesh the state keeps exactly its shardings and metrics come back replicated."""
    if state_sharding is None:
        return jax.jit(step, donate_argnums=0)
    mesh = jax.tree.leaves(state_sharding)[0].mesh
    return jax.jit(step, donate_argnums=0, out_shardings=(state_sharding, NamedSharding(mesh, P())))


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
        micro = jax.tree.map(lambda x: _split_micro(x, M), batch)

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
        return _apply(tx, state, grads, metrics)

    return _jit(step, state_sharding)


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

        micro = jax.tree.map(lambda x: _split_micro(x, M), (ids_BxL, mask_BxL, loss_mask_BxT))
        (grads, loss_value), _ = jax.lax.scan(body, (jax.tree.map(jnp.zeros_like, state.params), jnp.zeros(())), micro)
        return _apply(tx, state, grads, {"loss": loss_value})

    return _jit(step, state_sharding)
