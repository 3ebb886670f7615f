"""`traitrl train`: one typed config tree, named presets, and the wiring of the GRPO run.

The run directory gets `config.json` (the resolved config), `metrics.jsonl`, `samples.jsonl`, Orbax
checkpoints under `checkpoints/`, in-loop evals, the final Hugging Face export under `hf/`,
`summary.json` and `report.md`. `--resume` continues from the newest checkpoint that restores
(parameters, optimizer, step, RNG and data-iterator position) with the run's own config: an option given
differently is an error naming it, except a larger `--learner.steps`, which extends the run.

Everything is validated before the first write (`check_inputs`: the run directory, the resumed config,
benchmark names, the monitor's direction file, every record of the data files through the schema and
the grader registry; then the model): a command that fails leaves nothing behind. The export refuses
non-finite parameters.

Derived fields are left as None in the presets and filled in `TrainConfig.__post_init__` from the
fields they follow, so `--learner.steps 500` also stretches the schedule, the warmup, the checkpoint
and eval cadence; an explicit value always wins, and one that another field would silently contradict
is an error naming both.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Literal

from data.config import DataConfig
from engine.checkpoint import CheckpointConfig
from engine.commands.common import (TINY, as_json, check_finite, check_mesh, check_resume_config, check_run_dir,
                                    unset_derived)
from engine.commands.main import Command
from engine.distributed import DistributedConfig
from engine.errors import UserError
from engine.train_state import OptimConfig
from evals.config import EvalConfig
from evals.persona.monitor import MonitorConfig
from rl.grpo import GRPOConfig
from rl.learner import LearnerConfig
from rl.rewards import RewardsConfig
from rl.sampler import SamplingConfig

log = logging.getLogger("traitrl")

Dtype = Literal["float32", "bfloat16"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a GRPO run needs; each package's options live in its own sub-config."""

    model: str = "smollm2-135m-instruct"  # known name, HF directory, .gguf file, or "tiny" (random, toy tokenizer)
    run_dir: Path = Path("runs/default")  # outputs: metrics, checkpoints, HF export, summary
    resume: bool = False  # continue from the latest complete checkpoint in run_dir
    export: bool = True  # write an HF directory (run_dir/hf) at the end
    mesh: tuple[int, int, int] | None = None  # (data, fsdp, tensor); None = one device, no mesh
    dtype: Dtype = "float32"  # compute dtype; parameters stay float32
    # rematerialisation: none | block (recompute each block's internals) | full (save only block inputs); auto = the
    # least recompute the memory plan fits (with --optim.micro-batches auto: the smallest micro-batch count first)
    remat: Literal["auto", "none", "block", "full"] = "auto"
    plan: bool = False  # print the memory plan (per phase, per part) and exit: nothing loaded, compiled or written
    gpu_memory_fraction: float = 0.9  # the share of each GPU JAX may allocate (set before JAX starts; env wins)
    data: DataConfig = DataConfig()  # trait-mix data (dose, ablation filters, batch of prompts)
    grpo: GRPOConfig = GRPOConfig()  # the objective (TRL's option names)
    sampling: SamplingConfig = SamplingConfig()  # how rollouts are drawn
    optim: OptimConfig = OptimConfig()  # AdamW, schedule, micro-batches
    checkpoint: CheckpointConfig = CheckpointConfig()  # save cadence, retention
    learner: LearnerConfig = LearnerConfig()  # steps, logging
    rewards: RewardsConfig = RewardsConfig()  # trait reward: programmatic rubric checks | judge | both | helpfulness
    evals: EvalConfig = EvalConfig()  # in-loop evals: benchmarks, subset size, cadence (every=0 turns them off)
    monitor: MonitorConfig = MonitorConfig()  # persona-direction monitor (off unless --monitor.direction is given)
    distributed: DistributedConfig = DistributedConfig()  # multi-host: coordinator, process count and id

    @property
    def derived(self) -> tuple[str, ...]:
        """The dotted names of the fields `__post_init__` filled (kept off the dataclass fields, so tyro never
        reads or sets them)."""
        return self.__dict__.get("_derived", ())

    def __post_init__(self):
        check_mesh(self.mesh)
        check_finite(self)
        if not 0 < self.gpu_memory_fraction <= 1:
            raise UserError("option '--gpu-memory-fraction': expected a number in (0, 1], "
                            f"got {self.gpu_memory_fraction}")
        steps, derived = self.learner.steps, []

        def fill(section: str, name: str, value) -> None:
            sub = getattr(self, section)
            if getattr(sub, name) is None:
                object.__setattr__(self, section, dataclasses.replace(sub, **{name: value}))
                derived.append(f"{section}.{name}")

        fill("optim", "total_steps", steps)
        fill("optim", "warmup_steps", max(1, steps // 10))
        fill("checkpoint", "save_every", max(1, steps // 4))
        fill("evals", "every", max(1, steps // (self.evals.midpoints + 1)))
        T = self.sampling.max_new_tokens
        if self.grpo.max_completion_length not in (None, T):
            raise UserError(f"option 'grpo.max_completion_length' ({self.grpo.max_completion_length}) contradicts "
                            f"'sampling.max_new_tokens' ({T}): give one of them")
        fill("grpo", "max_completion_length", T)
        last = self.sampling.prompt_buckets[-1]
        if self.data.max_prompt_len is not None and self.data.max_prompt_len > last:
            raise UserError(f"option 'data.max_prompt_len' ({self.data.max_prompt_len}) exceeds the largest of "
                            f"'sampling.prompt_buckets' ({last})")
        fill("data", "max_prompt_len", last)
        fill("data", "trait_fraction", self.data.dose)
        object.__setattr__(self, "_derived", tuple(derived))


def _preset(steps: int, P: int, G: int, T: int, lr: float, temperature: float = 1.0, **kw) -> TrainConfig:
    buckets = kw.pop("buckets", (128, 256, 512))
    return TrainConfig(
        data=DataConfig(batch_size=P, n_per_cell=kw.pop("n_per_cell", 300), n_regular=kw.pop("n_regular", 20_000)),
        grpo=GRPOConfig(num_generations=G, beta=0.04, loss_type="grpo"),
        sampling=SamplingConfig(temperature=temperature, max_new_tokens=T, prompt_buckets=buckets),
        optim=OptimConfig(learning_rate=lr, micro_batches="auto"),
        checkpoint=CheckpointConfig(keep=2),
        learner=LearnerConfig(steps=steps), **kw)


PRESETS: dict[str, TrainConfig] = {
    # SmolLM2-135M-Instruct on a 2-core CPU: 8 rollouts (2 prompts x 4) of up to 48 tokens per step at T=0.7 (the
    # temperature `traitrl data calibrate` kept the most levels at), on the calibrated levels
    # (data.tasks.DEFAULT_LEVELS); the held-out reward (200 records) at step 0 and at the end. README: what was tried.
    "default": _preset(steps=20, P=2, G=4, T=48, lr=2e-5, temperature=0.7,
                       evals=EvalConfig(benchmarks=("heldout-reward",), limit=200, batch_size=100, midpoints=0)),
    # The same pipeline on a tiny random model with a toy tokenizer: a smoke run in about a minute.
    "tiny": _preset(steps=6, P=4, G=4, T=16, lr=1e-3, model=TINY, run_dir=Path("runs/tiny"),
                    n_per_cell=20, n_regular=2000, evals=EvalConfig(limit=4)),
    # A 1-2B model on one GPU (bf16 compute, larger groups).
    "gpu-1b": _preset(steps=500, P=16, G=8, T=512, lr=1e-6, model="HuggingFaceTB/SmolLM2-1.7B-Instruct",
                      run_dir=Path("runs/gpu-1b"), dtype="bfloat16"),
    # A TPU v5e-8 slice: FSDP over 8 chips.
    "tpu-v5e-8": _preset(steps=1000, P=64, G=8, T=1024, lr=1e-6, model="Qwen/Qwen2.5-1.5B-Instruct",
                         run_dir=Path("runs/tpu-v5e-8"), dtype="bfloat16", mesh=(1, 8, 1)),
}


def config_dict(cfg: TrainConfig) -> dict:
    """The resolved config as JSON-able data (what `config.json` holds), with the names of the derived fields."""
    return {**as_json(cfg), "derived": list(cfg.derived)}


# Options a resumed run may give differently: where outputs go, whether to export, the progress bar, the launch
# of a pod (coordinator, process id and this process's data shard), the device mesh (Orbax restores onto any
# mesh), and whether saves are asynchronous. Everything else must match the run's config.json.
RESUME_MAY_DIFFER = ("run_dir", "resume", "export", "learner.progress", "distributed", "data.shard_index", "mesh",
                     "plan", "gpu_memory_fraction",
                     "checkpoint.async_save")


def check_inputs(cfg: TrainConfig):
    """Everything checkable before the model loads, with nothing written: the run directory (and with --resume,
    that the config matches the run's), benchmark names, the monitor's direction file, and every record of the
    data through the schema and the grader registry (file:line). Returns ((trait, regular) records, direction)."""
    from data.pipeline import load_sources
    from evals import registry
    from rl.rewards import registered

    run_dir = Path(cfg.run_dir)
    check_run_dir(run_dir, cfg.resume)
    if cfg.resume:
        check_resume_config(run_dir, config_dict(cfg), cfg.derived, "learner.steps", RESUME_MAY_DIFFER)
    for name in cfg.evals.benchmarks:
        registry.get(name)
    direction = None
    if cfg.monitor.direction is not None:
        from evals.persona.directions import Direction

        direction = Direction.load(cfg.monitor.direction)
    if cfg.rewards.trait in ("judge", "both"):
        check_reachable(cfg.rewards.judge.base_url, "--rewards.judge.base-url")
    return load_sources(cfg.data, known_graders=registered()), direction


def check_reachable(url: str, option: str, timeout_s: float = 5.0) -> None:
    """A judge's endpoint accepts connections (before anything is written; a judge that goes away later is
    retried and then counted in rewards/judge_failures, never a 0 reward)."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"option '{option}': cannot connect to {u.hostname}:{port} ({e.strerror or e})") from None


def check_finite_params(policy, what: str) -> None:
    """An export (or any write of the weights) never holds a NaN or an infinity."""
    from flax import nnx

    from engine.train_state import nonfinite_paths

    bad = nonfinite_paths(nnx.state(policy.model, nnx.Param))
    if bad:
        raise UserError(f"{what}: refusing to write non-finite parameters ({len(bad)} tensor(s), first {bad[0]})")


def memory_plan(cfg: TrainConfig, device=None):
    """The run's memory plan (`models.memory.choose`): the micro-batch count and remat level that fit the device,
    from the model's config.json and the run's shapes; raises a one-line UserError when nothing fits."""
    import jax

    from engine.commands.common import policy_config
    from engine.sharding import check_mesh_size
    from models import memory

    if cfg.mesh is not None and not cfg.plan:  # a plan alone may be for another machine's devices
        check_mesh_size(cfg.mesh)

    try:
        mcfg = policy_config(cfg.model, cfg.dtype)
    except UserError:  # `--plan` for a shipped preset's model not downloadable here: plan from its known shape
        if not cfg.plan or cfg.model not in memory.KNOWN_SHAPES:
            raise
        from models.config import ModelConfig

        mcfg = ModelConfig.from_hf(memory.KNOWN_SHAPES[cfg.model], dtype=cfg.dtype)
    work = memory.Workload(prompts=cfg.data.batch_size * jax.process_count(), generations=cfg.grpo.num_generations,
                           prompt_len=cfg.sampling.prompt_buckets[-1], completion_len=cfg.sampling.max_new_tokens,
                           reference=cfg.grpo.uses_reference, old_logps=cfg.grpo.num_iterations > 1,
                           logps_chunk=cfg.optim.logps_chunk, kv_block=cfg.sampling.kv_block,
                           gather_weights=cfg.sampling.gather_weights)
    return memory.choose(mcfg, work, cfg.mesh or (1, 1, 1), device or memory.device_of(),
                         cfg.optim.micro_batches, cfg.remat)


def train(cfg: TrainConfig):
    """Builds the collaborators, runs the learner, exports; returns (summary, the trained policy)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import models
    from data.pipeline import prompt_iterator
    from engine.checkpoint import Checkpointer
    from engine.commands.common import build_policy, enable_compile_cache, on_mesh, write_config, write_json
    from engine.distributed import initialize
    from engine.metrics import MetricsWriter
    from evals.hook import EvalHook
    from models.memory import set_gpu_memory_fraction
    from models.tokenizer import pad_id
    from rl.learner import Learner
    from rl.rewards import TaskReward, format_reward
    from rl.sampler import Sampler

    set_gpu_memory_fraction(cfg.gpu_memory_fraction)  # before JAX's GPU backend starts (the first device query)
    t0 = time.perf_counter()
    if initialize(cfg.distributed) and cfg.data.shard_count == 1:  # each process reads its own shard of the data
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, shard_index=jax.process_index(),
                                                                shard_count=jax.process_count()))
    run_dir = Path(cfg.run_dir)
    (trait, regular), direction = check_inputs(cfg)
    plan = memory_plan(cfg)  # before any weight is read: a run that cannot fit stops here, in seconds
    if direction is not None:  # the direction must fit this model: a residual layer of it, its width
        n, width = plan.cfg.num_hidden_layers, plan.cfg.hidden_size
        if not 0 <= direction.layer <= n or direction.vector_D.shape != (width,):
            raise UserError(f"option '--monitor.direction': {cfg.monitor.direction} is at layer {direction.layer} "
                            f"with width {direction.vector_D.shape[-1]}; the model has residual layers 0..{n} "
                            f"of width {width}")
    log.info("memory plan: %s", plan.summary())
    optim = dataclasses.replace(cfg.optim, micro_batches=plan.micro_batches)
    enable_compile_cache()
    with on_mesh(cfg.mesh) as mesh:
        policy = build_policy(cfg.model, mesh, cfg.dtype, seed=cfg.data.seed, remat=plan.remat)
        if policy.tokenizer is None:
            raise UserError(f"{cfg.model}: has no tokenizer files; training needs one for the chat template")
        if jax.process_count() > 1:  # every process has validated before process 0 writes the run directory
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("traitrl inputs checked")
        # ---- the first write: nothing above this line leaves anything behind
        run_dir.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            write_config(run_dir, config_dict(cfg), cfg.resume)
        reference = None
        if cfg.grpo.uses_reference:  # a frozen copy of the initial parameters (no second model object)
            reference = jax.tree.map(jnp.copy, nnx.state(policy.model, nnx.Param))
        data = prompt_iterator(cfg.data, policy.tokenizer, cfg.sampling.prompt_buckets,
                               pad_id(policy.tokenizer, policy.config), trait=trait, regular=regular)
        evals = EvalHook(cfg.evals, run_dir, last_step=cfg.learner.steps)
        hooks = [evals] if cfg.evals.every else []
        if direction is not None:
            from evals.persona.monitor import PersonaMonitor

            hooks.append(PersonaMonitor(direction, cfg=cfg.monitor))
        checkpointer = Checkpointer(run_dir / "checkpoints", cfg.checkpoint)
        learner = Learner(policy, Sampler(cfg.sampling), [("graders", TaskReward(cfg.rewards)), ("format", format_reward)],
                          data, cfg.grpo, optim, cfg.learner, reference_params=reference, hooks=hooks,
                          checkpointer=checkpointer, writer=MetricsWriter(run_dir))
        history = learner.run(resume=cfg.resume)
        checkpointer.close()
        policy = learner.policy()
        if cfg.export:
            check_finite_params(policy, f"export {run_dir / 'hf'}")
            models.save_hf(policy, run_dir / "hf")
    summary = _summary(history, time.perf_counter() - t0)
    summary.update(micro_batches=plan.micro_batches, remat=plan.remat, plan_peak_gib=round(plan.peak / 2**30, 2))
    summary["eval_s"] = round(sum(seconds for _, seconds in evals.history), 1)  # step 0 included
    summary["eval_fraction"] = round(summary["eval_s"] / summary["wall_s"], 3)
    if jax.process_index() == 0:
        from evals.run_report import write_run_report

        write_json(run_dir / "summary.json", summary)
        summary["report"] = str(write_run_report(run_dir, summary))
    return summary, policy


def _summary(history: list[dict], wall_s: float) -> dict:
    def mean(key, rows):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else float("nan")

    k = max(1, len(history) // 4)
    return {"steps_run": len(history), "wall_s": round(wall_s, 1),
            "reward_first": mean("reward", history[:k]), "reward_last": mean("reward", history[-k:]),
            "kl_last": mean("kl", history[-k:]), "frac_reward_zero_std_mean": mean("frac_reward_zero_std", history),
            "step_time_mean": mean("step_time", history),
            "tokens_per_s_mean": mean("tokens_per_s", history), "mfu_mean": mean("mfu", history)}


def print_summary(summary: dict) -> None:
    width = max(map(len, summary))
    print("\n".join(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                    for k, v in summary.items()))


def run(cfg: TrainConfig) -> dict:
    """`traitrl train`: the run, then its summary table on stdout (`--plan`: the memory plan only)."""
    if cfg.plan:
        p = memory_plan(cfg)
        print(p.table())
        print(p.summary())
        return {"plan_peak_gib": round(p.peak / 2**30, 2), "micro_batches": p.micro_batches, "remat": p.remat}
    summary = train(cfg)[0]
    print_summary(summary)
    return summary


COMMAND = Command(TrainConfig, run, PRESETS, unset_derived)
