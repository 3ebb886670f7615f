"""A TopK sparse autoencoder trained in JAX on a streamed activation store (Gao et al. 2024).

    z = TopK_k(W_enc (x - b_dec) + b_enc), ReLU'd      x_hat = z W_dec + b_dec

Choices, each from "Scaling and evaluating sparse autoencoders" (Gao et al. 2024) unless said:
- TopK fixes L0 = k, so there is no L1 coefficient to tune and no shrinkage.
- The loss is the normalised MSE (the batch's fraction of variance unexplained), so the learning
  rate does not depend on the activations' scale; inputs are also divided by one scalar, fixed
  from the first buffer, so E|x|^2 = D.
- Decoder rows stay unit-norm (renormalised after every update, with the gradient component
  parallel to each row removed first); the encoder starts as the decoder's transpose, b_dec at
  the data mean.
- Dead latents (no activation in the last `dead_tokens` training rows) get the AuxK loss: the
  top `aux_k` dead latents reconstruct the main model's residual error, weight `aux_coef`.

Sharding: latents over the mesh's `tensor` axis (the logical "mlp" axis of engine.sharding.RULES:
the wide hidden axis), batch over the data axes; one jitted, donated step. The decoder is read
sparsely (a gather of the k active rows), so decoding costs B*k*D, not B*N*D.

Legend: B batch, D model width, N latents (width), K active latents (k), T top examples kept.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from engine.errors import UserError
from engine.sharding import sharding_for
from evals.persona.store import ActivationStore, heldout_rows

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SAEConfig:
    """TopK SAE shape and training options."""

    width: int = 4096  # N latents
    k: int = 32  # active latents per row
    aux_k: int | None = None  # dead latents in the AuxK reconstruction (None = min(256, width); Gao et al.: a power
    # of two near D / 2)
    aux_coef: float = 1 / 32  # weight of the AuxK loss
    dead_tokens: int = 100_000  # a latent that has not fired in this many training rows is dead
    lr: float = 1e-3  # Adam peak learning rate
    warmup_steps: int = 20  # linear warmup
    decay_fraction: float = 0.2  # the last fraction of steps decays the learning rate linearly to 0
    batch_size: int = 1024  # rows per step (a multiple of the mesh's data axes to shard it)
    steps: int = 2000  # optimizer steps
    heldout_every: int = 10  # examples with index % heldout_every == 0 are held out for evaluation (0 = none)
    shuffle_chunks: int = 4  # chunks mixed in the shuffle buffer
    seed: int = 0  # init and data order
    log_every: int = 100  # steps between logged metrics

    @property
    def aux_latents(self) -> int:
        """aux_k in effect (a property, not a filled field: it follows --width when not given)."""
        return min(256, self.width) if self.aux_k is None else self.aux_k

    def __post_init__(self):
        if not 1 <= self.k <= self.width or not 1 <= self.aux_latents <= self.width:
            raise UserError(f"sae: expected 1 <= k, aux_k <= width, got k={self.k} aux_k={self.aux_latents} "
                            f"width={self.width}")
        for f in ("batch_size", "steps", "shuffle_chunks", "log_every", "dead_tokens"):
            if getattr(self, f) < 1:
                raise UserError(f"sae.{f}: expected >= 1, got {getattr(self, f)}")
        if self.lr <= 0 or self.aux_coef < 0 or not 0 <= self.decay_fraction <= 1 or self.heldout_every < 0:
            raise UserError("sae: lr > 0, aux_coef >= 0, decay_fraction in [0, 1], heldout_every >= 0 expected")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SAEParams:
    w_enc_DxN: jax.Array
    b_enc_N: jax.Array
    w_dec_NxD: jax.Array
    b_dec_D: jax.Array


_AXES = SAEParams((None, "mlp"), ("mlp",), ("mlp", None), (None,))  # logical axes per parameter


@dataclasses.dataclass
class SAE:
    """Trained parameters plus what applying them needs: k, the input scale and the layer."""

    params: SAEParams
    k: int
    scale: float  # inputs are divided by it before encoding; outputs multiplied back
    layer: int
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.params.b_enc_N.shape[0])

    def encode(self, x_RxD: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(values [R, K], latent ids [R, K])."""
        v, i, _ = self.encode_decode(x_RxD, block)
        return v, i

    def reconstruct(self, x_RxD: np.ndarray, block: int = 1024) -> np.ndarray:
        return self.encode_decode(x_RxD, block)[2]

    def encode_decode(self, x_RxD: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values [R, K], latent ids [R, K], reconstruction [R, D]) in fixed-size blocks (one compilation)."""
        out = [[], [], []]
        for xb, n in _blocks(np.asarray(x_RxD, np.float32) / np.float32(self.scale), block):
            for acc, a in zip(out, jax.device_get(_encode_decode_jit(self.params, xb, self.k))):
                acc.append(a[:n])
        if not out[0]:
            return np.zeros((0, self.k), np.float32), np.zeros((0, self.k), np.int32), np.zeros((0, x_RxD.shape[1]))
        v, i, xh = (np.concatenate(a) for a in out)
        return v, i, xh * self.scale

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        p = jax.device_get(self.params)
        np.savez(path / "sae.npz", **{f.name: np.asarray(getattr(p, f.name)) for f in dataclasses.fields(p)})
        (path / "sae.json").write_text(json.dumps({"k": self.k, "scale": self.scale, "layer": self.layer,
                                                   "width": self.width, "meta": self.meta}, indent=1))
        return path

    @staticmethod
    def load(path: str | Path) -> SAE:
        path = Path(path)
        if not (path / "sae.json").is_file() or not (path / "sae.npz").is_file():
            raise UserError(f"{path}: not an SAE directory (sae.json + sae.npz, as written by SAE.save)")
        info = json.loads((path / "sae.json").read_text())
        with np.load(path / "sae.npz") as z:
            params = SAEParams(*(jnp.asarray(z[f.name]) for f in dataclasses.fields(SAEParams)))
        return SAE(params, int(info["k"]), float(info["scale"]), int(info["layer"]), info.get("meta", {}))


def _blocks(x_RxD: np.ndarray, size: int):
    """Fixed-size blocks (the last zero-padded) and the number of real rows in each."""
    for s in range(0, len(x_RxD), size):
        xb = x_RxD[s: s + size]
        n = len(xb)
        if n < size:
            xb = np.concatenate([xb, np.zeros((size - n, x_RxD.shape[1]), xb.dtype)])
        yield xb, n


def _topk(p: SAEParams, x_BxD: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    pre_BxN = (x_BxD - p.b_dec_D) @ p.w_enc_DxN + p.b_enc_N
    vals_BxK, idx_BxK = jax.lax.top_k(pre_BxN, k)
    return jax.nn.relu(vals_BxK), idx_BxK, pre_BxN


def _decode(p: SAEParams, vals_BxK: jax.Array, idx_BxK: jax.Array) -> jax.Array:
    return jnp.einsum("bk,bkd->bd", vals_BxK, p.w_dec_NxD[idx_BxK]) + p.b_dec_D


@functools.partial(jax.jit, static_argnums=2)
def _encode_decode_jit(p: SAEParams, x_BxD: jax.Array, k: int):
    vals, idx, _ = _topk(p, x_BxD, k)
    return vals, idx, _decode(p, vals, idx)


def _nmse(err_BxD: jax.Array, x_BxD: jax.Array) -> jax.Array:
    """Sum of squared error over the batch's total variance: the batch FVU."""
    var = jnp.sum(jnp.square(x_BxD - jnp.mean(x_BxD, axis=0)))
    return jnp.sum(jnp.square(err_BxD)) / jnp.maximum(var, 1e-12)


