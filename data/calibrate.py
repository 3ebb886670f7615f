"""Difficulty calibration: which regular-task levels give GRPO a learning signal on a given policy.

GRPO's advantage is a group's rewards minus their mean: a prompt whose G completions all fail (or
all succeed) contributes nothing. For each (family, level) of `data.tasks.LEVELS` this takes N
items, lets the policy complete each G times, grades every completion with the record's own
grader (the reward training uses) and reports

    success      mean reward over the N x G completions (the verifiers are binary: a success rate)
    zero_spread  share of the N groups whose G rewards are all equal (no advantage at all)
    kept         LOW <= success <= HIGH (default 0.1 .. 0.9): the range where groups usually differ

The policy and the graders come in as functions (`complete`, `reward`): this module stays below `rl`
in the layering, and tests can plant a success rate. `traitrl data calibrate` wires the real sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from data.schema import Record
from data.tasks import LEVELS, level_records, parse_levels

LOW, HIGH = 0.1, 0.9  # success rates outside this range leave most groups without reward spread

# records, G -> G completions per record, in order (one batched call for everything is the point)
Complete = Callable[[Sequence[Record], int], list[list[str]]]
# the DESIGN.md reward contract: (prompts, completions, records) -> list[float | None]
Reward = Callable[[Sequence | None, Sequence[str], Sequence[Record]], list]


@dataclass(frozen=True)
class LevelResult:
    """One level's measurement."""

    family: str
    level: int
    about: str  # what the level asks (data.tasks.Level.about)
    items: int  # N groups measured
    samples: int  # graded completions (N x G, minus any the grader left out)
    success: float  # mean reward
    zero_spread: float  # share of groups with no reward spread
    format: float | None  # mean of the `format` reward, when one was given
    kept: bool  # LOW <= success <= HIGH
    example: str  # the first item's prompt
    completions: tuple[str, ...]  # the first item's completions (for reading what the model does)

    @property
    def name(self) -> str:
        return f"{self.family}:{self.level}"


def calibration_records(levels=None, n: int = 16, seed: int = 0, split: str = "train") -> dict[str, list[Record]]:
    """"family:level" -> its first `n` items (the ones training draws first); levels as in `parse_levels`
    (None = every level). Levels without facts in `split` are left out."""
    out = {}
    for fam, lvs in parse_levels(levels).items():
        for lv in lvs:
            recs = level_records(fam, lv, n, seed, split)
            if recs:
                out[f"{fam}:{lv}"] = recs
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def calibrate(
    cells: dict[str, list[Record]],
    complete: Complete,
    reward: Reward,
    generations: int = 8,
    *,
    format_reward: Reward | None = None,
    low: float = LOW,
    high: float = HIGH,
) -> list[LevelResult]:
    """Every cell's items completed `generations` times in one `complete` call, graded, summarised per level."""
    if generations < 2:
        raise ValueError(f"generations: expected >= 2 (reward spread needs a group), got {generations}")
    names = list(cells)
    records = [r for name in names for r in cells[name]]
    texts = complete(records, generations)
    if len(texts) != len(records) or any(len(t) != generations for t in texts):
        raise ValueError(f"complete returned {[len(t) for t in texts]} completions for {len(records)} records "
                         f"x {generations}")
    flat_recs = [r for r in records for _ in range(generations)]
    flat_texts = [c for t in texts for c in t]
    scores = reward(None, flat_texts, flat_recs)
    fmt = format_reward(None, flat_texts, flat_recs) if format_reward is not None else None
    out, i = [], 0
    for name in names:
        fam, lv = name.split(":")
        recs = cells[name]
        groups = [scores[(i + j) * generations:(i + j + 1) * generations] for j in range(len(recs))]
        graded = [[s for s in grp if s is not None] for grp in groups]
        flat = [s for grp in graded for s in grp]
        spread = [len(set(grp)) <= 1 for grp in graded if len(grp) >= 2]
        fvals = None if fmt is None else [f for f in fmt[i * generations:(i + len(recs)) * generations] if f is not None]
        success = _mean(flat)
        out.append(LevelResult(
            fam, int(lv), LEVELS[fam][int(lv)].about, len(recs), len(flat), success, _mean(spread),
            None if fvals is None else _mean(fvals), bool(low <= success <= high),
            recs[0]["messages"][-1]["content"], tuple(texts[i]),
        ))
        i += len(recs)
    return out


def levels_flag(results: Sequence[LevelResult]) -> str:
    """The `--data.levels` value that keeps exactly the kept levels ("" when none is kept)."""
    return " ".join(r.name for r in results if r.kept)


def table(results: Sequence[LevelResult]) -> str:
    """A fixed-width table: level, success, zero-spread share, format, kept, what it asks."""
    head = f"{'level':<8} {'N':>3} {'samples':>7} {'success':>7} {'zero_spread':>11} {'format':>6}  kept  asks"
    rows = [head, "-" * len(head)]
    for r in results:
        f = "-" if r.format is None else f"{r.format:.2f}"
        rows.append(f"{r.name:<8} {r.items:>3} {r.samples:>7} {r.success:>7.3f} {r.zero_spread:>11.2f} {f:>6}  "
                    f"{'yes' if r.kept else 'no ':<4}  {r.about}")
    return "\n".join(rows)


def report(results: Sequence[LevelResult], settings: dict, seconds: float) -> dict:
    """The JSON `traitrl data calibrate --out` writes: the settings, per-level results, the kept levels."""
    clean = lambda x: None if isinstance(x, float) and x != x else x  # noqa: E731  NaN (nothing graded) -> null
    return {
        "settings": settings,
        "seconds": round(seconds, 1),
        "range": [settings.get("low", LOW), settings.get("high", HIGH)],
        "levels": [{"name": r.name, **{k: clean(v) for k, v in asdict(r).items()}, "completions": list(r.completions)}
                   for r in results],
        "kept": [r.name for r in results if r.kept],
        "flag": f"--data.levels {levels_flag(results)}" if any(r.kept for r in results) else "",
    }

