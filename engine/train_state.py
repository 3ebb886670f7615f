"""The generic train state, optimizer and jitted-step plumbing every trainer (GRPO, SFT) shares.

One `jax.jit` per step kind with explicit in/out shardings and the state donated: parameters and
optimizer state are updated in place. A batch of B rows is split into M micro-batches scanned with
`lax.scan` (`split_micro`); the trainer's loss function sums gradients over them, and
`apply_gradients` clips and applies them with AdamW. Nothing here knows what is being trained.

A step whose loss or gradient norm is not finite changes nothing: `apply_gradients` selects the old
parameters and optimizer state with `jnp.where` inside the jitted step (no host sync) and reports
`train/skipped` = 1; the trainer counts the skips and stops after too many in a row.

Legend: B rows, M micro-batches, b = B / M.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from engine.errors import UserError


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine (or constant) decay, global-norm clipping."""

    learning_rate: float = 1e-6  # peak learning rate
    warmup_steps: int | None = None  # linear warmup from 0 over this many optimizer steps (None = none; `traitrl
    # train` derives 10% of its run)
    schedule: Literal["cosine", "constant"] = "cosine"  # cosine decays to final_lr_fraction * lr at total_steps
    total_steps: int | None = None  # optimizer steps the cosine schedule spans (None = the run's step count)
    final_lr_fraction: float = 0.1  # cosine floor as a fraction of the peak
    b1: float = 0.9  # Adam beta1
    b2: float = 0.999  # Adam beta2
    eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.0  # decoupled weight decay (AdamW)
    max_grad_norm: float = 1.0  # global-norm clip (0 = off)
    # M: the batch is split into M equal micro-batches, gradients accumulated; "auto" = the smallest M the memory
    # plan fits (`traitrl train` resolves it; code that builds a step itself reads "auto" as 1)
    micro_batches: int | Literal["auto"] = 1
    logps_chunk: int = 64  # positions per chunk of the lm head + log-softmax (bounds the [b, C, V] logits)

    def __post_init__(self):
        for name in ("learning_rate", "final_lr_fraction", "b1", "b2", "eps", "weight_decay", "max_grad_norm"):
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"option 'optim.{name}': expected a finite number, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise UserError(f"option 'optim.learning_rate': expected > 0, got {self.learning_rate}")
        for name, lo, hi, closed in (("b1", 0.0, 1.0, False), ("b2", 0.0, 1.0, False),
                                     ("final_lr_fraction", 0.0, 1.0, True)):
            v = getattr(self, name)
            if not (lo <= v < hi or (closed and v == hi)):
                raise UserError(f"option 'optim.{name}': expected a number in [{lo}, {hi}{']' if closed else ')'}, "
                                f"got {v}")
        if self.eps <= 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise UserError("options 'optim.eps' > 0, 'optim.weight_decay' >= 0 and 'optim.max_grad_norm' >= 0 "
                            f"expected, got {self.eps}, {self.weight_decay}, {self.max_grad_norm}")
        if self.schedule not in ("cosine", "constant"):
            raise UserError(f"option 'optim.schedule': expected cosine or constant, got {self.schedule}")
        if (self.warmup_steps is not None and self.warmup_steps < 0) or (
                self.total_steps is not None and self.total_steps < 1):
            raise UserError("options 'optim.warmup_steps' >= 0 and 'optim.total_steps' >= 1 expected")
        if (self.micro_batches != "auto" and (isinstance(self.micro_batches, bool)
                                              or not isinstance(self.micro_batches, int) or self.micro_batches < 1)) \
                or self.logps_chunk < 1:
            raise UserError("options 'optim.micro_batches' (an integer or auto) and 'optim.logps_chunk' must be >= 1, "
                            f"got {self.micro_batches!r}, {self.logps_chunk}")

    @property
    def micro_batch_count(self) -> int:
        """M as an integer ("auto" unresolved = 1)."""
        return 1 if self.micro_batches == "auto" else int(self.micro_batches)

    def for_steps(self, steps: int) -> OptimConfig:
        """The schedule length filled from a run of `steps` optimizer steps (an explicit one is kept)."""
        return self if self.total_steps is not None else dataclasses.replace(self, total_steps=steps)

    def schedule_fn(self) -> optax.Schedule:
        """The learning rate by step. Without a length (`total_steps` None: no run to span) the decay is constant."""
        total, warmup = self.total_steps, self.warmup_steps or 0
        if self.schedule == "constant" or total is None:
            decay = optax.constant_schedule(self.learning_rate)
        else:
            decay = optax.cosine_decay_schedule(self.learning_rate, max(1, total - warmup),
                                                alpha=self.final_lr_fraction)
        if not warmup:
            return decay
        warm = optax.linear_schedule(0.0, self.learning_rate, warmup)
        return optax.join_schedules([warm, decay], [warmup])

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


def split_micro(x, m: int):
    """[B, ...] -> [m, B / m, ...], micro-batch i = rows i, i + m, i + 2m, ... (None passes through).

    Strided, not contiguous: with the batch sharded over (data, fsdp), device d holds a contiguous
    block of rows, and a strided split gives every micro-batch an equal share of each device's block,
    so the reshape is a local relayout and the scan needs no resharding collectives.
    """
    if x is None:
        return None
    return x.reshape(x.shape[0] // m, m, *x.shape[1:]).swapaxes(0, 1)


def apply_gradients(tx: optax.GradientTransformation, state: TrainState, grads, extra_metrics) -> tuple[TrainState, dict]:
    """One optimizer update; the global gradient norm and `train/skipped` join the metrics.

    A non-finite `extra_metrics["loss"]` or gradient norm keeps the parameters and optimizer state as they
    were (the schedule does not advance either); `step` still counts the batch, so the data and the rollout
    seeds move on and the logs keep one row per step.
    """
    grad_norm = optax.global_norm(grads)
    ok = jnp.isfinite(grad_norm)
    if "loss" in extra_metrics:
        ok = ok & jnp.all(jnp.isfinite(extra_metrics["loss"]))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
    params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    metrics = {"grad_norm": grad_norm, **extra_metrics, "train/skipped": 1.0 - ok.astype(jnp.float32)}
    return TrainState(state.step + 1, params, opt_state, state.rng), metrics


def nonfinite_paths(tree) -> list[str]:
    """Paths of the floating-point leaves of `tree` holding a NaN or an infinity (checked on device, one
    small transfer): what a checkpoint or an export must never contain."""
    pairs = [(jax.tree_util.keystr(path), x) for path, x in jax.tree_util.tree_leaves_with_path(tree)
             if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not pairs:
        return []
    sharding = pairs[0][1].sharding
    out = NamedSharding(sharding.mesh, P()) if isinstance(sharding, NamedSharding) else None
    if out not in _FINITE_FNS:
        _FINITE_FNS[out] = jax.jit(lambda xs: jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]), out_shardings=out)
    flags = np.asarray(jax.device_get(_FINITE_FNS[out]([x for _, x in pairs])))
    return [path for (path, _), fine in zip(pairs, flags, strict=True) if not fine]


_FINITE_FNS: dict = {}  # one jitted check per output sharding (jit caches the traces per tree structure)


def jit_step(step, state_sharding):
    """Donated state; with a mesh the state keeps exactly its shardings and metrics come back replicated."""
    if state_sharding is None:
        return jax.jit(step, donate_argnums=0)
    mesh = jax.tree.leaves(state_sharding)[0].mesh
    return jax.jit(step, donate_argnums=0, out_shardings=(state_sharding, NamedSharding(mesh, P())))
