"""Contrastive directions: difference of means between two response sets, and linear probes trained in JAX.

The difference of means (e.g. misaligned minus aligned answers to the same prompts, pooled over
response tokens) is the persona direction of Chen et al. 2025 and the "diff" baseline of Wang et
al. 2025; a logistic probe answers the complementary question -- is the property linearly
readable at this layer, and how well does it generalise to held-out prompts. Both stream the
stores chunk by chunk; the held-out split is by example index, so both answers of a contrastive
pair land on the same side.

Legend: R rows, D model width.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from engine.errors import UserError
from evals.persona.store import ActivationStore, heldout_rows, stream_moments


@dataclasses.dataclass(frozen=True)
class Direction:
    """A residual-stream direction at one layer, with where it came from."""

    name: str  # e.g. "persona", "sycophancy", "probe:persona"
    layer: int  # residual entering this block
    vector_D: np.ndarray  # unnormalised: a difference of means keeps its natural scale for steering
    meta: dict = dataclasses.field(default_factory=dict)  # counts, separation, accuracy ...

    @property
    def unit_D(self) -> np.ndarray:
        return self.vector_D / max(float(np.linalg.norm(self.vector_D)), 1e-12)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"name": self.name, "layer": self.layer, "meta": self.meta})
        np.savez(path, vector=np.asarray(self.vector_D, np.float32), header=np.asarray(header))
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @staticmethod
    def load(path: str | Path) -> Direction:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: direction file not found")
        try:
            with np.load(path) as z:
                header, vector = json.loads(str(z["header"])), np.asarray(z["vector"], np.float32)
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"{path}: not a direction file written by Direction.save ({e})") from None
        return Direction(header["name"], int(header["layer"]), vector, header.get("meta", {}))


def project(store: ActivationStore, layer: int, direction: Direction) -> np.ndarray:
    """[R] projection of every row on the unit direction, in stored order (R scalars fit in memory)."""
    u = direction.unit_D.astype(np.float32)
    return np.concatenate([x @ u for x, _ in store.iter_chunks(layer)]) if store.rows else np.zeros(0, np.float32)


def mean_difference(positive: ActivationStore, negative: ActivationStore, layer: int, name: str = "direction") -> Direction:
    """mean(positive) - mean(negative) at `layer`, with the separation it gives (Cohen's d along it)."""
    for s in (positive, negative):
        s.check_layer(layer)
    mu_p, _, n_p = stream_moments(positive, layer)
    mu_n, _, n_n = stream_moments(negative, layer)
    d = Direction(name, layer, (mu_p - mu_n).astype(np.float32))
    proj_p, proj_n = project(positive, layer, d), project(negative, layer, d)
    pooled = np.sqrt(0.5 * (proj_p.var() + proj_n.var()))
    meta = {"n_positive": n_p, "n_negative": n_n, "norm": float(np.linalg.norm(d.vector_D)),
            "separation": float((proj_p.mean() - proj_n.mean()) / max(pooled, 1e-12)),
            "source": [str(positive.path), str(negative.path)]}
    return dataclasses.replace(d, meta=meta)


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Logistic-regression probe options."""

    steps: int = 300  # optimizer steps (each on one chunk-sized minibatch of both classes)
    lr: float = 0.01  # Adam learning rate (features are standardised, so one rate fits all layers)
    l2: float = 1e-3  # weight decay on the (standardised) weights
    batch_size: int = 512  # rows per class per step
    heldout_every: int = 5  # examples with index % heldout_every == 0 are held out (0 = none; accuracy on train)
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.l2 < 0 or self.heldout_every < 0:
            raise UserError("probe: steps, batch_size >= 1, lr > 0, l2 >= 0, heldout_every >= 0 expected")


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    direction: Direction  # the probe's weight vector mapped back to raw activation space
    bias: float  # logit = x . direction.vector_D + bias
    train_accuracy: float
    heldout_accuracy: float  # NaN when nothing was held out
    n_train: int
    n_heldout: int


def _class_batches(store: ActivationStore, layer: int, keep, size: int, rng: np.random.Generator):
    """Endless minibatches of `size` training rows of one class, chunk order and rows reshuffled per pass."""
    buf = np.zeros((0, store.d_model), np.float32)
    while True:
        got = False
        for c in rng.permutation(store.num_chunks):
            x = np.asarray(store.chunk(c, layer), np.float32)[keep(store.chunk_rows(c))]
            got |= len(x) > 0
            buf = np.concatenate([buf, x[rng.permutation(len(x))]])
            while len(buf) >= size:
                yield buf[:size]
                buf = buf[size:]
        if not got:
            raise UserError(f"{store.path}: no training rows at layer {layer}")
        if len(buf):  # a class smaller than one batch: repeat it
            yield np.resize(buf, (size, store.d_model))
            buf = buf[:0]


def train_probe(positive: ActivationStore, negative: ActivationStore, layer: int, cfg: ProbeConfig = ProbeConfig(),
                name: str = "probe") -> ProbeResult:
    """Balanced logistic regression positive-vs-negative at `layer`; accuracy on held-out examples."""
    every = cfg.heldout_every
    train = lambda rows: ~heldout_rows(rows, every)
    mu_p, var_p, _ = stream_moments(positive, layer, train)
    mu_n, var_n, _ = stream_moments(negative, layer, train)
    mu, sd = 0.5 * (mu_p + mu_n), np.sqrt(0.5 * (var_p + var_n)) + 1e-6  # standardise with class-balanced moments
    mu32, sd32 = mu.astype(np.float32), sd.astype(np.float32)
    opt = optax.adamw(cfg.lr, weight_decay=cfg.l2)
    params = {"w": jnp.zeros(positive.d_model), "b": jnp.zeros(())}
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x_pos, x_neg):
        def loss(p):
            lp = ((x_pos - mu32) / sd32) @ p["w"] + p["b"]
            ln = ((x_neg - mu32) / sd32) @ p["w"] + p["b"]
            return 0.5 * (jnp.mean(optax.sigmoid_binary_cross_entropy(lp, 1.0))
                          + jnp.mean(optax.sigmoid_binary_cross_entropy(ln, 0.0)))

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    rng = np.random.default_rng(cfg.seed)
    pos_b = _class_batches(positive, layer, train, cfg.batch_size, rng)
    neg_b = _class_batches(negative, layer, train, cfg.batch_size, rng)
    for _ in range(cfg.steps):
        params, opt_state, _ = step(params, opt_state, next(pos_b), next(neg_b))
    w = np.asarray(params["w"], np.float64) / sd
    b = float(params["b"]) - float(w @ mu)
    acc = {}
    for split, pick in (("train", train), ("heldout", lambda rows: heldout_rows(rows, every))):
        right = total = 0
        for store, label in ((positive, True), (negative, False)):
            for x, rows in store.iter_chunks(layer):
                x = x[pick(rows)]
                right += int(np.sum((x @ w + b > 0) == label))
                total += len(x)
        acc[split] = (right / total if total else float("nan"), total)
    direction = Direction(name, layer, w.astype(np.float32),
                          {"train_accuracy": acc["train"][0], "heldout_accuracy": acc["heldout"][0], "bias": b})
    return ProbeResult(direction, b, acc["train"][0], acc["heldout"][0], acc["train"][1], acc["heldout"][1])
