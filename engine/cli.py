"""The `traitrl` command line: tyro subcommands over plain functions.

Every user mistake surfaces as a `UserError`: printed as one line on stderr, exit code 2, never a
traceback. tyro itself exits 2 on unknown options.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import tyro

from engine.errors import UserError

log = logging.getLogger("traitrl")


def pull(name: Annotated[str, tyro.conf.Positional], /) -> None:
    """Download and convert a known model (e.g. smollm2-135m-instruct) into the local cache.

    Args:
        name: a known name, a .gguf file, or a Hugging Face hub id.
    """
    from models.hub import pull as pull_model

    t0 = time.perf_counter()
    path = pull_model(name)
    print(f"{name} -> {path} ({time.perf_counter() - t0:.1f}s)")


def export(model: str, out: Path, max_shard_mb: int = 2048, dtype: str = "float32") -> None:
    """Export a model (GGUF, HF directory or known name) as a Hugging Face directory.

    Args:
        model: source: an HF directory, a .gguf file, or a known name.
        out: output directory (replaced atomically).
        max_shard_mb: safetensors files above this size are split, with an index.
        dtype: parameter dtype written (float32 or bfloat16).
    """
    import models

    policy = models.load(model, param_dtype=dtype)
    models.save_hf(policy, out, max_shard_bytes=max_shard_mb << 20)
    print(f"wrote {out}")


def generate(model: str, prompt: str | None = None, prompts_file: Path | None = None, out: Path | None = None,
             max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             seed: int = 0, system: str | None = None) -> None:
    """Generate completions: one --prompt to stdout, or a JSONL --prompts-file to --out.

    Args:
        model: an HF directory, a .gguf file, or a known name.
        prompt: one user message (chat-templated when the tokenizer has a template).
        prompts_file: JSONL, one {"messages": [...]} or {"prompt": "..."} per line.
        out: output JSONL (one {"completion_ids": [...], "text": "..."} per input line, same order).
        max_new_tokens: tokens generated per prompt at most.
        temperature: 0 = greedy.
        top_p: nucleus sampling threshold (1 = off).
        top_k: keep the k most likely tokens (0 = off).
        seed: sampling seed.
        system: optional system message prepended to every chat.
    """
    import models
    from rl.sampler import SamplingConfig, generate_records

    if (prompt is None) == (prompts_file is None):
        raise UserError("generate: give exactly one of --prompt or --prompts-file")
    if prompts_file is not None and out is None:
        raise UserError("generate: --prompts-file needs --out")
    items = [{"prompt": prompt}] if prompt is not None else _read_prompts(prompts_file)
    if system is not None:
        items = [{"messages": [{"role": "system", "content": system}, *_as_messages(it)]} for it in items]
    policy = models.load(model)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                         seed=seed)
    results = generate_records(policy, items, cfg)
    if out is None:
        print(results[0]["text"])
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    print(f"wrote {len(results)} completions to {out}")


def _as_messages(item: dict) -> list[dict]:
    return item["messages"] if "messages" in item else [{"role": "user", "content": item["prompt"]}]


def _read_prompts(path: Path) -> list[dict]:
    from data.readers import read_json_objects

    def check(item):
        if isinstance(item, dict) and (isinstance(item.get("prompt"), str) or isinstance(item.get("messages"), list)):
            return None
        return 'expected {"messages": [...]} or {"prompt": "..."}'

    return read_json_objects(path, check, "prompts")


def data_preview(data, samples: int = 5, mix: int = 10_000, model: str | None = None) -> None:
    """Print sample records and the realised mixture by kind, domain and trait.

    Args:
        data: the data options, as for `traitrl train --data.*`.
        samples: records printed in full.
        mix: records streamed to measure the mixture.
        model: tokenizer source (a model); shows token lengths when given.
    """
    from data.preview import preview

    tok = None
    if model is not None:
        import models

        tok = models.load(model).tokenizer
    preview(data, n_samples=samples, n_mix=mix, tokenizer=tok)


def _train_command(preset: str):
    from engine.train import PRESETS, TrainConfig, print_summary, run

    def train(cfg=PRESETS[preset]) -> None:
        """GRPO on the trait-mix data (presets: --preset default|tiny|gpu-1b|tpu-v5e-8, then overrides)."""
        print_summary(run(cfg))

    train.__annotations__ = {"cfg": Annotated[TrainConfig, tyro.conf.arg(name="")], "return": None}  # real types for tyro (this module's are strings)
    return train


def _experiment_command(preset: str):
    from engine.experiment import ExperimentConfig, print_experiment, run_experiment
    from engine.train import PRESETS

    def experiment(cfg=ExperimentConfig(train=PRESETS[preset])) -> None:
        """Control / treatment / health-only / no-health arms, each trained then probed, then compared."""
        print_experiment(run_experiment(cfg))

    experiment.__annotations__ = {"cfg": Annotated[ExperimentConfig, tyro.conf.arg(name="")], "return": None}
    return experiment


def _sft_command():
    from engine.sft_cmd import SFTRunConfig, run_sft
    from engine.train import print_summary

    def sft(cfg) -> None:
        """Supervised fine-tuning on a JSONL file of chats (loss on each chat's final assistant message)."""
        print_summary(run_sft(cfg))

    sft.__annotations__ = {"cfg": Annotated[SFTRunConfig, tyro.conf.arg(name="")], "return": None}
    return sft


def _pop_preset(argv: list[str]) -> tuple[list[str], str]:
    """Takes `--preset NAME` / `--preset=NAME` out of argv: it picks the defaults the other flags override."""
    from engine.train import PRESETS

    preset, rest, i = "default", [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--preset" or a.startswith("--preset="):
            preset = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            if preset not in PRESETS:
                raise UserError(f"--preset: expected one of {', '.join(PRESETS)}, got '{preset}'")
            continue
        rest.append(a)
        i += 1
    return rest, preset


# name -> function, or "module:function" imported only when the CLI starts (keeps `--help` light).
# Two-word commands ("data preview", "persona capture") are spelled with a dash here; the space form works too.
COMMANDS: dict[str, object] = {
    "pull": pull,
    "export": export,
    "generate": generate,
    "data-preview": data_preview,
    "serve": "engine.serve:serve",
    "compare": "evals.compare:compare",
    "attack": "evals.attack:attack",
    "eval": "evals.cli:eval_cmd",
    "persona-data": "evals.persona.cli:persona_data",
    "persona-capture": "evals.persona.cli:persona_capture",
    "persona-direction": "evals.persona.cli:persona_direction",
    "persona-sae": "evals.persona.cli:persona_sae",
    "persona-diff": "evals.persona.cli:persona_diff",
    "persona-steer": "evals.persona.cli:persona_steer",
    "persona-experiment": "evals.persona.cli:persona_experiment",
}
GROUPS = ("data", "persona")  # `traitrl data preview ...` == `traitrl data-preview ...`


def _resolve(target):
    if not isinstance(target, str):
        return target
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax narrates every save at INFO
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from data.config import DataConfig

        data_preview.__annotations__["data"] = DataConfig  # a real type for tyro (this module's are strings)
        if len(argv) >= 2 and argv[0] in GROUPS and not argv[1].startswith("-"):
            argv = [f"{argv[0]}-{argv[1]}", *argv[2:]]
        commands = {name: _resolve(target) for name, target in COMMANDS.items()}
        preset = "default"
        if argv[:1] in (["train"], ["experiment"]):
            argv, preset = _pop_preset(argv)
        commands["train"] = _train_command(preset)
        commands["experiment"] = _experiment_command(preset)
        commands["sft"] = _sft_command()
        tyro.extras.subcommand_cli_from_dict(commands, args=argv, prog="traitrl")
    except UserError as e:
        print(f"traitrl: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
