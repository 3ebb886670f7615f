"""`traitrl train`: one typed config tree, named presets, and the wiring of the GRPO run.

The run directory gets `config.json`, `metrics.jsonl`, Orbax checkpoints under `checkpoints/`, the
final Hugging Face export under `hf/`, and `summary.json`. `--resume` continues from the latest
complete checkpoint (parameters, optimizer, step, RNG and data-iterator position).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from data.config import DataConfig
from engine.checkpoint import CheckpointConfig, Checkpointer
from engine.distributed import DistributedConfig, initialize
from engine.errors import UserError
from engine.sharding import make_mesh
from evals.config import EvalConfig
from rl.grpo import GRPOConfig
from rl.learner import LearnerConfig
from rl.sampler import SamplingConfig
from rl.train_step import OptimConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a GRPO run needs; each package's options live in its own sub-config."""

    model: str = "smollm2-135m-instruct"  # known name, HF directory, .gguf file, or "tiny" (random, toy tokenizer)
    run_dir: Path = Path("runs/default")  # outputs: metrics, checkpoints, HF export, summary
    resume: bool = False  # continue from the latest complete checkpoint in run_dir
    export: bool = True  # write an HF directory (run_dir/hf) at the end
    mesh: tuple[int, int, int] | None = None  # (data, fsdp, tensor); None = one device, no mesh
    dtype: str = "float32"  # compute dtype (float32 | bfloat16); parameters stay float32
    data: DataConfig = DataConfig()  # trait-mix data (dose, ablation filters, batch of prompts)
    grpo: GRPOConfig = GRPOConfig()  # the objective (TRL's option names)
    sampling: SamplingConfig = SamplingConfig()  # how rollouts are drawn
    optim: OptimConfig = OptimConfig()  # AdamW, schedule, micro-batches
    checkpoint: CheckpointConfig = CheckpointConfig()  # save cadence, retention
    learner: LearnerConfig = LearnerConfig()  # steps, logging
    evals: EvalConfig = EvalConfig()  # in-loop evals: benchmarks, subset size, cadence (every=0 turns them off)
    distributed: DistributedConfig = DistributedConfig()  # multi-host: coordinator, process count and id

    def __post_init__(self):
        if self.grpo.max_completion_length != self.sampling.max_new_tokens:
            raise UserError(f"grpo.max-completion-length ({self.grpo.max_completion_length}) must equal "
                            f"sampling.max-new-tokens ({self.sampling.max_new_tokens})")
        if self.mesh is not None and any(m < 1 for m in self.mesh):
            raise UserError(f"mesh: expected three positive sizes (data, fsdp, tensor), got {self.mesh}")


