"""`traitrl data preview`, `export` and `calibrate`: what a run's data stream holds, the bundled splits as files,
and which regular-task difficulty levels give a model's GRPO groups reward spread."""

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


# `traitrl train`'s default sampling (PRESETS["default"].sampling; a test keeps them equal). Plain fields rather than a
# nested SamplingConfig: importing rl.sampler (and jax) would slow every `traitrl data` command's start.
TRAIN_TEMPERATURE, TRAIN_TOP_P, TRAIN_MAX_NEW_TOKENS, TRAIN_BUCKETS = 0.7, 1.0, 48, (128, 256, 512)


@dataclasses.dataclass(frozen=True)
class CalibrateCommand:
    """Success rate and zero-spread share per regular-task level on a model; keeps the levels GRPO can learn from."""

    model: str = "smollm2-135m-instruct"  # known name, HF directory, .gguf, run directory, or "tiny"
    levels: tuple[str, ...] = ()  # levels to measure, as "family:level" (empty = every level)
    items: int = 16  # N items per level (the first N training draws of that level)
    generations: int = 8  # G completions per item (a GRPO group)
    temperature: float = TRAIN_TEMPERATURE  # sampling, as `traitrl train --sampling.temperature`
    top_p: float = TRAIN_TOP_P  # nucleus mass, as `--sampling.top-p`
    max_new_tokens: int = TRAIN_MAX_NEW_TOKENS  # completion cap, as `--sampling.max-new-tokens`
    split: Literal["train", "heldout"] = "train"  # whose facts and wordings
    seed: int = 0  # data seed (which items) and sampling seed
    low: float = 0.1  # keep a level whose success rate is >= low ...
    high: float = 0.9  # ... and <= high
    batch_prompts: int = 64  # prompts per sampler call (x generations sequences)
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype
    out: Path = Path("calibration.json")  # the JSON report (settings, per-level results, kept levels, flag)

    def __post_init__(self):
        from data.tasks import parse_levels

        parse_levels(self.levels or None, option="levels")
        for name in ("items", "batch_prompts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"option '--{name.replace('_', '-')}': expected an integer >= 1, got "
                                f"{getattr(self, name)}")
        if self.generations < 2:
            raise UserError(f"option '--generations': expected >= 2 (spread needs a group), got {self.generations}")
        if not 0.0 <= self.low < self.high <= 1.0:
            raise UserError(f"options '--low' and '--high': expected 0 <= low < high <= 1, got {self.low}, {self.high}")


def sampler_completions(policy, sampling, batch_prompts: int):
    """`complete(records, G)` for data.calibrate: chat-templated prompts, sorted by length, in a few equal batches
    (equal shapes: one compilation per bucket). Sequence ids are (record index, sample), so draws do not depend on
    the batching."""
    import numpy as np

    from models.tokenizer import encode_chats
    from rl.sampler import Sampler

    sampler = Sampler(sampling)

    def complete(records, G):
        ids = encode_chats(policy.tokenizer, [r["messages"] for r in records])
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        calls = -(-len(order) // batch_prompts)
        size = -(-len(order) // calls)
        out: list[list[str]] = [[] for _ in ids]
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            fill = size - len(chunk)  # a short last batch repeats its first prompt
            batch = [ids[i] for i in chunk] + [ids[chunk[0]]] * fill
            seq = [i * G + j for i in chunk + [chunk[0]] * fill for j in range(G)]
            r = sampler(policy, batch, G, sequence_ids=np.asarray(seq, np.int32))
            for p, i in enumerate(chunk):
                out[i] = list(r.texts[p * G:(p + 1) * G])
        return out

    return complete


def run_calibrate(cfg: CalibrateCommand) -> dict:
    import time

    from data.calibrate import calibrate, calibration_records, levels_flag, report, table
    from engine.commands.common import TINY, build_policy, enable_compile_cache, load_any, write_json
    from rl.rewards import format_reward, record_reward
    from rl.sampler import SamplingConfig

    sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                              prompt_buckets=TRAIN_BUCKETS, seed=cfg.seed)
    cells = calibration_records(cfg.levels or None, cfg.items, cfg.seed, cfg.split)
    enable_compile_cache()
    t0 = time.perf_counter()
    policy = build_policy(TINY, None, cfg.dtype, cfg.seed) if cfg.model == TINY else load_any(cfg.model, None, None,
                                                                                             cfg.dtype)[0]
    if policy.tokenizer is None:
        raise UserError(f"{cfg.model}: has no tokenizer files; calibration needs one for the chat template")
    t1 = time.perf_counter()
    results = calibrate(cells, sampler_completions(policy, sampling, cfg.batch_prompts), record_reward,
                        cfg.generations, format_reward=format_reward, low=cfg.low, high=cfg.high)
    seconds = time.perf_counter() - t1
    settings = {"model": cfg.model, "split": cfg.split, "seed": cfg.seed, "items": cfg.items,
                "generations": cfg.generations, "temperature": cfg.temperature, "top_p": cfg.top_p,
                "max_new_tokens": cfg.max_new_tokens, "low": cfg.low, "high": cfg.high,
                "load_seconds": round(t1 - t0, 1)}
    rep = report(results, settings, seconds)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, rep)
    print(table(results))
    print(f"{sum(r.samples for r in results)} completions in {seconds:.0f} s (T={cfg.temperature}, top_p={cfg.top_p}, "
          f"max {cfg.max_new_tokens} new tokens); wrote {out}")
    flag = levels_flag(results)
    print(f"--data.levels {flag}" if flag else f"no level has a success rate in [{cfg.low}, {cfg.high}]")
    return rep


PREVIEW = Command(PreviewCommand, run_preview)
EXPORT = Command(ExportCommand, run_export)
CALIBRATE = Command(CalibrateCommand, run_calibrate)
