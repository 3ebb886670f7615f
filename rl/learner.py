"""The GRPO learner loop: rollout -> rewards -> advantages -> mu jitted updates -> metrics / hooks / checkpoints.

The learner owns no model-building or data-building logic: it takes its collaborators explicitly
(policy, optional frozen reference parameters, sampler, reward functions, a batch iterator, hooks,
a checkpointer, a metrics writer) so each can be tested and swapped on its own.

A batch from the iterator is a list of P records (DESIGN.md schema) each with `prompt_ids`
(token ids of the chat-templated prompt). Rewards: `fn(prompts, completions, records) -> list[float | None]`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from engine.checkpoint import Checkpointer
from engine.distributed import gather_objects
from engine.errors import UserError
from engine.flops import grpo_step_flops, peak_flops
from models.loader import Policy
from rl import grpo
from rl.sampler import Rollout, Sampler
from rl.train_step import (GRPOBatch, OptimConfig, TrainState, batch_sharding, build_grpo_step, build_logps_fn,
                           init_state, state_shardings)

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str], list[dict]], list[float | None]]
Hook = Callable[[int, "Learner"], dict[str, float] | None]


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """Loop-level options (the objective is `GRPOConfig`, the optimizer `OptimConfig`)."""

    steps: int = 100  # optimizer batches (rollout batches) to run in total
    log_every: int = 1  # write metrics every N steps
    seed: int = 0  # rollout RNG seed (step k samples with fold_in(seed, k))
    progress: bool = True  # show a progress bar with reward, KL and step time
    log_samples: int = 8  # completions (record id, text, rewards) written to samples.jsonl per logged step

    def __post_init__(self):
        if self.steps < 1 or self.log_every < 1 or self.log_samples < 0:
            raise UserError("learner.steps and learner.log_every must be >= 1, learner.log_samples >= 0")


class MetricsWriter:
    """One JSON object per logged step in `metrics.jsonl` (and TensorBoard scalars when available)."""

    def __init__(self, run_dir: Path | None):
        self.path = None if run_dir is None else Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if self.path is not None and jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(self.path.parent / "tb"))
            except ImportError:
                self.tb = None

    def truncate(self, step: int) -> None:
        """Drops rows logged after `step` (a resume from checkpoint `step` redoes them): one row per step stays."""
        if self.path is None or jax.process_index() != 0:
            return
        for path in (self.path, self.path.with_name("samples.jsonl"), self.path.with_name("evals.jsonl")):
            if path.is_file():
                rows = path.read_text().splitlines()
                keep = [r for r in rows if r.strip() and json.loads(r).get("step", 0) <= step]
                if len(keep) != len(rows):
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text("".join(r + "\n" for r in keep))
                    tmp.replace(path)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        """A few completions per step in `samples.jsonl`: what the rewards were given, to read beside the curves."""
        if self.path is None or jax.process_index() != 0 or not samples:
            return
        with open(self.path.with_name("samples.jsonl"), "a") as fh:
            fh.writelines(json.dumps({"step": step, **s}) + "\n" for s in samples)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.path is None or jax.process_index() != 0:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()


class Learner:
    """Runs GRPO. `run()` resumes from the checkpointer's latest step when `resume=True`."""

    def __init__(self, policy: Policy, sampler: Sampler, reward_fns: Sequence[tuple[str, RewardFn]],
                 data: Iterator[list[dict]], gcfg: grpo.GRPOConfig, optim: OptimConfig, cfg: LearnerConfig,
                 reference_params: Any = None, hooks: Sequence[Hook] = (), checkpointer: Checkpointer | None = None,
                 writer: MetricsWriter | None = None):
        if gcfg.beta > 0 and reference_params is None:
            raise UserError("beta > 0 needs a reference model (reference_params)")
        if gcfg.reward_weights is not None and len(gcfg.reward_weights) != len(reward_fns):
            raise UserError(f"reward_weights has {len(gcfg.reward_weights)} entries for {len(reward_fns)} reward functions")
        self.policy, self.sampler, self.reward_fns, self.data = policy, sampler, list(reward_fns), data
        self.gcfg, self.optim, self.cfg = gcfg, optim, cfg
        self.reference_params, self.hooks = reference_params, list(hooks)
        self.checkpointer, self.writer = checkpointer, writer or MetricsWriter(None)
        mesh = policy.mesh
        self.graphdef, self.state = init_state(policy.model, optim, cfg.seed, mesh)
        self.step_fn = build_grpo_step(self.graphdef, gcfg, optim, state_shardings(self.state, mesh))
        self.logps_fn = build_logps_fn(self.graphdef, optim.logps_chunk)
        self.history: list[dict[str, float]] = []
        self.peak: float | None = None  # FLOP/s of the devices in use, measured or looked up on first use
        self.last_samples: list[dict] = []  # the latest step's completions with their rewards (samples.jsonl)

    # ---- checkpoint / resume ----------------------------------------------------------------

    def _data_state(self) -> dict:
        get = getattr(self.data, "get_state", None)
        return {} if get is None else get()

    def save(self, force: bool = False, metrics: dict | None = None) -> None:
        if self.checkpointer is None:
            return
        step = int(self.state.step)
        self.checkpointer.save(step, self.state, {"data": self._data_state(), "step": step}, metrics, force=force)

    def restore(self) -> int:
        """Restores state + data iterator from the latest complete checkpoint; returns its step."""
        state, extra, step = self.checkpointer.restore(self.state)
        self.state = state
        nnx.update(self.policy.model, self.state.params)
        if extra.get("data") and hasattr(self.data, "set_state"):
            self.data.set_state(extra["data"])
        self.writer.truncate(step)
        log.info("resumed from step %d", step)
        return step

    # ---- one step ---------------------------------------------------------------------------

    def rewards(self, rollout: Rollout, records: list[dict]) -> tuple[np.ndarray, dict[str, float]]:
        G = rollout.num_generations
        recs = [r for r in records for _ in range(G)]
        tok = self.policy.tokenizer
        # The prompt text as the model saw it (chat template included): decoded once per prompt, repeated G times.
        texts = ([tok.decode(r["prompt_ids"]) for r in records] if tok is not None
                 else [" ".join(map(str, r["prompt_ids"])) for r in records])
        prompts = [t for t in texts for _ in range(G)]
        completions = rollout.texts if rollout.texts is not None else [" ".join(map(str, row)) for row in
                                                                      rollout.completion_ids_BxT.tolist()]
        cols, metrics = [], {}
        for name, fn in self.reward_fns:
            vals = fn(prompts, completions, recs)
            if len(vals) != len(completions):
                raise ValueError(f"reward function {name} returned {len(vals)} values for {len(completions)} completions")
            col = np.array([np.nan if v is None else float(v) for v in vals], np.float32)
            cols.append(col)
            if np.isfinite(col).any():
                metrics[f"rewards/{name}/mean"] = float(np.nanmean(col))
                metrics[f"rewards/{name}/std"] = float(np.nanstd(col))
        self.last_samples = [{"id": r.get("id"), "completion": c, "reward": [None if np.isnan(x) else float(x)
                                                                         for x in row]}
                             for r, c, row in zip(recs, completions, np.stack(cols, axis=1).tolist(), strict=True)]
        return np.stack(cols, axis=1), metrics

    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        step = int(self.state.step)
        records = gather_objects(next(self.data))  # multi-host: each process read its shard; all see the global batch
        G, T = self.gcfg.num_generations, self.sampler.cfg.max_new_tokens
        nnx.update(self.policy.model, self.state.params)
        seed = int(jax.random.randint(jax.random.fold_in(jax.random.wrap_key_data(self.state.rng), step), (), 0, 2**31 - 1))
        rollout = self.sampler(self.policy, [r["prompt_ids"] for r in records], G, seed=seed)
        t_roll = time.perf_counter()

        rewards_BxR, metrics = self.rewards(rollout, records)
        rewards_B = grpo.combine_rewards(jnp.asarray(rewards_BxR), self.gcfg.reward_weights)
        adv_B = grpo.advantages(rewards_B, self.gcfg)
        metrics.update({k: float(v) for k, v in grpo.group_stats(rewards_B, self.gcfg).items()})
        t_rew = time.perf_counter()

        ids_BxL = np.concatenate([rollout.prompt_ids_BxL, rollout.completion_ids_BxT], axis=1)
        mask_BxL = np.concatenate([rollout.prompt_mask_BxL, rollout.completion_mask_BxT], axis=1)
        cmask_BxT = grpo.completion_mask(jnp.asarray(rollout.lengths_B), jnp.asarray(rollout.truncated_B), T, self.gcfg)
        mesh = self.policy.mesh
        put = (lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))) if mesh is not None else jnp.asarray
        ids, mask = put(ids_BxL.astype(np.int32)), put(mask_BxL)
        ref = None
        if self.gcfg.beta > 0:
            # Waiting here costs nothing (the update needs it next) and makes time/reference the forward's cost.
            ref = jax.block_until_ready(self.logps_fn(self.reference_params, ids, mask, T))
        t_ref = time.perf_counter()
        old = put(rollout.logprobs_BxT) if self.gcfg.num_iterations > 1 else None
        batch = GRPOBatch(ids, mask, put(np.asarray(cmask_BxT, np.float32)), put(np.asarray(adv_B, np.float32)),
                          old, ref)
        for _ in range(self.gcfg.num_iterations):
            self.state, step_metrics = self.step_fn(self.state, batch)
        step_metrics = jax.device_get(step_metrics)
        t_end = time.perf_counter()

        n_tokens = int(rollout.lengths_B.sum())
        metrics.update({k: float(v) for k, v in step_metrics.items()})
        metrics.update({
            "completions/mean_length": float(rollout.lengths_B.mean()),
            "completions/clipped_ratio": float(rollout.truncated_B.mean()),
            "step_time": t_end - t0, "time/rollout": t_roll - t0, "time/rewards": t_rew - t_roll,
            "time/reference": t_ref - t_rew,
            "time/update": t_end - t_ref, "tokens_per_s": n_tokens / (t_end - t0),
        })
        flops = grpo_step_flops(self.policy.config, len(rollout.lengths_B), float(rollout.prompt_mask_BxL.sum(1).mean()),
                                float(rollout.lengths_B.mean()), self.gcfg.beta > 0, self.gcfg.num_iterations)
        metrics["mfu"] = sum(flops.values()) / (t_end - t0) / self._peak_flops()
        return metrics

    def _peak_flops(self) -> float:
        """The mesh's peak FLOP/s (a CPU's fake devices share one set of cores: its peak counts once)."""
        if self.peak is None:
            dev = jax.devices()[0]
            n = 1 if dev.platform == "cpu" else (self.policy.mesh.size if self.policy.mesh is not None else 1)
            self.peak = peak_flops(self.policy.config.dtype, dev) * n
        return self.peak

    def run(self, resume: bool = False) -> list[dict[str, float]]:
        start = 0
        if resume and self.checkpointer is not None and self.checkpointer.latest_step() is not None:
            start = self.restore()
        bar = None
        if self.cfg.progress and jax.process_index() == 0:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.steps, initial=start, desc="grpo", dynamic_ncols=True)
        if start == 0:  # step-0 evals and monitors: the baseline every later value is compared with
            baseline: dict[str, float] = {}
            for hook in self.hooks:
                baseline.update(hook(0, self) or {})
            self._log(0, baseline)
        for _ in range(start, self.cfg.steps):
            metrics = self.train_step()
            step = int(self.state.step)
            for hook in self.hooks:
                metrics.update(hook(step, self) or {})
            self.history.append(metrics)
            if step % self.cfg.log_every == 0 or step == self.cfg.steps:
                self._log(step, metrics)
                self.writer.write_samples(step, self.last_samples[: self.cfg.log_samples])
            self.save(metrics=metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics.get('kl', 0.0):.2e}",
                                step_s=f"{metrics['step_time']:.2f}")
        if bar is not None:
            bar.close()
        if self.checkpointer is not None:
            if self.checkpointer.latest_step() != int(self.state.step):
                self.save(force=True)
            self.checkpointer.wait()
        return self.history

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if metrics:
            self.writer.write(step, metrics)
