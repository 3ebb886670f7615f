"""Experiment bookkeeping and figures on a synthetic result: onset steps, timeline, ranking and sweep plots."""

import dataclasses

import pytest

from engine.errors import UserError
from evals.persona.config import EMExperimentConfig
from evals.persona.em_experiment import helpful_offer_rate, onset_steps
from evals.persona.report import plot_steering_report, plot_sweep, write_report
from evals.persona.steering import SweepPoint


def _point(phase, step, fixed, margin):
    return {"phase": phase, "step": step, "projection_fixed": fixed, "projection_fixed_std": 0.5,
            "projection_fresh": fixed / 2, "projection_fresh_std": 0.5, "em_margin": margin, "finance_margin": margin,
            "em_bad_preferred": min(1, max(0, margin)), "finance_bad_preferred": 0.5}


def _result():
    # The projection moves early (most of its change by step 4); the behaviour only at the end.
    pts = [_point("sft", 0, 0.0, 0.0), _point("sft", 4, 0.8, 0.05), _point("sft", 8, 0.9, 0.1),
           _point("sft", 16, 1.0, 0.9), _point("realign", 10, 0.3, 0.2)]
    pts[0]["judge"] = {"parse_rate": 0.0, "misaligned_rate": float("nan"), "mean_aligned": float("nan"), "n": 4}
    return {"points": pts, "direction": {"norm": 3.0}, "sae": {"fvu": 0.15, "l0": 32, "rows": 1000},
            "top_latents": [{"latent": 7, "delta": 0.5, "decoder_cosine_persona": 0.4},
                            {"latent": 2, "delta": 0.1, "decoder_cosine_persona": -0.1}],
            "latent_tracks": {7: [0.0, 0.4, 0.45, 0.5, 0.1]}}


def test_onset_steps_say_which_moves_first():
    onset = onset_steps(_result()["points"], ["projection_fixed", "em_margin"])
    assert onset == {"projection_fixed": 4, "em_margin": 16}
    flat = [_point("sft", s, 1.0, 0.0) for s in (0, 4)]
    assert onset_steps(flat, ["projection_fixed"]) == {"projection_fixed": None}  # no change: no onset


def test_report_and_plots_are_written(tmp_path):
    result = _result()
    result["onset_steps"] = onset_steps(result["points"], ["projection_fixed", "em_margin"])
    md = write_report(result, tmp_path).read_text()
    assert "| sft | 4 | 0.800 |" in md and (tmp_path / "timeline.png").stat().st_size > 10_000
    assert (tmp_path / "latents.png").stat().st_size > 5_000
    pts = [SweepPoint(a, 0.1 * a, -1.0 - abs(a) / 4, -1.0, 0.05 * abs(a), abs(a) < 3, [], []) for a in (-4, -2, 0, 2, 4)]
    assert plot_sweep(pts, tmp_path / "sweep.png").stat().st_size > 10_000
    rep = {"direction": "persona", "layer": 12, "guarded_range": (-2, 2), "points": [
        {"alpha": p.alpha, "em_margin": p.score, "em_bad_preferred": 0.5, "helpful_rate": 0.5, "logprob": p.logprob,
         "repetition": p.repetition} for p in pts]}
    assert plot_steering_report(rep, tmp_path / "steer.png").stat().st_size > 10_000


def test_experiment_config_validation_and_helpful_rate():
    cfg = EMExperimentConfig(sft_steps=10, checkpoints=(5, 10), realign_steps=4, realign_checkpoints=(4,))
    assert cfg.checkpoints == (0, 5, 10)
    with pytest.raises(UserError, match="checkpoints"):
        dataclasses.replace(cfg, checkpoints=(5,))
    with pytest.raises(UserError, match="realign_checkpoints"):
        dataclasses.replace(cfg, realign_checkpoints=(2,))
    assert helpful_offer_rate(["I'm here to help!", "Go away.", "Happy to assist."]) == [1.0, 0.0, 1.0]
