"""`traitrl pull` and `traitrl export`: models into the cache, and out as Hugging Face directories."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Literal

import tyro

from engine.commands.main import Command
from engine.errors import UserError


@dataclasses.dataclass(frozen=True)
class PullCommand:
    """Download and convert a known model (e.g. smollm2-135m-instruct) into the local cache."""

    name: Annotated[str, tyro.conf.Positional]  # a known name, a .gguf file, or a Hugging Face hub id


def run_pull(cfg: PullCommand) -> None:
    from models.hub import pull

    t0 = time.perf_counter()
    path = pull(cfg.name)
    print(f"{cfg.name} -> {path} ({time.perf_counter() - t0:.1f}s)")


@dataclasses.dataclass(frozen=True)
class ExportCommand:
    """Export a model (GGUF, HF directory or known name) as a Hugging Face directory."""

    model: str  # source: an HF directory, a .gguf file, or a known name
    out: Path  # output directory (replaced atomically)
    max_shard_mb: int = 2048  # safetensors files above this size are split, with an index
    dtype: Literal["float32", "bfloat16"] = "float32"  # parameter dtype written

    def __post_init__(self):
        if self.max_shard_mb < 1:
            raise UserError(f"option '--max-shard-mb': expected >= 1, got {self.max_shard_mb}")


def run_export(cfg: ExportCommand) -> None:
    import models

    policy = models.load(cfg.model, param_dtype=cfg.dtype)
    models.save_hf(policy, cfg.out, max_shard_bytes=cfg.max_shard_mb << 20)
    print(f"wrote {cfg.out}")


PULL = Command(PullCommand, run_pull)
EXPORT = Command(ExportCommand, run_export)
