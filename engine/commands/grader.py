"""`traitrl grader audit`: how far a trait reward can be trusted (agreement with hand labels, what gaming earns)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

from engine.commands.main import Command
from evals.grader_audit import VALIDATION_DIR
from rl.graders.http_judge import JudgeConfig


@dataclasses.dataclass(frozen=True)
class AuditCommand:
    """Per trait: criterion / answer agreement with the hand-labelled validation set, false negatives, gaming."""

    grader: Literal["programmatic", "judge", "helpfulness"] = "programmatic"  # the reward under audit
    judge: JudgeConfig = JudgeConfig()  # for --grader judge: an OpenAI-compatible endpoint and model
    validation_dir: Path = VALIDATION_DIR  # the labelled answers (<trait>.jsonl)
    n_per_cell: int = 8  # generated records per (trait, domain) cell the gaming strategies are scored on
    out: Path = Path("runs/grader_audit.json")  # the full report as JSON


def run(cfg: AuditCommand) -> None:
    from evals.grader_audit import audit, format_table

    judge = None
    if cfg.grader == "judge":
        from rl.graders.rubric_judge import RubricJudge

        judge = RubricJudge(cfg.judge) if cfg.judge.enabled else None
    report = audit(cfg.grader, judge, cfg.validation_dir, cfg.n_per_cell)
    print(format_table(report))
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {cfg.out}")


COMMAND = Command(AuditCommand, run)