def _preset(steps: int, P: int, G: int, T: int, lr: float, **kw) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(batch_size=P, trait_fraction=0.05, buckets=(128, 256, 512), max_prompt_len=512,
                        n_per_cell=kw.pop("n_per_cell", 300), n_regular=kw.pop("n_regular", 20_000)),
        grpo=GRPOConfig(num_generations=G, max_completion_length=T, beta=0.04, loss_type="grpo"),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=T, prompt_buckets=(128, 256, 512)),
        optim=OptimConfig(learning_rate=lr, warmup_steps=max(1, steps // 10), total_steps=steps),
        checkpoint=CheckpointConfig(save_every=max(1, steps // 4), keep=2),
        learner=LearnerConfig(steps=steps), **kw)


PRESETS: dict[str, TrainConfig] = {
    # SmolLM2-135M-Instruct on a 2-core CPU: 8 rollouts (2 prompts x 4) of 32 tokens per step, ~5 min.
    "default": _preset(steps=12, P=2, G=4, T=32, lr=1e-6),
    # The same pipeline on a tiny random model with a toy tokenizer: a smoke run in about a minute.
    "tiny": _preset(steps=6, P=4, G=4, T=16, lr=1e-3, model="tiny", run_dir=Path("runs/tiny"),
                    n_per_cell=20, n_regular=2000),
    # A 1-2B model on one GPU (bf16 compute, remat-free, larger groups).
    "gpu-1b": dataclasses.replace(_preset(steps=500, P=16, G=8, T=512, lr=1e-6, model="HuggingFaceTB/SmolLM2-1.7B-Instruct",
                                          run_dir=Path("runs/gpu-1b")), dtype="bfloat16"),
    # A TPU v5e-8 slice: FSDP over 8 chips.
    "tpu-v5e-8": dataclasses.replace(_preset(steps=1000, P=64, G=8, T=1024, lr=1e-6, model="Qwen/Qwen2.5-1.5B-Instruct",
                                             run_dir=Path("runs/tpu-v5e-8")), dtype="bfloat16", mesh=(1, 8, 1)),
}


class _Batches:
    """Adapts the Grain `PromptBatch` iterator to the learner's list-of-records batches (state passes through)."""

    def __init__(self, it):
        self.it = it

    def __next__(self):
        b = next(self.it)
        return [{**r, "prompt_ids": ids[m.astype(bool)].tolist()}
                for r, ids, m in zip(b.records, b.input_ids_BxL, b.mask_BxL, strict=True)]

    def get_state(self):
        return self.it.get_state()

    def set_state(self, state):
        self.it.set_state(state)


def _policy(cfg: TrainConfig, mesh):
    import models

    if cfg.model != "tiny":
        return models.load(cfg.model, mesh=mesh, dtype=cfg.dtype)
    from data.toy_tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer(vocab_size=1024)
    mcfg = models.ModelConfig(family="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              attention_bias=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                              dtype=cfg.dtype)
    return models.Policy(models.init(mcfg, mesh=mesh, seed=cfg.data.seed), tok, mcfg, "", mesh)


def run(cfg: TrainConfig) -> dict:
    """Builds the collaborators, runs the learner, exports, and returns the summary."""
    return train(cfg)[0]


def train(cfg: TrainConfig):
    """`run`, also returning the trained policy (for probes that follow training in the same process)."""
    import models
    from data.pipeline import prompt_iterator
    from rl.learner import Learner, MetricsWriter
    from rl.rewards import format_reward, record_reward
    from evals.hook import EvalHook
    from rl.sampler import Sampler

    t0 = time.perf_counter()
    if initialize(cfg.distributed) and cfg.data.shard_count == 1:  # each process reads its own shard of the data
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, shard_index=jax.process_index(),
                                                                shard_count=jax.process_count()))
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise UserError(f"{run_dir}: run directory is not empty (pass --resume to continue it, or another --run-dir)")
    if jax.process_count() > 1:  # every process has checked the directory before process 0 writes into it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("traitrl run_dir checked")
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(*cfg.mesh) if cfg.mesh is not None else None
    ctx = jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext()
    with ctx:
        policy = _policy(cfg, mesh)
        if policy.tokenizer is None:
            raise UserError(f"{cfg.model}: has no tokenizer files; training needs one for the chat template")
        if jax.process_index() == 0:
            (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        reference = None
        if cfg.grpo.beta > 0:  # a frozen copy of the initial parameters (no second model object)
            reference = jax.tree.map(jnp.copy, nnx.state(policy.model, nnx.Param))
        data = _Batches(prompt_iterator(cfg.data, policy.tokenizer))
        evals = EvalHook(cfg.evals, run_dir)
        learner = Learner(policy, Sampler(cfg.sampling), [("graders", record_reward), ("format", format_reward)],
                          data, cfg.grpo, cfg.optim, cfg.learner, reference_params=reference,
                          hooks=[evals] if cfg.evals.every else [],
                          checkpointer=Checkpointer(run_dir / "checkpoints", cfg.checkpoint),
                          writer=MetricsWriter(run_dir))
        history = learner.run(resume=cfg.resume)
        learner.checkpointer.close()
        nnx.update(policy.model, learner.state.params)
        if cfg.export:
            models.save_hf(policy, run_dir / "hf")
    summary = _summary(history, time.perf_counter() - t0)
    summary["eval_s"] = round(sum(seconds for _, seconds in evals.history), 1)  # step 0 included
    summary["eval_fraction"] = round(summary["eval_s"] / summary["wall_s"], 3)
    if jax.process_index() == 0:
        from engine.report import write_run_report

        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        summary["report"] = str(write_run_report(run_dir, summary))
    return summary, policy


def _summary(history: list[dict], wall_s: float) -> dict:
    def mean(key, rows):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else float("nan")

    k = max(1, len(history) // 4)
    return {"steps_run": len(history), "wall_s": round(wall_s, 1),
            "reward_first": mean("reward", history[:k]), "reward_last": mean("reward", history[-k:]),
            "kl_last": mean("kl", history[-k:]), "step_time_mean": mean("step_time", history),
            "tokens_per_s_mean": mean("tokens_per_s", history), "mfu_mean": mean("mfu", history)}


def print_summary(summary: dict) -> None:
    width = max(map(len, summary))
    print("\n".join(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                    for k, v in summary.items()))

