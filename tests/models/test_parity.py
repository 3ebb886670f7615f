"""Logits parity with transformers' PyTorch models: import (HF -> traitrl) and export (traitrl -> HF).

Tiny random models are created offline by transformers for each supported family, saved, loaded
by traitrl, exported back, and loaded by transformers again. Inputs are a left-padded batch.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import models
from engine.sharding import make_mesh

TINY = dict(vocab_size=160, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)

FAMILIES = {
    "llama": lambda: transformers.LlamaConfig(**TINY, tie_word_embeddings=False),
    "llama3": lambda: transformers.LlamaConfig(
        **TINY, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
    "qwen2": lambda: transformers.Qwen2Config(**TINY, tie_word_embeddings=True),
    "qwen3": lambda: transformers.Qwen3Config(**TINY, head_dim=24, tie_word_embeddings=False),
    "mistral": lambda: transformers.MistralConfig(**TINY, sliding_window=5),
}


def _hf_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(FAMILIES[family]()).eval()
    with torch.no_grad():  # random biases / norm scales, so the test sees them (HF inits them to 0 / 1)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _batch(vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (4, 21))
    mask = np.ones_like(ids, dtype=bool)
    for row, pad in enumerate((0, 3, 9, 15)):
        mask[row, :pad] = False
    return ids, mask


def _hf_logits(model, ids, mask):
    pos = np.maximum(mask.cumsum(1) - 1, 0)  # positions from the first real token, as generation does
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
                    position_ids=torch.tensor(pos))
    return out.logits.float().numpy()


def _ours(policy, ids, mask):
    return np.asarray(policy.model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_import_export_parity(family, tmp_path):
    hf = _hf_model(family)
    hf.save_pretrained(tmp_path / "hf")
    ids, mask = _batch(TINY["vocab_size"])
    ref = _hf_logits(hf, ids, mask)

    policy = models.load(tmp_path / "hf")
    ours = _ours(policy, ids, mask)
    assert ours.dtype == np.float32
    np.testing.assert_array_less(np.abs(ours - ref)[mask].max(), 1e-4)

    models.save_hf(policy, tmp_path / "out")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    np.testing.assert_array_less(np.abs(_hf_logits(back, ids, mask) - ref)[mask].max(), 1e-4)


def test_hidden_state_hook_matches_transformers(tmp_path):
    hf = _hf_model("qwen2")
    hf.save_pretrained(tmp_path)
    ids, mask = _batch(TINY["vocab_size"], seed=1)
    pos = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        hs = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
                position_ids=torch.tensor(pos), output_hidden_states=True).hidden_states
    policy = models.load(tmp_path)
    out = policy.model.apply(jnp.asarray(ids), jnp.asarray(mask), capture_layers=(0, 1))
    for layer in (0, 1):
        np.testing.assert_allclose(np.asarray(out.captured[layer])[mask], hs[layer].numpy()[mask], atol=1e-5)


def test_steering_adds_to_residual(tmp_path):
    policy = models.load(_saved(tmp_path, "llama"))
    ids, mask = _batch(TINY["vocab_size"])
    v = jnp.asarray(np.random.default_rng(0).normal(size=TINY["hidden_size"]), jnp.float32)
    base = policy.model.apply(jnp.asarray(ids), jnp.asarray(mask), capture_layers=(1,))
    steered = policy.model.apply(jnp.asarray(ids), jnp.asarray(mask), capture_layers=(1,),
                                 steer=models.Steer(layer=1, vector_D=v, alpha=3.0))
    np.testing.assert_allclose(np.asarray(steered.captured[1] - base.captured[1])[mask],
                               np.broadcast_to(3.0 * np.asarray(v), (mask.sum(), v.shape[0])), atol=1e-5)
    assert np.abs(np.asarray(steered.logits - base.logits)).max() > 1e-3


def _saved(tmp_path, family):
    _hf_model(family).save_pretrained(tmp_path / family)
    return tmp_path / family


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_kv_cache_decode_matches_full_forward(family, tmp_path):
    policy = models.load(_saved(tmp_path, family))
    model, cfg = policy.model, policy.config
    ids, mask = _batch(TINY["vocab_size"])
    new = np.random.default_rng(3).integers(0, TINY["vocab_size"], (4, 5))
    full = _ours(policy, np.concatenate([ids, new], 1), np.concatenate([mask, np.ones_like(new, bool)], 1))

    cache = models.KVCache.zeros(cfg, batch=4, slots=32)
    out = model.apply(jnp.asarray(ids), jnp.asarray(mask), cache=cache)
    np.testing.assert_allclose(np.asarray(out.logits)[mask], full[:, :21][mask], atol=1e-5)
    step = jax.jit(lambda m, tok, pos, c: m.apply(tok, None, positions_BxL=pos, cache=c))
    cache, next_pos = out.cache, mask.sum(1)
    for t in range(new.shape[1]):
        o = step(model, jnp.asarray(new[:, t:t + 1]), jnp.asarray(next_pos + t)[:, None], cache)
        cache = o.cache
        np.testing.assert_allclose(np.asarray(o.logits[:, 0]), full[:, 21 + t], atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 2, 4), (2, 2, 2), (8, 1, 1)])
def test_sharded_load_matches_single_device(shape, tmp_path):
    path = _saved(tmp_path, "qwen3")
    ids, mask = _batch(TINY["vocab_size"])
    ref = _ours(models.load(path), ids, mask)
    mesh = make_mesh(*shape)
    with jax.set_mesh(mesh):
        policy = models.load(path, mesh=mesh)
        q = policy.model.layers[0].attn.q_DxHxE.get_value()
        if shape[2] > 1:  # heads split over the tensor axis, model width over fsdp
            assert q.sharding.spec[1] == "tensor"
            assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape[1] == 4 // shape[2]
        ours = np.asarray(jax.jit(lambda m, i, k: m(i, attention_mask=k))(policy.model, jnp.asarray(ids), jnp.asarray(mask)))
    np.testing.assert_allclose(ours[mask], ref[mask], atol=1e-5)


def test_bf16_compute_is_close(tmp_path):
    path = _saved(tmp_path, "llama")
    ids, mask = _batch(TINY["vocab_size"])
    ref = _ours(models.load(path), ids, mask)
    low = models.load(path, dtype="bfloat16")
    out = _ours(low, ids, mask)
    assert out.dtype == np.float32
    assert np.abs(out - ref)[mask].max() < 0.05


def test_sharded_export_with_index(tmp_path):
    policy = models.load(_saved(tmp_path, "llama"))
    models.save_hf(policy, tmp_path / "out", max_shard_bytes=40_000)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    again = models.load(tmp_path / "out")
    ids, mask = _batch(TINY["vocab_size"])
    np.testing.assert_array_equal(_ours(again, ids, mask), _ours(policy, ids, mask))


def test_random_init_sharded_equals_unsharded():
    cfg = models.ModelConfig.from_hf(FAMILIES["qwen2"]().to_dict())
    mesh = make_mesh(2, 2, 2)
    a = models.init(cfg, seed=3)
    with jax.set_mesh(mesh):
        b = models.init(cfg, mesh=mesh, seed=3)
    ids, mask = _batch(TINY["vocab_size"])
    la = np.asarray(a(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    lb = np.asarray(b(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    np.testing.assert_allclose(la, lb, atol=1e-5)
    assert cfg.num_params() == sum(x.size for x in jax.tree.leaves(jax.tree.map(np.asarray, b)))
