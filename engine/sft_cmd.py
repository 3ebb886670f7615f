"""`traitrl sft`: supervised fine-tuning from a JSONL file of chats, with checkpoints, resume and HF export.

The run directory gets `config.json`, `metrics.jsonl`, Orbax checkpoints under `checkpoints/`, the
Hugging Face export under `hf/` and `summary.json`, like `traitrl train`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import jax

from data.readers import read_json_objects
from engine.checkpoint import CheckpointConfig, Checkpointer
from engine.errors import UserError
from engine.sharding import make_mesh
from rl.sft import SFTConfig, SFTTrainer
from rl.train_step import OptimConfig


@dataclasses.dataclass(frozen=True)
class SFTRunConfig:
    """An SFT run: the model, the chats, and each package's options."""

    data: Path  # JSONL, one {"messages": [..., {"role": "assistant", "content": "..."}]} per line
    model: str = "smollm2-135m-instruct"  # known name, HF directory, or .gguf file
    run_dir: Path = Path("runs/sft")  # outputs: metrics, checkpoints, HF export, summary
    resume: bool = False  # continue from the latest complete checkpoint in run_dir
    export: bool = True  # write an HF directory (run_dir/hf) at the end
    mesh: tuple[int, int, int] | None = None  # (data, fsdp, tensor); None = one device, no mesh
    dtype: str = "float32"  # compute dtype (float32 | bfloat16); parameters stay float32
    sft: SFTConfig = SFTConfig()  # steps, batch, lengths, data order
    optim: OptimConfig = OptimConfig(learning_rate=1e-5, schedule="constant")  # AdamW
    checkpoint: CheckpointConfig = CheckpointConfig(save_every=50, keep=2)  # save cadence, retention


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
    from rl.learner import MetricsWriter

    t0 = time.perf_counter()
    chats = read_chats(Path(cfg.data))
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise UserError(f"{run_dir}: run directory is not empty (pass --resume to continue it, or another --run-dir)")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    mesh = make_mesh(*cfg.mesh) if cfg.mesh is not None else None
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        policy = models.load(cfg.model, mesh=mesh, dtype=cfg.dtype)
        ckpt = Checkpointer(run_dir / "checkpoints", cfg.checkpoint)
        trainer = SFTTrainer(policy, cfg.sft, cfg.optim, checkpointer=ckpt, writer=MetricsWriter(run_dir))
        history = trainer.run(chats, resume=cfg.resume)
        ckpt.close()
        if cfg.export:
            models.save_hf(policy, run_dir / "hf")
    losses = [m["loss"] for m in history]
    summary = {"steps_run": len(history), "examples": len(chats), "wall_s": round(time.perf_counter() - t0, 1),
               "loss_first": losses[0] if losses else float("nan"), "loss_last": losses[-1] if losses else float("nan")}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
