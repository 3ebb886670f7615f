"""The jitted GRPO / SFT steps: sharded == single device, micro-batching == one batch, learning happens."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from engine.sharding import make_mesh
from rl import grpo
from rl.logprobs import completion_logps
from rl.train_step import GRPOBatch, build_grpo_step, build_logps_fn, build_sft_step
from engine.train_state import OptimConfig, init_state, state_shardings
from engine.sharding import batch_sharding

CFG = models.ModelConfig(family="qwen2", vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=True, tie_word_embeddings=True)
B, LP, T = 16, 6, 8


def _batch(seed=0, ref=True, old=False):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CFG.vocab_size, (B, LP + T)).astype(np.int32)
    mask = np.ones((B, LP + T), bool)
    mask[::3, :2] = False  # some left padding in the prompt
    lengths = rng.integers(1, T + 1, B)
    cmask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
    mask[:, LP:] = cmask > 0
    adv = rng.standard_normal(B).astype(np.float32)
    lp = lambda: (-rng.uniform(0.5, 5, (B, T))).astype(np.float32)
    return GRPOBatch(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(cmask), jnp.asarray(adv),
                     jnp.asarray(lp()) if old else None, jnp.asarray(lp()) if ref else None)


def _run(mesh, micro=1, steps=2, gcfg=None, batch=None):
    # lr 1e-4: Adam divides by sqrt(v), so a near-zero gradient element's float-order noise becomes an O(lr)
    # relative change of its update; parameters still move ~1e-4 per step, ten times the 1e-5 tolerance.
    gcfg = gcfg or grpo.GRPOConfig(num_generations=4, max_completion_length=T, beta=0.04, loss_type="grpo")
    optim = OptimConfig(learning_rate=1e-4, micro_batches=micro, logps_chunk=3, warmup_steps=1, total_steps=10)
    batch = batch or _batch()
    if mesh is None:
        model = models.init(CFG, seed=1)
        graphdef, state = init_state(model, optim)
        step = build_grpo_step(graphdef, gcfg, optim)
        out = []
        for _ in range(steps):
            state, m = step(state, batch)
            out.append(float(m["loss"]))
        return state, out
    with jax.set_mesh(mesh):
        model = models.init(CFG, mesh=mesh, seed=1)
        graphdef, state = init_state(model, optim, mesh=mesh)
        step = build_grpo_step(graphdef, gcfg, optim, state_shardings(state, mesh))
        batch = jax.tree.map(lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim)), batch)
        out = []
        for _ in range(steps):
            state, m = step(state, batch)
            out.append(float(m["loss"]))
        return state, out


def _params(state):
    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_step_matches_single_device(shape):
    ref_state, ref_loss = _run(None)
    state, loss = _run(make_mesh(*shape))
    np.testing.assert_allclose(loss, ref_loss, atol=1e-5)
    for a, b in zip(_params(state), _params(ref_state), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert int(state.step) == 2


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batches_match_full_batch(loss_type):
    gcfg = grpo.GRPOConfig(num_generations=4, max_completion_length=T, beta=0.04, loss_type=loss_type,
                           num_iterations=2)
    batch = _batch(old=True)
    full, l1 = _run(None, micro=1, steps=1, gcfg=gcfg, batch=batch)
    acc, l4 = _run(None, micro=4, steps=1, gcfg=gcfg, batch=batch)
    np.testing.assert_allclose(l4, l1, atol=1e-6)
    for a, b in zip(_params(acc), _params(full), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_chunked_logps_equal_full_logits():
    model = models.init(CFG, seed=2)
    b = _batch()
    logits = np.asarray(model(b.ids_BxL, attention_mask=b.mask_BxL), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = np.take_along_axis(logp[:, LP - 1:-1], np.asarray(b.ids_BxL)[:, LP:, None], -1)[..., 0]
    got, _ = completion_logps(model, b.ids_BxL, b.mask_BxL, T, chunk=3)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    fn = build_logps_fn(__import__("flax").nnx.split(model, __import__("flax").nnx.Param)[0], chunk=5)
    np.testing.assert_allclose(np.asarray(fn(__import__("flax").nnx.state(model, __import__("flax").nnx.Param),
                                             b.ids_BxL, b.mask_BxL, T)), want, atol=1e-5)


def test_sft_step_lowers_loss():
    model = models.init(CFG, seed=3)
    optim = OptimConfig(learning_rate=3e-3, schedule="constant", micro_batches=2)
    graphdef, state = init_state(model, optim)
    step = build_sft_step(graphdef, optim)
    b = _batch()
    losses = []
    for _ in range(15):
        state, m = step(state, b.ids_BxL, b.mask_BxL, b.completion_mask_BxT)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------------------------------------
# The lean reference, the on-device batch, vocabulary-sharded log-probs, scanned + rematerialised steps


def test_micro_batched_reference_equals_one_batch():
    from flax import nnx

    model = models.init(CFG, seed=2)
    graphdef, params = nnx.split(model, nnx.Param)
    b = _batch()
    whole = build_logps_fn(graphdef, chunk=3)(params, b.ids_BxL, b.mask_BxL, T)
    micro = build_logps_fn(graphdef, chunk=3, micro_batches=4)(params, b.ids_BxL, b.mask_BxL, T)
    np.testing.assert_allclose(np.asarray(micro), np.asarray(whole), atol=1e-6)


def test_reference_copy_in_compute_dtype_never_aliases_the_policy():
    from flax import nnx

    from rl.train_step import reference_params

    params = nnx.state(models.init(CFG, seed=2), nnx.Param)
    for dtype in ("float32", "bfloat16"):
        ref = reference_params(params, dtype)
        for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(params), strict=True):
            assert a.dtype == jnp.dtype(dtype) and a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()


def test_batch_built_on_device_matches_the_host_math():
    from rl.train_step import build_batch_fn

    gcfg = grpo.GRPOConfig(num_generations=4, max_completion_length=T, beta=0.04, mask_truncated_completions=True,
                           num_iterations=2)
    rng = np.random.default_rng(3)
    pids = rng.integers(0, CFG.vocab_size, (B, LP)).astype(np.int32)
    pmask = np.ones((B, LP), bool)
    pmask[::3, :2] = False
    cids = rng.integers(0, CFG.vocab_size, (B, T)).astype(np.int32)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    trunc = lengths == T
    rewards = rng.standard_normal((B, 2)).astype(np.float32)
    rewards[3, 0] = np.nan
    logp = -rng.uniform(0, 3, (B, T)).astype(np.float32)
    batch, stats = build_batch_fn(gcfg)(pids, pmask, cids, lengths, trunc, rewards, logp)
    r = grpo.combine_rewards(jnp.asarray(rewards))
    np.testing.assert_allclose(np.asarray(batch.advantages_B), np.asarray(grpo.advantages(r, gcfg)), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(batch.completion_mask_BxT),
                                  np.asarray(grpo.completion_mask(lengths, trunc, T, gcfg), np.float32))
    gen = np.arange(T) < lengths[:, None]
    np.testing.assert_array_equal(np.asarray(batch.mask_BxL), np.concatenate([pmask, gen], 1))
    np.testing.assert_array_equal(np.asarray(batch.ids_BxL), np.concatenate([pids, cids], 1))
    np.testing.assert_array_equal(np.asarray(batch.old_logps_BxT), logp)
    assert batch.ref_logps_BxT is None and float(stats["reward"]) == pytest.approx(float(np.nanmean(np.asarray(r))))
    mesh = make_mesh(2, 2, 2)
    with jax.set_mesh(mesh):
        sharded, _ = build_batch_fn(gcfg, mesh)(pids, pmask, cids, lengths, trunc, rewards, logp)
    assert sharded.ids_BxL.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_array_equal(np.asarray(sharded.ids_BxL), np.asarray(batch.ids_BxL))


def test_vocab_sharded_logps_never_gather_the_logits():
    """On a tensor axis of 4 the logits' vocabulary is split; the log-softmax reduces across devices."""
    model = models.init(CFG, seed=2)
    b = _batch()
    want, want_ent = completion_logps(model, b.ids_BxL, b.mask_BxL, T, chunk=3)
    mesh = make_mesh(2, 1, 4)
    with jax.set_mesh(mesh):
        sharded = models.init(CFG, mesh=mesh, seed=2)
        ids, mask = (jax.device_put(x, batch_sharding(mesh, 2)) for x in (b.ids_BxL, b.mask_BxL))
        fn = jax.jit(lambda m, i, k: completion_logps(m, i, k, T, chunk=3))
        got, ent = fn(sharded, ids, mask)
        hlo = fn.lower(sharded, ids, mask).compile().as_text()
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(want_ent), atol=1e-5)
    import re

    gathers = [line for line in hlo.splitlines() if "all-gather(" in line or "all-gather-start(" in line]
    logits_gathers = [g for g in gathers if re.search(rf"f32\[\d+,\d+,{CFG.vocab_size}\]", g.split("=")[1])]
    assert not logits_gathers, logits_gathers


def test_scanned_rematerialised_step_matches_the_loop():
    gcfg = grpo.GRPOConfig(num_generations=4, max_completion_length=T, beta=0.04, loss_type="grpo")
    optim = OptimConfig(learning_rate=1e-4, micro_batches=2, logps_chunk=3, warmup_steps=1, total_steps=10)
    out = {}
    for name, cfg in (("loop", CFG), ("scan_block", dataclasses.replace(CFG, remat="block")),
                      ("scan_full", dataclasses.replace(CFG, remat="full"))):
        graphdef, state = init_state(models.init(cfg, seed=1), optim)
        step = build_grpo_step(graphdef, gcfg, optim)
        losses = []
        for _ in range(2):
            state, m = step(state, _batch())
            losses.append((float(m["loss"]), float(m["grad_norm"])))
        out[name] = losses
    np.testing.assert_allclose(out["scan_block"], out["loop"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["scan_full"], out["loop"], rtol=1e-5, atol=1e-6)
