"""`traitrl generate`: one --prompt to stdout, or a JSONL --prompts-file to --out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import tyro

from engine.commands.main import Command
from engine.errors import UserError
from rl.sampler import SamplingConfig


@dataclasses.dataclass(frozen=True)
class GenerateCommand:
    """Generate completions: one --prompt to stdout, or a JSONL --prompts-file to --out."""

    model: str  # an HF directory, a .gguf file, or a known name
    prompt: str | None = None  # one user message (chat-templated when the tokenizer has a template)
    prompts_file: Path | None = None  # JSONL, one {"messages": [...]} or {"prompt": "..."} per line
    out: Path | None = None  # output JSONL (one {"completion_ids": [...], "text": "..."} per input line, same order)
    system: str | None = None  # optional system message prepended to every chat
    sampling: Annotated[SamplingConfig, tyro.conf.arg(name="")] = SamplingConfig(temperature=0.0, max_new_tokens=64)

    def __post_init__(self):
        if (self.prompt is None) == (self.prompts_file is None):
            raise UserError("generate: give exactly one of --prompt or --prompts-file")
        if self.prompts_file is not None and self.out is None:
            raise UserError("generate: --prompts-file needs --out")


def _as_messages(item: dict) -> list[dict]:
    return item["messages"] if "messages" in item else [{"role": "user", "content": item["prompt"]}]


def _read_prompts(path: Path) -> list[dict]:
    from data.readers import read_json_objects

    def check(item):
        if isinstance(item, dict) and (isinstance(item.get("prompt"), str) or isinstance(item.get("messages"), list)):
            return None
        return 'expected {"messages": [...]} or {"prompt": "..."}'

    return read_json_objects(path, check, "prompts")


def run(cfg: GenerateCommand) -> None:
    import models
    from rl.sampler import generate_records

    items = [{"prompt": cfg.prompt}] if cfg.prompt is not None else _read_prompts(cfg.prompts_file)
    if cfg.system is not None:
        items = [{"messages": [{"role": "system", "content": cfg.system}, *_as_messages(it)]} for it in items]
    policy = models.load(cfg.model)
    results = generate_records(policy, items, cfg.sampling)
    if cfg.out is None:
        print(results[0]["text"])
        return
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    with open(cfg.out, "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    print(f"wrote {len(results)} completions to {cfg.out}")


COMMAND = Command(GenerateCommand, run)