def _losses(p: SAEParams, x_BxD: jax.Array, dead_N: jax.Array, cfg: SAEConfig, with_aux: bool = True):
    vals, idx, pre_BxN = _topk(p, x_BxD, cfg.k)
    err_BxD = x_BxD - _decode(p, vals, idx)
    fvu = _nmse(err_BxD, x_BxD)
    if not with_aux:
        return fvu, (fvu, jnp.zeros_like(fvu), vals, idx)
    # AuxK: the top aux_k *dead* latents try to reconstruct what the live ones missed.
    aux_vals, aux_idx = jax.lax.top_k(jnp.where(dead_N, pre_BxN, -jnp.inf), cfg.aux_latents)
    aux_vals = jnp.where(jnp.isfinite(aux_vals), jax.nn.relu(aux_vals), 0.0)
    target = jax.lax.stop_gradient(err_BxD)
    aux = _nmse(target - jnp.einsum("bk,bkd->bd", aux_vals, p.w_dec_NxD[aux_idx]), target)
    aux = jnp.where(jnp.any(dead_N), aux, 0.0)
    return fvu + cfg.aux_coef * aux, (fvu, aux, vals, idx)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _State:
    params: SAEParams
    opt_state: object
    since_fired_N: jax.Array  # training rows since each latent last fired


