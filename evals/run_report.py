"""The run report `traitrl train` writes at the end: `RUN/report.md` and `RUN/curves.png`.

What a user reads first after a run: the summary, the training curves (reward, KL, step time), and
every eval benchmark (plain condition) at its first and last eval step: n, clusters, both scores, the
change with its paired 95% interval, p, Holm-adjusted p and the minimum detectable effect (evals.stats,
the same test `traitrl compare` uses, the two steps as the two "arms", paired by item id).

One run is one training seed: the change's interval and p cover the item sample only, not seed-to-seed
variance, so "changed during training" is not "this recipe changes it"; that needs `traitrl compare` on
several seeds. Steps whose per-item files are missing fall back to marking non-overlapping intervals.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


HEADLINE = "heldout-reward"  # the benchmark the report leads with: the training reward on held-out records
CURVES = ("reward", "frac_reward_zero_std", "kl", "step_time")


def _plot_curves(metrics: list[dict], out: Path, evals: list[dict] = ()) -> bool:
    steps = [m for m in metrics if "reward" in m]
    if len(steps) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    keys = [k for k in CURVES if any(k in m for m in steps)]
    head = sorted((r["step"], r["score"], r["ci_low"], r["ci_high"]) for r in evals if r["benchmark"] == HEADLINE)
    panels = keys + (["held-out reward"] if len(head) > 1 else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6))
    for ax, key in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        if key == "held-out reward":  # greedy replies on the fixed held-out set, with its 95% interval
            xs, ys, lo, hi = zip(*head)
            ax.fill_between(xs, lo, hi, alpha=0.25)
            ax.plot(xs, ys, marker="o")
        else:
            xs = [m["step"] for m in steps if key in m]
            ax.plot(xs, [m[key] for m in steps if key in m], marker=".")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_run_report(run_dir: str | Path, summary: dict) -> Path:
    run_dir = Path(run_dir)
    metrics = _rows(run_dir / "metrics.jsonl")
    evals = [r for r in _rows(run_dir / "evals.jsonl") if r.get("condition", "plain") == "plain"]
    lines = [f"# Run report: {run_dir.name}", "", "| summary | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary.items()]
    if _plot_curves(metrics, run_dir / "curves.png", evals):
        lines += ["", "![training curves](curves.png)"]
    if evals:
        lines += _evals_section(run_dir, evals)
        head = _headline(run_dir, evals)
        if head:
            at = next(i for i, x in enumerate(lines) if x == "") if "" in lines else len(lines)
            lines[at:at] = head
    out = run_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _headline(run_dir: Path, evals: list[dict]) -> list[str]:
    """Did the run learn? The held-out reward at the first and last eval step, paired by item, with its interval."""
    rows = sorted((r for r in evals if r["benchmark"] == HEADLINE), key=lambda r: r["step"])
    if len(rows) < 2:
        return []
    a, b = rows[0], rows[-1]
    d = _paired_changes(run_dir, a["step"], b["step"], [HEADLINE]).get(HEADLINE)
    if d is None:
        return []
    verdict = ("rose" if d.ci_low > 0 else "fell" if d.ci_high < 0 else "did not change detectably")
    return ["", f"**Held-out reward** ({b['n']} held-out records: regular tasks and trait records, greedy replies "
                f"scored by the training graders): step {a['step']} {a['score']:.3f} -> step {b['step']} "
                f"{b['score']:.3f}, change {d.delta:+.3f} (paired 95% CI [{_f(d.ci_low, '+.3f')}, "
                f"{_f(d.ci_high, '+.3f')}], p {_p(d.p)}): it {verdict}."]


def _paired_changes(run_dir: Path, first: int, last: int, names: list[str]) -> dict:
    """benchmark -> Delta of last vs first step from the per-item files (Holm over the benchmarks); {} if missing."""
    from engine.errors import UserError
    from evals.compare import CompareConfig, item_clusters, item_scores, seeds_delta
    from evals.results import read_results
    from evals.stats import holm_adjusted

    try:
        before = {r.benchmark: r for r in read_results(run_dir, first) if r.condition == "plain"}
        after = {r.benchmark: r for r in read_results(run_dir, last) if r.condition == "plain"}
    except (UserError, ValueError, OSError, KeyError) as e:  # a report must not fail the run it reports on
        log.warning("run report: per-item results unreadable (%s); intervals only", e)
        return {}
    cfg = CompareConfig(resamples=2000)
    out = {}
    for name in names:
        ra, rb = before.get(name), after.get(name)
        if ra is None or rb is None or not ra.items or not rb.items:
            continue
        try:
            out[name] = seeds_delta([item_scores(ra)], [item_scores(rb)], item_clusters([ra, rb]), cfg, name,
                                    rb.family)
        except ValueError as e:
            log.warning("run report: %s", e)
    for (name, d), q in zip(list(out.items()), holm_adjusted([d.p for d in out.values()])):
        out[name] = dataclasses.replace(d, p_holm=q)
    return out


def _evals_section(run_dir: Path, evals: list[dict]) -> list[str]:
    from evals.stats import FEW_CLUSTERS

    first, last = min(r["step"] for r in evals), max(r["step"] for r in evals)
    at = {(r["step"], r["benchmark"]): r for r in evals}
    names = list(dict.fromkeys(r["benchmark"] for r in evals))
    lines = ["", f"## Evals: step {first} -> step {last}", ""]
    if first == last:
        lines += ["| benchmark | family | n | clusters | score [95% CI] |", "| --- | --- | --- | --- | --- |"]
        for name in names:
            b = at[(last, name)]
            lines.append(f"| {name} | {b['family']} | {b['n']} | {b.get('clusters', b['n'])} | {b['score']:.3f} "
                         f"[{b['ci_low']:.2f}, {b['ci_high']:.2f}] |")
        lines += ["", "95% CI: cluster bootstrap of the mean. Per-item results: `evals/step_*/`."]
        return lines
    changes = _paired_changes(run_dir, first, last, names)
    lines += ["| benchmark | family | n | clusters | first | last | change | 95% CI | p | Holm p | MDE |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    overlap_only = False
    for name in names:
        a, b = at.get((first, name)), at.get((last, name))
        if a is None or b is None:
            continue
        clusters = b.get("clusters", b["n"])
        few = " (few)" if clusters < FEW_CLUSTERS else ""
        head = (f"| {name} | {b['family']} | {b['n']} | {clusters}{few} | {a['score']:.3f} [{a['ci_low']:.2f}, "
                f"{a['ci_high']:.2f}] | {b['score']:.3f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}] | ")
        d = changes.get(name)
        if d is None:
            overlap_only = True
            apart = b["ci_low"] > a["ci_high"] or b["ci_high"] < a["ci_low"]
            lines.append(head + f"{b['score'] - a['score']:+.3f}{' †' if apart else ''} | — | — | — | — |")
        else:
            lines.append(head + f"{d.delta:+.3f}{' *' if d.significant else ''} | [{_f(d.ci_low, '+.3f')}, "
                         f"{_f(d.ci_high, '+.3f')}] | {_p(d.p)} | {_p(d.p_holm)} | {_f(d.mde)} |")
    lines += ["", ("first / last: score [cluster bootstrap 95% CI]. change: last - first over the items both steps "
                   "scored, paired by item id, with its cluster bootstrap 95% CI; `*`: p < 0.05 (paired "
                   "cluster-level t test), Holm p: adjusted over the benchmarks above; MDE: the change detectable "
                   "with 80% power. One run = one seed: these cover the item sample, not seed-to-seed variance "
                   f"(use `traitrl compare` on several seeds for that). (few): fewer than {FEW_CLUSTERS} clusters, "
                   "where p and the interval are anti-conservative.")]
    if overlap_only:
        lines.append("`†`: the two 95% intervals do not overlap (no per-item results to pair for that row).")
    lines.append("Per-item results: `evals/step_*/`.")
    return lines


def _f(x: float, fmt: str = ".3f") -> str:
    return "—" if math.isnan(x) else format(x, fmt)


def _p(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else "<0.001" if x < 0.001 else f"{x:.3f}"
