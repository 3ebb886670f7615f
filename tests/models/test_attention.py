"""Attention kernels against the reference einsum: full forward with left padding, prefill, decode, gradients.

Every kernel that runs on CPU is checked: "xla" (jax.nn.dot_product_attention), "chunked" (query chunks under
jax.checkpoint) and "splash" (the Pallas TPU kernel in interpret mode). cuDNN needs a GPU (benchmarks/device.py
checks it there); its right-padding roll is checked here on its own.

Tolerances, relative to the logit scale s = max |reference logit| (about 10 here), real positions only:
  float32:  1e-5 * s (the kernels only reorder float32 sums; observed <= 2e-6 * s, splash the largest);
            gradients 3e-5 of each parameter gradient's scale (observed 1.5e-5, splash)
  bfloat16: 5e-2 * s against the bfloat16 reference (another rounding order of bf16 probabilities and
            contexts; observed 0 for xla / chunked on CPU, 2.9e-2 * s for splash), and no further from the
            float32 reference than 1.1x the bfloat16 reference's own distance to it + 1e-2 * s.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models import attention
from models.transformer import KVCache, PagedKV, write_block

F32_TOL, BF16_TOL, BF16_SLACK = 1e-5, 5e-2, 1e-2  # relative to the logit scale (see above)
CFG = models.ModelConfig(family="qwen2", vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=True, attention_chunk=48)
L = 128  # splash tiles lengths by 128
KERNELS = ["xla", "chunked", "splash"]


def _batch(seed=0, B=3, length=L):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CFG.vocab_size, (B, length)).astype(np.int32)
    mask = np.ones((B, length), bool)
    for row, pad in enumerate((0, 17, 90)[:B]):
        mask[row, :pad] = False  # left padding
    mask[0, -5:] = False  # and right padding (a completion that stopped early)
    return jnp.asarray(ids), jnp.asarray(mask)


def _model(cfg, seed=1):
    model = models.init(cfg, seed=seed)
    # A larger init than 0.02 so attention is far from uniform (otherwise every kernel agrees trivially).
    nnx.update(model, jax.tree.map(lambda x: x * 4, nnx.state(model, nnx.Param)))
    return model


def _logits(cfg, ids, mask):
    return np.asarray(jax.jit(lambda i, m: _model(cfg)(i, attention_mask=m))(ids, mask), np.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_full_forward_matches_reference(kernel, dtype):
    ids, mask = _batch()
    ref = _logits(dataclasses.replace(CFG, attention="reference", dtype=dtype), ids, mask)
    out = _logits(dataclasses.replace(CFG, attention=kernel, dtype=dtype), ids, mask)
    m = np.asarray(mask)
    scale = np.abs(ref)[m].max()
    assert np.abs(out - ref)[m].max() < (F32_TOL if dtype == "float32" else BF16_TOL) * scale
    assert np.isfinite(out).all()  # padding positions too: nothing NaN leaks into a masked loss
    if dtype == "bfloat16":
        ref32 = _logits(dataclasses.replace(CFG, attention="reference"), ids, mask)
        own = np.abs(ref - ref32)[m].max()
        assert np.abs(out - ref32)[m].max() <= 1.1 * own + BF16_SLACK * scale


@pytest.mark.parametrize("kernel", ["xla", "chunked"])
def test_sliding_window_matches_reference(kernel):
    cfg = dataclasses.replace(CFG, family="mistral", attention_bias=False, sliding_window=7)
    ids, mask = _batch(seed=2, length=40)
    ref = _logits(dataclasses.replace(cfg, attention="reference", attention_chunk=16), ids, mask)
    out = _logits(dataclasses.replace(cfg, attention=kernel, attention_chunk=16), ids, mask)
    m = np.asarray(mask)
    assert np.abs(out - ref)[m].max() < F32_TOL * np.abs(ref)[m].max()


@pytest.mark.parametrize("kernel", ["chunked", "splash"])
def test_gradients_match_reference(kernel):
    ids, mask = _batch(seed=3, B=2)

    def grads(cfg):
        model = _model(cfg)
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(p):
            logits = nnx.merge(graphdef, p)(ids, attention_mask=mask)
            return jnp.sum(jnp.where(mask[..., None], jax.nn.log_softmax(logits), 0.0)) / 1e3

        return jax.tree.leaves(jax.jit(jax.grad(loss))(params))

    ref = grads(dataclasses.replace(CFG, attention="reference"))
    got = grads(dataclasses.replace(CFG, attention=kernel))
    for a, b in zip(got, ref, strict=True):  # 3e-5 of each gradient's scale (observed: splash 1.5e-5)
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a), b, atol=3e-5 * np.abs(b).max())


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("kernel", ["reference", "chunked", "splash"])
def test_prefill_then_paged_decode_matches_full_forward(kernel, scan):
    """Prefill P prompts (return_kv), decode 2 steps for G = 2 rows per prompt against the shared prompt KV and
    two completion blocks (one full, one filling): the logits equal a full forward over prompt + new tokens."""
    cfg = dataclasses.replace(CFG, attention=kernel, scan_layers=scan)
    model = _model(cfg)
    ids, mask = _batch(seed=4, B=2)
    P, G, steps = 2, 2, 3
    new = np.random.default_rng(5).integers(0, cfg.vocab_size, (P * G, steps)).astype(np.int32)
    prompt_mask = np.asarray(mask).copy()
    prompt_mask[0, -5:] = True  # prompts are left-padded only
    prompt_mask = jnp.asarray(prompt_mask)
    full_ids = np.concatenate([np.repeat(np.asarray(ids), G, 0), new], 1)
    full_mask = np.concatenate([np.repeat(np.asarray(prompt_mask), G, 0), np.ones_like(new, bool)], 1)
    ref = _logits(dataclasses.replace(cfg, attention="reference", scan_layers=False), jnp.asarray(full_ids),
                  jnp.asarray(full_mask))

    @jax.jit
    def run(ids, pmask, new):
        out = model.apply(ids, pmask, logits=False, return_kv=True)
        pk, pv, ppos = out.kv
        pos = jnp.repeat(jnp.sum(pmask, axis=1, dtype=jnp.int32), G)
        blocks = [PagedKV.block(cfg, P * G, 2), PagedKV.block(cfg, P * G, 2)]  # slots 0-1, 2-3
        logits = []
        for t in range(steps):
            j, off = divmod(t, 2)
            done = blocks[:j + 1]
            kv = PagedKV(pk, pv, ppos, tuple(b[0] for b in done), tuple(b[1] for b in done),
                         tuple(b[2] for b in done))
            h, nk, nv = model.decode(new[:, t], pos + t, kv)
            logits.append(model.logits_from_hidden(h)[:, 0])
            bk, bv, bp = blocks[j]
            blocks[j] = (write_block(cfg, bk, nk, off), write_block(cfg, bv, nv, off),
                         jax.lax.dynamic_update_slice(bp, (pos + t)[:, None], (0, off)))
        return jnp.stack(logits, 1)

    got = np.asarray(run(ids, prompt_mask, jnp.asarray(new)))
    # Slot L + t of the full forward holds new token t: its logits are what decode step t returns.
    want = ref[:, L:L + steps]
    np.testing.assert_allclose(got, want, atol=F32_TOL * np.abs(want).max())


def test_general_kv_cache_matches_paged_decode_in_scan_mode():
    """The general KVCache path (prefill + decode) under scan_layers equals the loop layout's."""
    ids, mask = _batch(seed=6, B=2, length=24)
    outs = []
    for scan in (False, True):
        cfg = dataclasses.replace(CFG, scan_layers=scan)
        model = _model(cfg)
        cache = KVCache.zeros(cfg, 2, 30)
        o = model.apply(ids, mask, cache=cache)
        o2 = model.apply(jnp.asarray([[3], [4]]), None, positions_BxL=jnp.sum(mask, 1, keepdims=True), cache=o.cache)
        outs.append((np.asarray(o.logits), np.asarray(o2.logits)))
    m = np.asarray(mask)
    tol = F32_TOL * np.abs(outs[0][0][m]).max()
    np.testing.assert_allclose(outs[1][0][m], outs[0][0][m], atol=tol)
    np.testing.assert_allclose(outs[1][1], outs[0][1], atol=tol)