def _schedule(cfg: SAEConfig) -> optax.Schedule:
    decay = int(cfg.steps * cfg.decay_fraction)
    warm = min(cfg.warmup_steps, max(cfg.steps - decay - 1, 0))
    parts = [optax.linear_schedule(0.0, cfg.lr, max(warm, 1)),
             optax.constant_schedule(cfg.lr),
             optax.linear_schedule(cfg.lr, 0.0, max(decay, 1))]
    return optax.join_schedules(parts, [max(warm, 1), max(cfg.steps - decay, max(warm, 1) + 1)])


def _build_step(cfg: SAEConfig, tx: optax.GradientTransformation, shardings):
    """`step(state, x_BxD, with_aux)`: two compiled variants. The host picks the AuxK one only while some
    latent is dead (the aux top-k and gather cost as much as the rest of the step), rather than a
    `lax.cond` inside the step: a conditional over sharded latents deadlocked XLA:CPU's collectives."""

    def step(state: _State, x_BxD: jax.Array, with_aux: bool):
        dead_N = state.since_fired_N > cfg.dead_tokens
        (loss, (fvu, aux, vals, idx)), g = jax.value_and_grad(_losses, has_aux=True)(state.params, x_BxD, dead_N, cfg,
                                                                                      with_aux)
        w = state.params.w_dec_NxD  # keep decoder rows on the unit sphere: drop the radial gradient
        g = dataclasses.replace(g, w_dec_NxD=g.w_dec_NxD - jnp.sum(g.w_dec_NxD * w, -1, keepdims=True) * w)
        updates, opt_state = tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        params = dataclasses.replace(params, w_dec_NxD=params.w_dec_NxD
                                     / jnp.maximum(jnp.linalg.norm(params.w_dec_NxD, axis=-1, keepdims=True), 1e-12))
        fired_N = jnp.zeros_like(dead_N).at[idx.reshape(-1)].max(vals.reshape(-1) > 0)
        since = jnp.where(fired_N, 0, state.since_fired_N + x_BxD.shape[0])
        metrics = {"loss": loss, "fvu": fvu, "aux_loss": aux, "dead_fraction": jnp.mean(dead_N.astype(jnp.float32)),
                   "max_since_fired": jnp.max(since)}
        return _State(params, opt_state, since), metrics

    if shardings is None:
        return jax.jit(step, donate_argnums=0, static_argnums=2)
    return jax.jit(step, donate_argnums=0, static_argnums=2, out_shardings=(shardings, None))


def _train_batches(store: ActivationStore, layer: int, cfg: SAEConfig, rng: np.random.Generator):
    """Endless shuffled batches of training rows: `shuffle_chunks` chunks at a time, re-permuted each pass."""
    carry = np.zeros((0, store.d_model), np.float32)
    while True:
        order = rng.permutation(store.num_chunks)
        seen = 0
        for s in range(0, len(order), cfg.shuffle_chunks):
            parts = [carry]
            for c in order[s: s + cfg.shuffle_chunks]:
                x = np.asarray(store.chunk(c, layer), np.float32)
                parts.append(x[~heldout_rows(store.chunk_rows(c), cfg.heldout_every)])
            buf = np.concatenate(parts)
            seen += len(buf) - len(carry)
            buf = buf[rng.permutation(len(buf))]
            n = len(buf) // cfg.batch_size * cfg.batch_size
            for b in range(0, n, cfg.batch_size):
                yield buf[b: b + cfg.batch_size]
            carry = buf[n:]
        if seen == 0:
            raise UserError(f"{store.path}: no training rows at layer {layer} (all held out?)")


