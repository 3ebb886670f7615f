"""`traitrl sft`: supervised fine-tuning from a JSONL file of chats, with checkpoints, resume and HF export.

The run directory gets `config.json`, `metrics.jsonl`, Orbax checkpoints under `checkpoints/`, the
Hugging Face export under `hf/` and `summary.json`, like `traitrl train`. Like `traitrl train`, it
validates everything (the chats file line by line, the run directory, a resumed run's config) before
its first write, resumes from the newest checkpoint that restores, and refuses a non-finite export.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

from data.readers import read_json_objects
from engine.checkpoint import CheckpointConfig
from engine.commands.common import as_json, check_finite, check_mesh, check_resume_config, check_run_dir
from engine.commands.main import Command
from engine.errors import UserError
from engine.train_state import OptimConfig
from rl.sft import SFTConfig


@dataclasses.dataclass(frozen=True)
class SFTRunConfig:
    """An SFT run: the model, the chats, and each package's options."""

    data: Path  # JSONL, one {"messages": [..., {"role": "assistant", "content": "..."}]} per line
    model: str = "smollm2-135m-instruct"  # known name, HF directory, or .gguf file
    run_dir: Path = Path("runs/sft")  # outputs: metrics, checkpoints, HF export, summary
    resume: bool = False  # continue from the latest complete checkpoint in run_dir
    export: bool = True  # write an HF directory (run_dir/hf) at the end
    mesh: tuple[int, int, int] | None = None  # (data, fsdp, tensor); None = one device, no mesh
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; parameters stay float32
    sft: SFTConfig = SFTConfig()  # steps, batch, lengths, data order
    optim: OptimConfig = OptimConfig(learning_rate=1e-5, schedule="constant", warmup_steps=0)  # AdamW
    checkpoint: CheckpointConfig = CheckpointConfig(save_every=50, keep=2)  # save cadence, retention

    @property
    def derived(self) -> tuple[str, ...]:
        """The dotted names of the fields `__post_init__` filled (as `TrainConfig.derived`)."""
        return self.__dict__.get("_derived", ())

    def __post_init__(self):
        check_mesh(self.mesh)
        check_finite(self)
        if self.optim.total_steps is None:  # the schedule spans the run
            object.__setattr__(self, "optim", self.optim.for_steps(self.sft.steps))
            object.__setattr__(self, "_derived", ("optim.total_steps",))


# Options a resumed SFT run may give differently (see engine.commands.train.RESUME_MAY_DIFFER).
RESUME_MAY_DIFFER = ("run_dir", "resume", "export", "sft.progress", "mesh", "checkpoint.async_save")


def _check_chat(item) -> str | None:
    msgs = item.get("messages") if isinstance(item, dict) else None
    if not isinstance(msgs, list) or not msgs:
        return "field 'messages': expected a non-empty list of {role, content}"
    for i, m in enumerate(msgs):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            return f"field 'messages[{i}]': expected {{role: str, content: str}}"
    if msgs[-1]["role"] != "assistant" or not msgs[-1]["content"]:
        return "field 'messages[-1]': expected a non-empty assistant message to learn"
    return None


def read_chats(path: Path) -> list[dict]:
    """Reads and validates the chats; a bad line is reported as file:line with the field."""
    return [{"messages": c["messages"]} for c in read_json_objects(path, _check_chat, "chats")]


def run_sft(cfg: SFTRunConfig) -> dict:
    import models
    from engine.checkpoint import Checkpointer
    from engine.commands.common import build_policy, enable_compile_cache, on_mesh, write_config, write_json
    from engine.metrics import MetricsWriter
    from rl.sft import SFTTrainer

    from engine.commands.train import check_finite_params

    t0 = time.perf_counter()
    chats = read_chats(Path(cfg.data))
    run_dir = Path(cfg.run_dir)
    config = {**as_json(cfg), "derived": list(cfg.derived)}
    check_run_dir(run_dir, cfg.resume)
    if cfg.resume:
        check_resume_config(run_dir, config, cfg.derived, "sft.steps", RESUME_MAY_DIFFER)
    enable_compile_cache()
    with on_mesh(cfg.mesh) as mesh:
        policy = build_policy(cfg.model, mesh, cfg.dtype)
        if policy.tokenizer is None:
            raise UserError(f"{cfg.model}: SFT needs a tokenizer with a chat template")
        # ---- the first write: nothing above this line leaves anything behind
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config, cfg.resume)
        ckpt = Checkpointer(run_dir / "checkpoints", cfg.checkpoint)
        trainer = SFTTrainer(policy, cfg.sft, cfg.optim, checkpointer=ckpt, writer=MetricsWriter(run_dir))
        history = trainer.run(chats, resume=cfg.resume)
        ckpt.close()
        if cfg.export:
            check_finite_params(policy, f"export {run_dir / 'hf'}")
            models.save_hf(policy, run_dir / "hf")
    losses = [m["loss"] for m in history]
    summary = {"steps_run": len(history), "examples": len(chats), "wall_s": round(time.perf_counter() - t0, 1),
               "loss_first": losses[0] if losses else float("nan"), "loss_last": losses[-1] if losses else float("nan")}
    write_json(run_dir / "summary.json", summary)
    return summary


def run(cfg: SFTRunConfig) -> None:
    from engine.commands.train import print_summary

    print_summary(run_sft(cfg))


COMMAND = Command(SFTRunConfig, run)
