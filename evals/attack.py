"""`traitrl attack`: the harmful-fine-tuning persistence probe.

Does trait training survive a few steps of fine-tuning on data that does the opposite? The probe
takes a trained policy, runs k SFT steps on the bundled harmful demonstrations (`data.harmful`:
sycophancy, invented facts, ignoring the operator, biased decisions, dismissing crisis cues, wrong
confident choices), re-runs the eval suite, and writes the scores with condition "after-attack"
into the run directory (results contract), at the run's latest eval step, next to the "plain"
scores of the same step. `traitrl compare CONTROL TREATMENT` then shows attack retention side by
side: a beneficial trait that persists loses less than the control does under the same attack.

The "before" scores are the run's existing plain results at that step when they cover the
benchmarks (in-loop evals), else they are evaluated here first and written as "plain".
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from engine.errors import UserError

log = logging.getLogger(__name__)
CONDITION = "after-attack"


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """The attack: how many SFT steps on how much harmful data, at what learning rate."""

    steps: int = 20  # k optimizer steps on the harmful demonstrations
    learning_rate: float = 1e-5  # constant AdamW learning rate (no warmup: an attacker spends every step)
    batch_size: int = 8  # demonstrations per step
    examples: int = 256  # demonstrations drawn from data.harmful (balanced across behaviours)
    behaviours: tuple[str, ...] = ()  # subset of data.harmful.BEHAVIOURS (empty = all)
    max_prompt_len: int = 384  # context tokens kept per demonstration
    max_response_len: int = 128  # answer tokens learned per demonstration
    seed: int = 0  # which demonstrations, and their order

    def __post_init__(self):
        for name in ("steps", "batch_size", "examples", "max_prompt_len", "max_response_len"):
            if getattr(self, name) < 1:
                raise UserError(f"attack.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise UserError(f"attack.learning_rate: expected > 0, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class AttackResult:
    step: int  # eval step the results were written at
    losses: list[float]  # SFT loss on the harmful demonstrations, one per step
    before: dict[str, float]  # benchmark -> plain score (over the items evaluated after the attack)
    after: list  # BenchmarkResult per benchmark, condition "after-attack"


def harmful_sft(policy, cfg: AttackConfig, progress: bool = False) -> list[float]:
    """Trains `policy.model` in place on the harmful demonstrations; returns the per-step loss."""
    from data.harmful import BEHAVIOURS, harmful_examples
    from rl.sft import SFTConfig, sft
    from engine.train_state import OptimConfig

    examples = harmful_examples(cfg.examples, cfg.seed, behaviours=cfg.behaviours or BEHAVIOURS)
    scfg = SFTConfig(steps=cfg.steps, batch_size=cfg.batch_size, max_prompt_len=cfg.max_prompt_len,
                     max_response_len=cfg.max_response_len, seed=cfg.seed, progress=progress)
    optim = OptimConfig(learning_rate=cfg.learning_rate, schedule="constant", total_steps=cfg.steps)
    return [m["loss"] for m in sft(policy, examples, scfg, optim)]


def latest_step(run_dir: Path) -> int | None:
    """The run's latest eval step (evals.jsonl), or None when it has no eval results."""
    path = Path(run_dir) / "evals.jsonl"
    if not path.is_file():
        return None
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
    return max(steps) if steps else None


def run_attack(policy, run_dir: Path, cfg: AttackConfig = AttackConfig(), benchmarks: Sequence[str] | None = None,
               limit: int | None = None, judge=None, progress: bool = False,
               max_new_tokens: int | None = None) -> AttackResult:
    """Before scores (reused or evaluated), k harmful SFT steps, after scores written as "after-attack"."""
    from evals.results import read_results, write_results
    from evals.suite import run_suite

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    step = latest_step(run_dir)
    have = {} if step is None else {r.benchmark: r for r in read_results(run_dir, step) if r.condition == "plain"}
    step = 0 if step is None else step
    names = list(benchmarks) if benchmarks else (sorted(have) or None)
    missing = None if names is None else [b for b in names if b not in have]
    if missing is None or missing:
        fresh = run_suite(policy, missing, limit=limit, conditions=("plain",), judge=judge, seed=cfg.seed,
                          max_new_tokens=max_new_tokens)
        write_results(run_dir, step, fresh)
        have.update({r.benchmark: r for r in fresh})
        names = names or [r.benchmark for r in fresh]
    log.info("attack: %d harmful SFT steps at lr %g, then %d benchmarks", cfg.steps, cfg.learning_rate, len(names))
    losses = harmful_sft(policy, cfg, progress)
    after = run_suite(policy, names, limit=limit, conditions=(CONDITION,), judge=judge, seed=cfg.seed,
                      max_new_tokens=max_new_tokens)
    write_results(run_dir, step, after)
    before = {r.benchmark: _score_on(have[r.benchmark], {it.id for it in r.items}) for r in after}
    (run_dir / "attack.json").write_text(json.dumps({
        "step": step, "config": dataclasses.asdict(cfg), "limit": limit, "losses": losses,
        "before": before, "after": {r.benchmark: r.score for r in after}}, indent=2))
    return AttackResult(step, losses, before, after)


def _score_on(result, ids: set[str]) -> float:
    """Mean item score over `ids` when the two evals share items (a fair before/after), else the whole mean."""
    shared = [it.score for it in result.items if it.id in ids]
    return sum(shared) / len(shared) if shared else result.score


def format_table(res: AttackResult) -> str:
    rows = [(r.benchmark, r.family, res.before[r.benchmark], r.score) for r in res.after]
    w = max([len("benchmark"), *(len(b) for b, *_ in rows)])
    f = max([len("family"), *(len(fam) for _, fam, *_ in rows)])
    lines = [f"{'benchmark':<{w}}  {'family':<{f}}  before   after   delta"]
    lines += [f"{b:<{w}}  {fam:<{f}}  {x:6.3f}  {y:6.3f}  {y - x:+6.3f}" for b, fam, x, y in rows]
    if rows:
        mx, my = (sum(r[i] for r in rows) / len(rows) for i in (2, 3))
        lines.append(f"{'mean':<{w}}  {'':<{f}}  {mx:6.3f}  {my:6.3f}  {my - mx:+6.3f}")
    lines.append(f"SFT loss on the harmful demonstrations: {res.losses[0]:.3f} -> {res.losses[-1]:.3f} "
                 f"({len(res.losses)} steps)")
    return "\n".join(lines)
