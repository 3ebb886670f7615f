"""Stores, directions, probes, the TopK SAE and model diffing on synthetic activations with known answers.

The synthetic "model": rows are sparse combinations of a random dictionary plus noise. The
"fine-tuned" checkpoint sees the same rows with one planted feature switched on in 40% of them;
diffing must find that direction -- as a mean shift, as the top-ranked SAE latent, and as the
top-ranked candidate direction.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.errors import UserError
from engine.sharding import make_mesh
from evals.persona.diffing import decoder_cosines, mean_shift, rank_directions, rank_latents
from evals.persona.directions import Direction, ProbeConfig, mean_difference, project, train_probe
from evals.persona.latents import latent_stats
from evals.persona.sae import SAE, SAEConfig, SAEParams, _losses, evaluate, train_sae
from evals.persona.store import ActivationStore, StoreWriter, heldout_rows, stream_moments

D, M, LAYER = 32, 48, 3


def _unit(v):
    return v / np.linalg.norm(v)


def _codes(n, rng):
    """Sparse codes [n, M]: 3 active dictionary features per row, magnitudes in [1, 3]."""
    c = np.zeros((n, M), np.float32)
    for r in range(n):
        c[r, rng.choice(M, 3, replace=False)] = rng.uniform(1, 3, 3)
    return c


def _write(path, x, chunk_rows=700, rows_per_example=4):
    w = StoreWriter(path, [LAYER], D, "response", chunk_rows=chunk_rows)
    n = len(x)
    for e in range(0, n, rows_per_example):
        w.add_example(list(range(rows_per_example)), 0)
    ex = np.arange(n) // rows_per_example
    w.add({LAYER: x}, np.stack([ex, np.arange(n) % rows_per_example, np.zeros(n, int)], 1))
    return w.close()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(0)
    dictionary = np.stack([_unit(rng.standard_normal(D)) for _ in range(M)]).astype(np.float32)
    d = _unit(rng.standard_normal(D)).astype(np.float32)
    n = 4000
    base = _codes(n, rng) @ dictionary + 0.05 * rng.standard_normal((n, D)).astype(np.float32) + 0.5
    on = rng.random(n) < 0.4
    after = base + np.outer(on * rng.uniform(2, 4, n), d).astype(np.float32)
    tmp = tmp_path_factory.mktemp("planted")
    return _write(tmp / "before", base), _write(tmp / "after", after), d, base


def test_store_round_trip_in_chunks(planted, tmp_path):
    before, _, _, base = planted
    assert before.num_chunks == 6 and before.chunk_sizes[-1] == 4000 - 5 * 700 and before.rows == 4000
    got = np.concatenate([x for x, _ in before.iter_chunks(LAYER)])
    np.testing.assert_array_equal(got, base)
    rows = np.concatenate([r for _, r in before.iter_chunks(LAYER)])
    assert (rows[:, 0] == np.arange(4000) // 4).all() and len(before.examples()) == 1000
    mean, var, n = stream_moments(before, LAYER)
    assert n == 4000
    np.testing.assert_allclose(mean, base.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, base.var(0), rtol=1e-4, atol=1e-5)
    assert heldout_rows(rows, 5).sum() == 4 * 200  # whole examples held out
    with pytest.raises(UserError, match="already holds"):
        StoreWriter(before.path, [LAYER], D, "response")
    with pytest.raises(UserError, match="not an activation store"):
        ActivationStore(tmp_path)
    with pytest.raises(UserError, match="layers"):
        before.chunk(0, LAYER + 1)


def test_mean_shift_and_direction_ranking_recover_the_planted_direction(planted, tmp_path):
    before, after, d, _ = planted
    shift = mean_shift(before, after, LAYER)
    assert float(shift.unit_D @ d) > 0.99
    rng = np.random.default_rng(1)
    others = [_unit(v - (v @ d) * d) for v in rng.standard_normal((5, D))]  # unrelated: orthogonal to d
    candidates = [Direction(f"other{i}", LAYER, v.astype(np.float32)) for i, v in enumerate(others)]
    ranked = rank_directions([*candidates, Direction("planted", LAYER, d)], before, after, LAYER)
    assert ranked[0].name == "planted" and ranked[0].effect > 0.8 and abs(ranked[1].effect) < 0.1
    f = shift.save(tmp_path / "shift.npz")
    back = Direction.load(f)
    assert back.layer == LAYER and np.allclose(back.vector_D, shift.vector_D)


def test_contrastive_direction_and_probe_separate_the_sets(planted, tmp_path):
    _, after, d, base = planted
    # Contrast: rows with the feature on vs the same rows without it (the same examples in both sets).
    on = np.abs((np.concatenate([x for x, _ in after.iter_chunks(LAYER)]) - base) @ d) > 1
    pos, neg = _write(tmp_path / "pos", (base + 3 * d)[on]), _write(tmp_path / "neg", base[on])
    diff = mean_difference(pos, neg, LAYER, "planted")
    assert float(diff.unit_D @ d) > 0.999 and diff.meta["separation"] > 4
    proj = project(pos, LAYER, diff) - project(neg, LAYER, diff)
    np.testing.assert_allclose(proj, 3.0, atol=1e-3)
    res = train_probe(pos, neg, LAYER, ProbeConfig(steps=60, batch_size=256))
    assert res.heldout_accuracy > 0.97 and res.n_heldout > 0 and res.train_accuracy > 0.97
    assert float(res.direction.unit_D @ d) > 0.5


def test_sae_on_the_mesh_learns_and_diffing_finds_the_planted_latent(planted, tmp_path):
    before, after, d, _ = planted
    cfg = SAEConfig(width=96, k=4, aux_k=16, steps=300, batch_size=256, lr=5e-3, dead_tokens=2000, log_every=50)
    sae, hist = train_sae(after, LAYER, cfg, mesh=make_mesh(2, 1, 4))
    assert sae.params.w_enc_DxN.sharding.spec[1] == "tensor"  # latents split over the tensor axis
    assert hist[-1]["fvu"] < 0.5 * hist[0]["fvu"]
    ev = evaluate(sae, after, LAYER)
    assert ev["fvu"] < 0.25 and ev["l0"] <= 4 and ev["rows"] == 400  # held-out examples (every 10th) only
    ranked = rank_latents(sae, before, after, LAYER)
    top = ranked[0]
    cos = decoder_cosines(sae, Direction("planted", LAYER, d))
    assert cos[top.latent] > 0.9, (top, cos.max())
    assert top.freq_after > top.freq_before + 0.2 and top.delta > 2 * ranked[1].delta
    stats = latent_stats(sae, after, LAYER, top_n=5)
    assert stats.rows == 4000 and (np.diff(stats.top_values_NxT[top.latent]) <= 0).all()
    assert stats.freq_N.sum() <= 4 + 1e-6  # sum of firing frequencies = mean L0 <= k
    path = sae.save(tmp_path / "sae")
    back = SAE.load(path)
    np.testing.assert_allclose(back.reconstruct(before.chunk(0, LAYER)), sae.reconstruct(before.chunk(0, LAYER)),
                               rtol=1e-5, atol=1e-5)


def test_auxk_loss_reaches_only_dead_latents_and_dead_tracking_counts_rows(planted):
    _, after, _, _ = planted
    x = jnp.asarray(np.asarray(after.chunk(0, LAYER), np.float32)[:128])
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, D)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    p = SAEParams(jnp.asarray(w.T), jnp.zeros(64), jnp.asarray(w), jnp.asarray(x.mean(0)))
    dead = jnp.arange(64) >= 48
    cfg = SAEConfig(width=64, k=4, aux_k=8)
    aux_only = lambda q: _losses(q, x, dead, cfg)[1][1]
    aux, g = jax.jit(jax.value_and_grad(aux_only))(p)
    assert float(aux) > 0
    live_cols = np.abs(np.asarray(g.w_enc_DxN))[:, :48].max()
    assert live_cols == 0 and np.abs(np.asarray(g.w_enc_DxN))[:, 48:].max() > 0
    assert np.abs(np.asarray(g.w_dec_NxD))[:48].max() == 0 and np.abs(np.asarray(g.w_dec_NxD))[48:].max() > 0
    no_aux = jax.jit(lambda q, dead_N: _losses(q, x, dead_N, cfg)[1][1])
    assert float(no_aux(p, jnp.zeros(64, bool))) == 0  # nothing dead: no aux term
