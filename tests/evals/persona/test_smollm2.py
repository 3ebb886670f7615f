"""SmolLM2-135M-Instruct: a TopK SAE (k = 32) on captured residuals reaches FVU <= 0.2 on held-out examples."""

import numpy as np
import pytest

import models
from data import persona_sets
from evals.persona.capture import CaptureConfig, capture
from evals.persona.sae import SAEConfig, evaluate, train_sae


@pytest.mark.slow
def test_smollm2_sae_fvu_at_k32(tmp_path):
    policy = models.load("smollm2-135m-instruct")
    # A small but real mix: finance advice (both kinds), persona answers, re-alignment chats; every response token.
    contrast = persona_sets.persona_contrast()
    examples = (persona_sets.narrow_misaligned(16, 1) + persona_sets.narrow_aligned(16, 2)
                + [c["misaligned"] for c in contrast[:8]] + [c["aligned"] for c in contrast[8:16]])
    store = capture(policy, examples, tmp_path / "acts", CaptureConfig(layers=(6,), positions="response",
                                                                       batch_size=16, max_len=128))
    assert store.rows > 1500 and store.d_model == 576
    # 2x expansion, 80 steps of 256 rows (about 10 passes over the ~1700 training rows).
    sae, hist = train_sae(store, 6, SAEConfig(width=1152, k=32, steps=80, batch_size=256, lr=3e-3, heldout_every=6))
    held = evaluate(sae, store, 6)  # examples 0, 6, 12, ...: never trained on
    assert held["l0"] == 32 and held["rows"] > 200
    assert held["fvu"] <= 0.2, (held, hist[-1])
    assert np.isfinite(hist[-1]["loss"]) and hist[-1]["fvu"] < hist[0]["fvu"]