def _init(first_BxD: np.ndarray, cfg: SAEConfig, D: int) -> tuple[SAEParams, float]:
    scale = float(np.sqrt(np.mean(np.sum(np.square(first_BxD, dtype=np.float64), 1)) / D))
    rng = np.random.default_rng(cfg.seed)
    w = rng.standard_normal((cfg.width, D)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    b_dec = (first_BxD.mean(0, dtype=np.float64) / scale).astype(np.float32)
    params = SAEParams(jnp.asarray(w.T), jnp.zeros(cfg.width, jnp.float32), jnp.asarray(w), jnp.asarray(b_dec))
    return params, max(scale, 1e-12)


def train_sae(store: ActivationStore, layer: int, cfg: SAEConfig = SAEConfig(), mesh: Mesh | None = None,
              progress: bool = False) -> tuple[SAE, list[dict]]:
    """Trains a TopK SAE on the store's training rows at `layer`; returns it and the logged metrics."""
    store.check_layer(layer)
    rng = np.random.default_rng(cfg.seed)
    batches = _train_batches(store, layer, cfg, rng)
    first = np.concatenate([next(batches) for _ in range(max(1, min(16, 16384 // cfg.batch_size)))])
    params, scale = _init(first, cfg, store.d_model)
    tx = optax.adam(_schedule(cfg))
    put_batch = lambda x: x
    shardings = None
    if mesh is not None:
        params = jax.tree.map(lambda a, ax: jax.device_put(a, sharding_for(a.shape, ax, mesh)), params, _AXES,
                              is_leaf=lambda a: isinstance(a, tuple))
        put_batch = lambda x: jax.device_put(x, sharding_for(x.shape, ("batch", None), mesh))
    since = jnp.zeros(cfg.width, jnp.int32)
    if mesh is not None:
        since = jax.device_put(since, sharding_for(since.shape, ("mlp",), mesh))
    state = _State(params, jax.jit(tx.init)(params), since)
    if mesh is not None:  # what is not sharded by now (Adam's step count) is replicated on the mesh
        shardings = jax.tree.map(lambda a: a.sharding if isinstance(a.sharding, NamedSharding)
                                 else NamedSharding(mesh, PartitionSpec()), state)
        state = jax.device_put(state, shardings)
    step = _build_step(cfg, tx, shardings)
    logged, bar = [], None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="sae", dynamic_ncols=True)
    replay = iter(np.split(first, len(first) // cfg.batch_size))  # the init buffer is trained on, not skipped
    # No latent can be dead before dead_tokens rows have passed; after that, ask the device every
    # `check` steps (one scalar) whether any is, and run the AuxK variant while one is.
    with_aux, check = False, max(1, min(cfg.log_every, 10))
    for s in range(cfg.steps):
        x = next(replay, None)
        x = next(batches) if x is None else x
        state, metrics = step(state, put_batch(x / np.float32(scale)), with_aux)
        if (s + 1) * cfg.batch_size > cfg.dead_tokens and s % check == 0:
            with_aux = int(metrics["max_since_fired"]) > cfg.dead_tokens
        if s % cfg.log_every == 0 or s == cfg.steps - 1:
            logged.append((s + 1, metrics))  # device arrays: read once at the end, never stalling the loop
        if bar is not None:
            bar.update(1)
    history = [{"step": s, **{k: float(v) for k, v in jax.device_get(m).items()}} for s, m in logged]
    if bar is not None:
        bar.close()
    dead = float(np.mean(np.asarray(jax.device_get(state.since_fired_N)) > cfg.dead_tokens))
    meta = {"config": dataclasses.asdict(cfg), "store": str(store.path), "dead_fraction": dead,
            "final": history[-1] if history else {}}
    return SAE(state.params, cfg.k, scale, layer, meta), history  # params keep their mesh layout


def evaluate(sae: SAE, store: ActivationStore, layer: int, heldout_every: int | None = None) -> dict:
    """Fraction of variance unexplained (over the selected rows' own mean), L0 and the row count.

    `heldout_every=None` takes the SAE's own training split, so by default this scores only rows
    the SAE never saw; 0 scores every row.
    """
    every = sae.meta.get("config", {}).get("heldout_every", 0) if heldout_every is None else heldout_every
    sse, s, ss, n, l0 = 0.0, np.zeros(store.d_model), 0.0, 0, 0.0
    for x, rows in store.iter_chunks(store.check_layer(layer)):
        if every:
            x = x[heldout_rows(rows, every)]
        if not len(x):
            continue
        v, _, x_hat = sae.encode_decode(x)
        sse += float(np.sum(np.square(x - x_hat, dtype=np.float64)))
        s += x.sum(0, dtype=np.float64)
        ss += float(np.sum(np.square(x, dtype=np.float64)))
        n += len(x)
        l0 += float(np.sum(v > 0))
    if n == 0:
        raise UserError(f"{store.path}: no rows to evaluate at layer {layer} (heldout_every={every})")
    total = ss - float(s @ s) / n
    return {"fvu": sse / max(total, 1e-12), "l0": l0 / n, "rows": n}
