"""Scanned (stacked) layers: the same model as the Python loop -- HF import / export, sharding, hooks, remat."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import models
from engine.sharding import make_mesh

TINY = dict(vocab_size=160, hidden_size=64, intermediate_size=112, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(
        transformers.Qwen3Config(**TINY, head_dim=24, tie_word_embeddings=False)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("qwen3")
    hf.save_pretrained(d)
    return d


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, TINY["vocab_size"], (4, 19))
    mask = np.ones_like(ids, bool)
    for row, pad in enumerate((0, 3, 8, 12)):
        mask[row, :pad] = False
    return ids, mask


def _hf_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
                     position_ids=torch.tensor(np.maximum(mask.cumsum(1) - 1, 0))).logits.numpy()


def test_scan_import_export_match_transformers(qwen3_dir, tmp_path):
    ids, mask = _batch()
    ref = _hf_logits(transformers.AutoModelForCausalLM.from_pretrained(qwen3_dir).eval(), ids, mask)
    policy = models.load(qwen3_dir, scan_layers=True)
    assert policy.model.layers.attn.q_DxHxE.get_value().shape[0] == TINY["num_hidden_layers"]
    ours = np.asarray(policy.model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    assert np.abs(ours - ref)[mask].max() < 1e-4
    models.save_hf(policy, tmp_path / "out", max_shard_bytes=30_000)  # several safetensors shards
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert np.abs(_hf_logits(back, ids, mask) - ref)[mask].max() < 1e-4


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 8, 1)])
def test_scan_sharded_load_matches_single_device(qwen3_dir, shape):
    ids, mask = _batch(1)
    ref = np.asarray(models.load(qwen3_dir).model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    mesh = make_mesh(*shape)
    with jax.set_mesh(mesh):
        policy = models.load(qwen3_dir, mesh=mesh, scan_layers=True)
        q = policy.model.layers.attn.q_DxHxE.get_value()
        assert q.sharding.spec[0] is None  # the layers axis is never split
        out = jax.jit(lambda m, i, k: m(i, attention_mask=k))(policy.model, jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(out)[mask], ref[mask], atol=1e-5)


def test_scan_hooks_match_loop(qwen3_dir):
    loop, scan = models.load(qwen3_dir), models.load(qwen3_dir, scan_layers=True)
    ids, mask = (jnp.asarray(x) for x in _batch(2))
    v = jnp.asarray(np.random.default_rng(0).normal(size=TINY["hidden_size"]), jnp.float32)
    kw = dict(capture_layers=(0, 2, 3), steer=models.Steer(layer=1, vector_D=v, alpha=2.0))
    a, b = loop.model.apply(ids, mask, **kw), scan.model.apply(ids, mask, **kw)
    m = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(b.logits)[m], np.asarray(a.logits)[m], atol=1e-5)
    for layer in (0, 2, 3):
        np.testing.assert_allclose(np.asarray(b.captured[layer])[m], np.asarray(a.captured[layer])[m], atol=1e-5)
    early = scan.model.apply(ids, mask, capture_layers=(1,), through_layer=2, logits=False)
    want = loop.model.apply(ids, mask, capture_layers=(1,), through_layer=2, logits=False)
    assert early.logits is None
    np.testing.assert_allclose(np.asarray(early.hidden)[m], np.asarray(want.hidden)[m], atol=1e-5)
    np.testing.assert_allclose(np.asarray(early.captured[1])[m], np.asarray(want.captured[1])[m], atol=1e-5)


@pytest.mark.parametrize("remat", ["none", "block", "full"])
def test_remat_levels_give_the_same_gradients(remat):
    cfg = models.ModelConfig(family="qwen2", vocab_size=128, hidden_size=64, intermediate_size=96,
                             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
    ids, mask = (jnp.asarray(x) for x in _batch(3))
    ids = ids % 128

    def grads(c):
        graphdef, params = nnx.split(models.init(c, seed=5), nnx.Param)

        def loss(p):
            return jnp.mean(jax.nn.log_softmax(nnx.merge(graphdef, p)(ids, attention_mask=mask))[..., 7])

        return [np.asarray(g) for g in jax.tree.leaves(jax.jit(jax.grad(loss))(params))]

    ref = grads(dataclasses.replace(cfg, scan_layers=True))  # remat none, scanned
    got = grads(dataclasses.replace(cfg, remat=remat, scan_layers=True))
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    loop = grads(dataclasses.replace(cfg, remat=remat, scan_layers=False))  # per-layer leaves, same values
    np.testing.assert_allclose(sum(float(np.abs(x).sum()) for x in loop), sum(float(np.abs(x).sum()) for x in ref),
                               rtol=1e-5)


def test_remat_accepts_the_old_bool():
    assert models.ModelConfig(remat=True).remat == "full" and models.ModelConfig(remat=False).remat == "none"
    assert models.ModelConfig(remat="block").scan and not models.ModelConfig().scan  # auto: scan with remat
    assert not models.ModelConfig(remat="block", scan_layers=False).scan