def test_right_padding_roll_round_trips():
    _, mask = _batch()
    idx, lengths = attention.right_padding(mask)
    rolled = np.take_along_axis(np.asarray(mask), np.asarray(idx), 1)
    n = np.asarray(mask).sum(1)
    np.testing.assert_array_equal(np.asarray(lengths), n)
    for row in range(len(n)):  # real tokens first, padding after: cuDNN's layout
        assert rolled[row, :n[row]].all() and not rolled[row, n[row]:].any()
    back = np.take_along_axis(rolled, np.asarray(attention.unroll_index(mask)), 1)
    np.testing.assert_array_equal(back, np.asarray(mask))


def test_auto_kernel_by_backend():
    bf = dataclasses.replace(CFG, dtype="bfloat16")
    assert attention.resolve(bf, 1024, "gpu") == "cudnn"
    assert attention.resolve(CFG, 1024, "gpu") == "chunked"  # cuDNN flash attention has no float32
    assert attention.resolve(bf, 1024, "tpu") == ("splash" if attention.splash_available() else "chunked")
    assert attention.resolve(bf, 1000, "tpu") == "chunked"  # splash tiles by 128
    assert attention.resolve(CFG, 1024, "cpu") == attention.CPU_DEFAULT
    assert attention.resolve(dataclasses.replace(CFG, attention="xla"), 8, "gpu") == "xla"


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 2, 4)])
def test_splash_under_a_mesh_runs_per_shard(shape):
    """The Pallas kernel is not partitioned by XLA: it runs inside shard_map (batch, and heads when both the query
    and the kv heads split over the tensor axis); the result equals the unsharded reference."""
    from engine.sharding import make_mesh

    ids, mask = _batch(seed=7, B=4)
    ref = _logits(dataclasses.replace(CFG, attention="reference"), ids, mask)
    mesh = make_mesh(*shape)
    with jax.set_mesh(mesh):
        model = models.init(dataclasses.replace(CFG, attention="splash"), mesh=mesh, seed=1)
        nnx.update(model, jax.tree.map(lambda x: x * 4, nnx.state(model, nnx.Param)))
        out = np.asarray(jax.jit(lambda m, i, k: m(i, attention_mask=k))(model, ids, mask))
    m = np.asarray(mask)
    assert np.abs(out - ref)[m].max() < F32_TOL * np.abs(ref)[m].max()
