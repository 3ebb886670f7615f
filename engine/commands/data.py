"""`traitrl data preview` and `traitrl data export`: what a run's data stream holds, and the bundled splits as files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from data.config import DataConfig
from engine.commands.main import Command
from engine.errors import UserError


@dataclasses.dataclass(frozen=True)
class PreviewCommand:
    """Print sample records and the realised mixture by kind, domain and trait."""

    data: DataConfig = DataConfig()  # the data options, as for `traitrl train --data.*`
    samples: int = 5  # records printed in full
    mix: int = 10_000  # records streamed to measure the mixture
    model: str | None = None  # tokenizer source (a model); shows token lengths when given

    def __post_init__(self):
        if self.samples < 0 or self.mix < 1:
            raise UserError("options '--samples' >= 0 and '--mix' >= 1 expected")


def run_preview(cfg: PreviewCommand) -> None:
    from data.preview import preview
    from rl.rewards import registered

    tok = None
    if cfg.model is not None:
        import models

        tok = models.load(cfg.model).tokenizer
    preview(cfg.data, n_samples=cfg.samples, n_mix=cfg.mix, tokenizer=tok, known_graders=registered())


@dataclasses.dataclass(frozen=True)
class ExportCommand:
    """Write the bundled records of a split in the README record schema (ground truth and references included)."""

    out: Path  # output JSONL (replaced atomically)
    split: Literal["train", "heldout"] = "heldout"  # which facts, entities and templates
    kind: Literal["trait", "regular", "all"] = "all"  # trait scenarios, regular tasks, or both
    seed: int = 0  # generator seed
    n_per_cell: int = 100  # trait records per (trait, domain) cell at most
    n_regular: int = 10_000  # regular tasks

    def __post_init__(self):
        if self.n_per_cell < 1 or self.n_regular < 1:
            raise UserError("options '--n-per-cell' and '--n-regular' must be >= 1")


def run_export(cfg: ExportCommand) -> None:
    from data.export import export_records
    from rl.rewards import registered

    n = export_records(cfg.split, None if cfg.kind == "all" else cfg.kind, cfg.out, cfg.seed, cfg.n_per_cell,
                       cfg.n_regular, known_graders=registered())
    print(f"wrote {n} {cfg.split} records to {cfg.out}")


PREVIEW = Command(PreviewCommand, run_preview)
EXPORT = Command(ExportCommand, run_export)
