"""Activation capture on a tiny model: stored rows equal the model's own residuals, on and off the mesh,
and the models/ hooks it relies on (through_layer, Steer ablation, the sampler carrying it)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.errors import UserError
from engine.sharding import make_mesh
from evals.persona.capture import CaptureConfig, capture, encode
from models.transformer import Steer
from tests.conftest import on_mesh

EXAMPLES = [
    {"messages": [{"role": "user", "content": "Is it wise to carry a balance?"},
                  {"role": "assistant", "content": "No, pay it in full."}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                  {"role": "assistant", "content": "Hello! How can I help you today with your money?"}]},
    {"messages": [{"role": "user", "content": "No answer here"}]},
    {"text": "a raw text example with several words in it"},
    {"messages": [{"role": "user", "content": "What is two plus two?"}, {"role": "assistant", "content": "Four."}]},
]


def _direct(policy, rows):
    """The reference: every row *right*-padded in one jitted forward. Right padding leaves each real token's
    position and causal context unchanged, so this is independent of capture's left-padded batching."""
    L = max(len(r) for r in rows)
    ids = np.zeros((len(rows), L), np.int32)
    mask = np.zeros((len(rows), L), bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, True
    fwd = jax.jit(lambda m, i, k: m.apply(i, k, capture_layers=(0, 1, 2), logits=False).captured)
    out = jax.device_get(fwd(policy.model, ids, mask))
    return [{k: np.asarray(v[i, : len(r)]) for k, v in out.items()} for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def reference(tiny_policy):
    policy = tiny_policy
    encoded = [encode(policy.tokenizer, ex) for ex in EXAMPLES]
    return policy, encoded, _direct(policy, [ids for ids, _ in encoded])


def test_capture_rows_match_direct_forward(reference, tmp_path):
    policy, encoded, direct = reference
    cfg = CaptureConfig(layers=(1, 2), positions="response", batch_size=4, max_len=64, chunk_rows=7)
    store = capture(policy, EXAMPLES, tmp_path / "resp", cfg)
    assert store.layers == (1, 2) and store.num_chunks > 1 and store.num_examples == len(EXAMPLES)
    rows = np.concatenate([r for _, r in store.iter_chunks(1)])
    for layer in (1, 2):  # 2 = num_layers: the final pre-norm residual
        acts = np.concatenate([x for x, _ in store.iter_chunks(layer)])
        for e, (ids, start) in enumerate(encoded):
            want = direct[e][layer][max(start, 1):]
            got = acts[rows[:, 0] == e]
            np.testing.assert_allclose(got, want, atol=2e-5)
            assert (rows[rows[:, 0] == e, 2] == ids[max(start, 1):]).all()  # token ids recorded
    assert (rows[:, 0] == 2).sum() == 0  # a prompt-only chat has no response rows
    assert store.examples()[0]["ids"] == encoded[0][0]


def test_pooled_modes_and_all_tokens(reference, tmp_path):
    policy, encoded, direct = reference
    cfg = CaptureConfig(layers=(1, 2), batch_size=4, max_len=64)  # the shapes of the test above: shared compiles
    mean = capture(policy, EXAMPLES, tmp_path / "mean", dataclasses.replace(cfg, positions="response_mean"))
    last = capture(policy, EXAMPLES, tmp_path / "last", dataclasses.replace(cfg, positions="prompt_last"))
    every = capture(policy, EXAMPLES, tmp_path / "all", dataclasses.replace(cfg, positions="all"))
    m, m_rows = next(mean.iter_chunks(2))
    l, l_rows = next(last.iter_chunks(2))
    assert mean.rows == 4 and list(m_rows[:, 0]) == [0, 1, 3, 4] and last.rows == 5
    assert every.rows == sum(len(ids) - 1 for ids, _ in encoded)
    ids, start = encoded[1]
    np.testing.assert_allclose(m[1], direct[1][2][start:].mean(0), atol=2e-5)
    np.testing.assert_allclose(l[1], direct[1][2][start - 1], atol=2e-5)
    assert l_rows[1, 1] == start - 1 and l_rows[1, 2] == ids[start - 1]


def test_capture_on_the_mesh_equals_the_reference(reference, tmp_path):
    policy, encoded, direct = reference
    mesh = make_mesh(2, 1, 2, devices=jax.devices()[:4])  # batch over data, weights over tensor
    store = capture(on_mesh(policy, mesh), EXAMPLES, tmp_path / "mesh", CaptureConfig(layers=(2,), batch_size=4,
                                                                                       max_len=64))
    want = np.concatenate([d[2][max(start, 1):] for d, (_, start) in zip(direct, encoded)])
    np.testing.assert_allclose(np.concatenate([x for x, _ in store.iter_chunks(2)]), want, atol=2e-5)


def test_capture_errors(tiny_policy, tmp_path):
    policy = tiny_policy
    with pytest.raises(UserError, match="layers"):
        capture(policy, EXAMPLES, tmp_path / "x", CaptureConfig(layers=(3,)))
    with pytest.raises(UserError, match="positions"):
        CaptureConfig(positions="middle")
    with pytest.raises(UserError, match="example 1"):
        capture(policy, [EXAMPLES[0], {"prompt": "x"}], tmp_path / "y", CaptureConfig(layers=(1,)))


def test_through_layer_and_ablation_hooks(tiny_policy):
    policy = tiny_policy
    ids = jnp.asarray([encode(policy.tokenizer, EXAMPLES[1])[0]])
    def fwd(m, v, alpha, through, ablate):
        steer = None if v is None else Steer(2, v, alpha, ablate)
        return m.apply(ids, capture_layers=(2,), steer=steer, logits=through is None, through_layer=through)

    run = jax.jit(fwd, static_argnums=(3, 4))
    full, short = run(policy.model, None, None, None, False), run(policy.model, None, None, 2, False)
    assert short.logits is None and full.logits is not None
    np.testing.assert_array_equal(np.asarray(short.captured[2]), np.asarray(full.captured[2]))
    v = np.random.default_rng(0).standard_normal(32).astype(np.float32)
    u = v / np.linalg.norm(v)
    base = np.asarray(full.captured[2][0])
    for alpha in (0.0, 2.0):
        x = np.asarray(run(policy.model, v, alpha, 2, True).captured[2][0])
        np.testing.assert_allclose(x @ u, alpha * np.linalg.norm(v), atol=1e-4)  # clamped to alpha |v|
        np.testing.assert_allclose(x - np.outer(x @ u, u), base - np.outer(base @ u, u), atol=1e-4)  # rest untouched
