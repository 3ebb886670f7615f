"""The run report `traitrl train` writes at the end: `RUN/report.md` and `RUN/curves.png`.

What a user reads first after a run: the summary, the training curves (reward, KL, step time), and
every eval benchmark at its first and last step with the change and both intervals. A change whose
intervals do not overlap is marked; for paired significance across runs use `traitrl compare`.
"""

from __future__ import annotations

import json
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _plot_curves(metrics: list[dict], out: Path) -> bool:
    steps = [m for m in metrics if "reward" in m]
    if len(steps) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    keys = [k for k in ("reward", "kl", "entropy", "step_time") if any(k in m for m in steps)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6))
    for ax, key in zip(axes if len(keys) > 1 else [axes], keys, strict=True):
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
    if _plot_curves(metrics, run_dir / "curves.png"):
        lines += ["", "![training curves](curves.png)"]
    if evals:
        first, last = min(r["step"] for r in evals), max(r["step"] for r in evals)
        at = {(r["step"], r["benchmark"]): r for r in evals}
        names = list(dict.fromkeys(r["benchmark"] for r in evals))
        lines += ["", f"## Evals: step {first} -> step {last}", "",
                  "| benchmark | family | n | first | last | change |", "| --- | --- | --- | --- | --- | --- |"]
        for name in names:
            a, b = at.get((first, name)), at.get((last, name))
            if a is None or b is None:
                continue
            apart = b["ci_low"] > a["ci_high"] or b["ci_high"] < a["ci_low"]
            lines.append(f"| {name} | {b['family']} | {b['n']} | {a['score']:.3f} [{a['ci_low']:.2f}, "
                         f"{a['ci_high']:.2f}] | {b['score']:.3f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}] | "
                         f"{b['score'] - a['score']:+.3f}{' *' if apart else ''} |")
        lines += ["", "`*`: the two 95% intervals do not overlap. Per-item results: `evals/step_*/`."]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
