"""Figures and a markdown summary for persona runs (matplotlib, headless).

- `plot_timeline`: every measured quantity of an experiment over the checkpoints, as its change
  from step 0 in units of its own spread (so a projection and a preference margin share an axis),
  with the SFT / re-alignment boundary marked: which moves first is read off directly.
- `plot_latent_ranking`: the latents that changed most, with their decoder cosine to the persona
  direction.
- `plot_sweep`: a steering sweep: behaviour score and coherence against the coefficient, with the
  guarded (coherent) range shaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from evals.persona.steering import SweepPoint, guarded_range

SERIES = {  # key -> (label, spread key or None)
    "projection_fixed": ("persona projection, fixed text", "projection_fixed_std"),
    "projection_fresh": ("persona projection, own answers", "projection_fresh_std"),
    "em_margin": ("EM: misaligned-answer preference (nats/token)", None),
    "finance_margin": ("finance: bad-advice preference (nats/token)", None),
}


def _x(points: Sequence[dict]) -> list[float]:
    sft_end = max(p["step"] for p in points if p["phase"] == "sft")
    return [p["step"] + (sft_end if p["phase"] == "realign" else 0) for p in points]


def plot_timeline(result: dict, path: str | Path) -> Path:
    points = result["points"]
    x = _x(points)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for key, (label, spread) in SERIES.items():
        v = np.asarray([p[key] for p in points])
        scale = points[0][spread] if spread else np.std(v) or 1.0
        ax.plot(x, (v - v[0]) / max(scale, 1e-9), marker="o", label=label)
    for lat, track in result.get("latent_tracks", {}).items():
        t = np.asarray(track)
        ax.plot(x, (t - t[0]) / max(t.std(), 1e-9), ls="--", alpha=0.7, label=f"SAE latent {lat}")
        break  # the top latent only; the rest are in the ranking figure
    sft_end = max(p["step"] for p in points if p["phase"] == "sft")
    for a in axes:
        a.axvline(sft_end, color="grey", ls=":")
    ax.set_xlabel("optimizer step (narrow SFT, then re-alignment)")
    ax.set_ylabel("change from step 0 (units of spread)")
    ax.set_title("internal vs behavioural change")
    ax.legend(fontsize=7)
    ax = axes[1]
    for key in ("em_bad_preferred", "finance_bad_preferred"):
        ax.plot(x, [p[key] for p in points], marker="o", label=key.replace("_", " "))
    judged = [(xi, p["judge"]) for xi, p in zip(x, points) if "judge" in p]
    if judged:
        ax.scatter([j[0] for j in judged], [j[1]["parse_rate"] for j in judged], marker="x", color="k",
                   label="judge parse rate")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("rate")
    ax.set_title("behaviour: misaligned answer preferred")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def plot_latent_ranking(result: dict, path: str | Path) -> Path:
    top = result["top_latents"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{c['latent']}\ncos {c['decoder_cosine_persona']:+.2f}" for c in top]
    ax.bar(range(len(top)), [c["delta"] for c in top], color="tab:red")
    ax.set_xticks(range(len(top)), labels, fontsize=7)
    ax.set_ylabel("mean activation change (after - before)")
    ax.set_title("SAE latents ranked by change over narrow SFT")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def plot_sweep(points: Sequence[SweepPoint], path: str | Path, score_label: str = "behaviour score",
               title: str = "steering sweep") -> Path:
    a = [p.alpha for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(a, [p.score for p in points], marker="o", color="tab:blue", label=score_label)
    ax.set_xlabel("steering coefficient alpha")
    ax.set_ylabel(score_label, color="tab:blue")
    lo, hi = guarded_range(points)
    ax.axvspan(lo, hi, color="tab:green", alpha=0.1, label="coherent (guard)")
    ax2 = ax.twinx()
    ax2.plot(a, [p.logprob for p in points], marker="s", color="tab:orange", label="log-prob under unsteered model")
    ax2.plot(a, [p.repetition for p in points], marker="^", color="tab:grey", label="repetition (4-grams)")
    ax2.set_ylabel("coherence")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def write_report(result: dict, out_dir: str | Path) -> Path:
    """results.json -> timeline + ranking figures and report.md in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_timeline(result, out / "timeline.png")
    plot_latent_ranking(result, out / "latents.png")
    lines = ["# Persona experiment", "", f"direction: {json.dumps(result['direction'])}", "",
             (f"SAE: fvu {result['sae']['fvu']:.3f} (held-out), l0 {result['sae']['l0']:.0f}, "
             f"rows {result['sae']['rows']}"), "",
             ("| phase | step | proj fixed | proj fresh | EM bad-pref | EM margin | finance bad-pref | finance margin "
             "| judge parse | judge misaligned |"), "|" + "---|" * 10]
    for p in result["points"]:
        j = p.get("judge", {})
        lines.append(f"| {p['phase']} | {p['step']} | {p['projection_fixed']:.3f} | {p['projection_fresh']:.3f} | "
                     f"{p['em_bad_preferred']:.2f} | {p['em_margin']:.3f} | {p['finance_bad_preferred']:.2f} | "
                     f"{p['finance_margin']:.3f} | {j.get('parse_rate', '')} | {j.get('misaligned_rate', '')} |")
    lines += ["", f"onset steps (half of the SFT change): {result.get('onset_steps')}", "",
              "top latents: " + json.dumps(result["top_latents"]), "", "![timeline](timeline.png)",
              "![latents](latents.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def plot_steering_report(rep: dict, path: str | Path) -> Path:
    """`experiment.steering_report` output: behaviour (preference, helpful rate) and coherence against alpha."""
    pts = rep["points"]
    a = [p["alpha"] for p in pts]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    ax.plot(a, [p["em_margin"] for p in pts], marker="o", color="tab:red", label="EM: misaligned - aligned (nats/token)")
    ax.set_ylabel("log-prob margin", color="tab:red")
    ax.axhline(0, color="grey", lw=0.5)
    ax2 = ax.twinx()
    ax2.plot(a, [p["em_bad_preferred"] for p in pts], marker="s", color="tab:purple", label="EM: misaligned preferred")
    ax2.plot(a, [p["helpful_rate"] for p in pts], marker="^", color="tab:blue", label="helpful-offer rate (generation)")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_ylabel("rate")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax.set_title(f"behaviour: steering along '{rep['direction']}' (layer {rep['layer']})")
    ax = axes[1]
    ax.plot(a, [p["logprob"] for p in pts], marker="o", color="tab:orange", label="log-prob under unsteered model")
    ax.set_ylabel("nats / token")
    ax3 = ax.twinx()
    ax3.plot(a, [p["repetition"] for p in pts], marker="^", color="tab:grey", label="repeated 4-grams")
    ax3.set_ylim(-0.05, 1.05)
    lo, hi = rep["guarded_range"]
    for axis in (*axes,):
        axis.axvspan(lo, hi, color="tab:green", alpha=0.08)
        axis.set_xlabel("steering coefficient alpha (x the direction vector)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.set_title("coherence (green: passes the guard)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)
