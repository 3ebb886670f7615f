"""PNG figures of `traitrl compare` (matplotlib, Agg backend: no display needed on servers and CI).

deltas.png        per-benchmark deltas of each treatment vs the control (plain condition), with intervals and
                  the minimum detectable effect (grey ticks at +-MDE); green / red = p < alpha
cross_domain.png  treatments (labelled with their trained trait domains) x evaluated domains, delta heatmap
persistence.png   plain / harmful-steering / helpful-steering / after-attack scores of every run
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_all(runs: Sequence, comparisons: Sequence, panels: Sequence[dict], out_dir: Path) -> list[Path]:
    """Writes the figures that have data; returns their paths."""
    out = []
    for name, fn, args in (("deltas.png", plot_deltas, (comparisons,)),
                           ("cross_domain.png", plot_cross_domain, (runs, comparisons)),
                           ("persistence.png", plot_persistence, (runs, panels))):
        path = Path(out_dir) / name
        if fn(*args, path):
            out.append(path)
    return out


def plot_deltas(comparisons: Sequence, path: Path) -> bool:
    """One panel per treatment: plain-condition deltas with their intervals, +-MDE ticks, few-cluster rows marked."""
    panels = [(c, [d for d in c.deltas if d.condition == "plain"]) for c in comparisons]
    panels = [(c, ds) for c, ds in panels if ds]
    if not panels:
        return False
    plt = _plt()
    n = max(len(ds) for _, ds in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 1.2 + 0.32 * n), squeeze=False)
    for ax, (c, ds) in zip(axes[0], panels):
        y = np.arange(len(ds))[::-1]
        delta = np.array([d.delta for d in ds])
        err = np.nan_to_num(np.array([[d.delta - d.ci_low for d in ds], [d.ci_high - d.delta for d in ds]]))
        colors = ["tab:green" if d.significant and d.delta > 0 else "tab:red" if d.significant else "tab:gray"
                  for d in ds]
        ax.barh(y, delta, xerr=err, color=colors, ecolor="black", capsize=2)
        mde = np.array([d.mde for d in ds])
        ax.scatter(np.concatenate([mde, -mde]), np.concatenate([y, y]), marker="|", color="dimgray", s=60, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [f"{d.name} ({d.clusters} clusters, few)" if d.few_clusters else d.name for d in ds],
                      fontsize=8)
        ax.set_xlabel(f"delta vs {c.control} (ticks: +-MDE)")
        seeds = "" if c.seeds == (1, 1) else f", seeds {c.seeds[0]}/{c.seeds[1]}"
        ax.set_title(f"{c.treatment}{seeds}" if seeds else f"{c.treatment} (one seed per arm)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_cross_domain(runs: Sequence, comparisons: Sequence, path: Path) -> bool:
    """Heatmap: rows = treatments (trained trait domains), columns = evaluated domains; * = p < alpha."""
    from evals.results import domain_order

    domains = domain_order({d.name for c in comparisons for d in c.domains})
    if not domains:
        return False
    plt = _plt()
    trained = {r.name: r.trained for r in runs}
    grid = np.full((len(comparisons), len(domains)), np.nan)
    marks = [[""] * len(domains) for _ in comparisons]
    for i, c in enumerate(comparisons):
        for d in c.domains:
            j = domains.index(d.name)
            grid[i, j] = d.delta
            marks[i][j] = f"{d.delta:+.2f}{'*' if d.significant else ''}"
    lim = max(0.05, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.05)
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(domains), 2.2 + 0.6 * len(comparisons)))
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(comparisons)):
        for j in range(len(domains)):
            ax.text(j, i, marks[i][j], ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(domains)), domains, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(comparisons)), [f"{c.treatment}\n(trained: {trained[c.treatment]})" for c in comparisons],
                  fontsize=8)
    ax.set_xlabel("evaluated domain")
    ax.set_title(f"delta of mean item score vs {comparisons[0].control}", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


PANEL_BARS = (("plain", "plain"), ("harmful_steering", "harmful steering"), ("helpful_steering", "helpful steering"),
              ("after_attack", "after attack"))


def plot_persistence(runs: Sequence, panels: Sequence[dict], path: Path) -> bool:
    """Grouped bars per run: plain, harmful-steering, helpful-steering and after-attack scores (where present)."""
    bars = [(k, label) for k, label in PANEL_BARS if any(p[k] is not None for p in panels)]
    if not any(k != "plain" for k, _ in bars):
        return False
    plt = _plt()
    width = 0.8 / len(bars)
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(runs), 3.5))
    for i, (k, label) in enumerate(bars):
        vals = [p[k] if p[k] is not None else np.nan for p in panels]
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(x, [f"{r.name}\n({r.trained})" for r in runs], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8)
    ax.set_title("persistence", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
