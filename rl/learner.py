"""The GRPO learner loop: rollout -> rewards -> advantages -> mu jitted updates -> metrics / hooks / checkpoints.

The learner owns no model-building or data-building logic: it takes its collaborators explicitly
(policy, optional frozen reference parameters, sampler, reward functions, a batch iterator, hooks,
a checkpointer, a metrics writer) so each can be tested and swapped on its own.

A batch from the iterator is a `data.pipeline.PromptBatch`: P left-padded prompts (chat template applied)
and their records (DESIGN.md schema); the sampler takes the padded arrays as they are.
Rewards: `fn(prompts, completions, records) -> list[float | None]`; a function may expose `last_metrics` (a dict
merged into the step's metrics, e.g. judge failures). The first reward function is the primary one (the task
reward): a row it returns None for (a judge that failed) is left out of its group's advantages altogether, not
scored by the others alone. Rewards are computed in a worker thread while the reference forward runs, so a
networked judge adds latency only beyond the forward's time (`time/rewards`, `time/rewards_wait`).

The model lives in one place, the train state's parameters; `policy()` is a view of the policy at the
current parameters, which is what rollouts, hooks (`hook(step, policy) -> metrics`) and exports see. The
policy given to the learner is stale while it trains (its buffers are donated to the updates); `run()`
writes the final parameters back into it, the one place they are synced.
"""

from __future__ import annotations

import concurrent.futures
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

from data.pipeline import PromptBatch
from engine.checkpoint import Checkpointer, fault, kill_if
from engine.distributed import gather_objects
from engine.errors import UserError
from engine.flops import peak_flops
from engine.metrics import MetricsWriter
from engine.sharding import batch_sharding
from engine.train_state import OptimConfig, init_state, state_shardings
from models.flops import grpo_step_flops
from models.loader import Policy
from models.tokenizer import pad_id, unpad, widen
from rl import grpo
from rl.sampler import Rollout, Sampler
from rl.train_step import GRPOBatch, build_grpo_step, build_logps_fn

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str], list[dict]], list[float | None]]
Hook = Callable[[int, Policy], dict[str, float] | None]  # (step, the policy at that step's parameters) -> metrics


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """Loop-level options (the objective is `GRPOConfig`, the optimizer `OptimConfig`)."""

    steps: int = 100  # optimizer batches (rollout batches) to run in total
    log_every: int = 1  # write metrics every N steps
    seed: int = 0  # rollout RNG seed (step k samples with fold_in(seed, k))
    progress: bool = True  # show a progress bar with reward, KL and step time
    log_samples: int = 8  # completions (record id, text, rewards) written to samples.jsonl per logged step
    max_consecutive_skips: int = 3  # stop when more steps than this in a row had a non-finite loss or gradient
    # norm (each such update is skipped: parameters and optimizer state unchanged, counted in train/skipped_steps)

    def __post_init__(self):
        if self.steps < 1 or self.log_every < 1 or self.log_samples < 0:
            raise UserError("learner.steps and learner.log_every must be >= 1, learner.log_samples >= 0")
        if self.max_consecutive_skips < 0:
            raise UserError(f"option 'learner.max_consecutive_skips': expected >= 0, got {self.max_consecutive_skips}")


class Learner:
    """Runs GRPO. `run()` resumes from the checkpointer's latest step when `resume=True`."""

    def __init__(self, policy: Policy, sampler: Sampler, reward_fns: Sequence[tuple[str, RewardFn]],
                 data: Iterator[PromptBatch], gcfg: grpo.GRPOConfig, optim: OptimConfig, cfg: LearnerConfig,
                 reference_params: Any = None, hooks: Sequence[Hook] = (), checkpointer: Checkpointer | None = None,
                 writer: MetricsWriter | None = None):
        if gcfg.uses_reference and reference_params is None:
            raise UserError("beta > 0 needs a reference model (reference_params)")
        if gcfg.reward_weights is not None and len(gcfg.reward_weights) != len(reward_fns):
            raise UserError(f"reward_weights has {len(gcfg.reward_weights)} entries for {len(reward_fns)} reward functions")
        self._policy, self.sampler, self.reward_fns, self.data = policy, sampler, list(reward_fns), data
        optim = optim.for_steps(cfg.steps)  # a schedule not given a length spans the run
        self.gcfg, self.optim, self.cfg = gcfg, optim, cfg
        self.reference_params, self.hooks = reference_params, list(hooks)
        self.checkpointer, self.writer = checkpointer, writer or MetricsWriter(None)
        mesh = policy.mesh
        self.graphdef, self.state = init_state(policy.model, optim, cfg.seed, mesh)
        self._model = policy.model  # written back once, at the end of run()
        self._policy = dataclasses.replace(policy, model=None)  # the parameters live in self.state only
        self.step_fn = build_grpo_step(self.graphdef, gcfg, optim, state_shardings(self.state, mesh))
        self.logps_fn = build_logps_fn(self.graphdef, optim.logps_chunk, optim.micro_batch_count)  # as the update
        self.history: list[dict[str, float]] = []
        self.peak: float | None = None  # FLOP/s of the devices in use, measured or looked up on first use
        self.last_samples: list[dict] = []  # the latest step's completions with their rewards (samples.jsonl)
        self.skips = {"skipped_steps": 0, "consecutive_skips": 0}  # non-finite updates skipped (checkpointed)
        self._grading = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="traitrl-rewards")

    def policy(self) -> Policy:
        """The policy at the current parameters (a view: valid until the next update donates them)."""
        return dataclasses.replace(self._policy, model=nnx.merge(self.graphdef, self.state.params))

    # ---- checkpoint / resume ----------------------------------------------------------------

    def _data_state(self) -> dict:
        get = getattr(self.data, "get_state", None)
        return {} if get is None else get()

    def save(self, force: bool = False, metrics: dict | None = None) -> None:
        if self.checkpointer is None:
            return
        step = int(self.state.step)
        self.checkpointer.save(step, self.state, {"data": self._data_state(), "step": step, **self.skips}, metrics,
                               force=force)

    def restore(self) -> int:
        """Restores state + data iterator from the latest complete checkpoint; returns its step."""
        state, extra, step = self.checkpointer.restore(self.state)
        self.state = state
        if extra.get("data") and hasattr(self.data, "set_state"):
            self.data.set_state(extra["data"])
        self.skips = {k: int(extra.get(k, 0)) for k in self.skips}
        self.writer.truncate(step)
        log.info("resumed from step %d", step)
        return step

    # ---- one step ---------------------------------------------------------------------------

    def rewards(self, rollout: Rollout, records: list[dict]) -> tuple[np.ndarray, dict[str, float]]:
        G = rollout.num_generations
        recs = [r for r in records for _ in range(G)]
        tok = self._policy.tokenizer
        # The prompt text as the model saw it (chat template included): decoded once per prompt, repeated G times.
        prompt_ids = unpad(rollout.prompt_ids_BxL[::G], rollout.prompt_mask_BxL[::G])
        texts = [tok.decode(ids) for ids in prompt_ids] if tok is not None else [" ".join(map(str, ids))
                                                                               for ids in prompt_ids]
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
            metrics.update(getattr(fn, "last_metrics", None) or {})
        if cols:  # a row the primary (task) reward could not score is left out of the advantages, not half-scored
            missing = np.isnan(cols[0])
            metrics["rewards/excluded"] = float(missing.sum())
            cols = [np.where(missing, np.nan, c) for c in cols]
        self.last_samples = [{"id": r.get("id"), "completion": c, "reward": [None if np.isnan(x) else float(x)
                                                                         for x in row]}
                             for r, c, row in zip(recs, completions, np.stack(cols, axis=1).tolist(), strict=True)]
        return np.stack(cols, axis=1), metrics

    def _timed_rewards(self, rollout: Rollout, records: list[dict]):
        t = time.perf_counter()
        out = self.rewards(rollout, records)
        return out, time.perf_counter() - t

    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        step = int(self.state.step)
        ids_PxL, mask_PxL, records = self._global_batch(next(self.data))
        G, T = self.gcfg.num_generations, self.sampler.cfg.max_new_tokens
        seed = int(jax.random.randint(jax.random.fold_in(jax.random.wrap_key_data(self.state.rng), step), (), 0, 2**31 - 1))
        rollout = self.sampler.sample(self.policy(), ids_PxL, mask_PxL, G, seed=seed)
        t_roll = time.perf_counter()

        # Grading runs in a worker thread while the reference forward runs (XLA releases the GIL).
        grading = self._grading.submit(self._timed_rewards, rollout, records)
        ids_BxL = np.concatenate([rollout.prompt_ids_BxL, rollout.completion_ids_BxT], axis=1)
        mask_BxL = np.concatenate([rollout.prompt_mask_BxL, rollout.completion_mask_BxT], axis=1)
        cmask_BxT = grpo.completion_mask(jnp.asarray(rollout.lengths_B), jnp.asarray(rollout.truncated_B), T, self.gcfg)
        mesh = self._policy.mesh
        put = (lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))) if mesh is not None else jnp.asarray
        ids, mask = put(ids_BxL.astype(np.int32)), put(mask_BxL)
        ref = None
        if self.gcfg.uses_reference:
            # Waiting here costs nothing (the update needs it next) and makes time/reference the forward's cost.
            ref = jax.block_until_ready(self.logps_fn(self.reference_params, ids, mask, T))
        t_ref = time.perf_counter()
        (rewards_BxR, metrics), reward_s = grading.result()
        t_rew = time.perf_counter()
        rewards_B = grpo.combine_rewards(jnp.asarray(rewards_BxR), self.gcfg.reward_weights)
        adv_B = grpo.advantages(rewards_B, self.gcfg)
        if fault("nan-loss", step + 1):  # fault injection (engine.checkpoint): a NaN loss the update must skip
            adv_B = adv_B * jnp.nan
        metrics.update({k: float(v) for k, v in grpo.group_stats(rewards_B, self.gcfg).items()})
        old = put(rollout.logprobs_BxT) if self.gcfg.num_iterations > 1 else None
        batch = GRPOBatch(ids, mask, put(np.asarray(cmask_BxT, np.float32)), put(np.asarray(adv_B, np.float32)),
                          old, ref)
        kill_if("kill-step", step + 1)  # fault injection: a crash in the middle of the step
        for _ in range(self.gcfg.num_iterations):
            self.state, step_metrics = self.step_fn(self.state, batch)
        step_metrics = jax.device_get(step_metrics)
        t_end = time.perf_counter()

        n_tokens = int(rollout.lengths_B.sum())
        metrics.update({k: float(v) for k, v in step_metrics.items()})
        metrics.update({
            "completions/mean_length": float(rollout.lengths_B.mean()),
            "completions/clipped_ratio": float(rollout.truncated_B.mean()),
            "step_time": t_end - t0, "time/rollout": t_roll - t0, "time/rewards": reward_s,
            "time/reference": t_ref - t_roll, "time/rewards_wait": t_rew - t_ref,  # grading beyond the forward
            "time/update": t_end - t_rew, "tokens_per_s": n_tokens / (t_end - t0),
        })
        flops = grpo_step_flops(self._policy.config, len(rollout.lengths_B), float(rollout.prompt_mask_BxL.sum(1).mean()),
                                float(rollout.lengths_B.mean()), self.gcfg.uses_reference, self.gcfg.num_iterations)
        metrics["mfu"] = sum(flops.values()) / (t_end - t0) / self._peak_flops()
        return metrics

    def _global_batch(self, batch: PromptBatch) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """This step's prompts: the local batch, or on a pod every process's batch in process order.

        Processes may have padded to different buckets; rows are widened (more left padding) to the longest.
        """
        if jax.process_count() == 1:
            return batch.input_ids_BxL, batch.mask_BxL, list(batch.records)
        parts = gather_objects([{"L": int(batch.input_ids_BxL.shape[1]), "ids": batch.input_ids_BxL.tolist(),
                                 "mask": batch.mask_BxL.astype(bool).tolist(), "records": list(batch.records)}])
        L, pad = max(p["L"] for p in parts), pad_id(self._policy.tokenizer, self._policy.config)
        arrays = [widen(np.asarray(p["ids"], np.int32), np.asarray(p["mask"], bool), L, pad) for p in parts]
        return (np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays]),
                [r for p in parts for r in p["records"]])

    def _peak_flops(self) -> float:
        """The mesh's peak FLOP/s (a CPU's fake devices share one set of cores: its peak counts once)."""
        if self.peak is None:
            dev = jax.devices()[0]
            n = 1 if dev.platform == "cpu" else (self._policy.mesh.size if self._policy.mesh is not None else 1)
            self.peak = peak_flops(self._policy.config.dtype, dev) * n
        return self.peak

    def run(self, resume: bool = False) -> list[dict[str, float]]:
        start = 0
        if resume and self.checkpointer is not None and self.checkpointer.latest_step() is not None:
            start = self.restore()
        elif resume:  # killed before its first checkpoint: the run starts over, its logs with it
            self.writer.truncate(-1)
            log.info("no checkpoint yet: starting from step 0")
        bar = None
        if self.cfg.progress and jax.process_index() == 0:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.steps, initial=start, desc="grpo", dynamic_ncols=True)
        if start == 0:  # step-0 evals and monitors: the baseline every later value is compared with
            baseline: dict[str, float] = {}
            for hook in self.hooks:
                baseline.update(hook(0, self.policy()) or {})
            self._log(0, baseline)
            kill_if("kill-eval", 0)
        for _ in range(start, self.cfg.steps):
            metrics = self.train_step()
            step = int(self.state.step)
            self._count_skip(step, metrics)
            for hook in self.hooks:
                metrics.update(hook(step, self.policy()) or {})
            self.history.append(metrics)
            if step % self.cfg.log_every == 0 or step == self.cfg.steps:
                self._log(step, metrics)
                self.writer.write_samples(step, self.last_samples[: self.cfg.log_samples])
            kill_if("kill-eval", step)
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
        nnx.update(self._model, self.state.params)  # the caller's policy is the trained one
        return self.history

    def _count_skip(self, step: int, metrics: dict[str, float]) -> None:
        """Counts a skipped (non-finite) update into `train/skipped_steps`; too many in a row stop the run."""
        skipped = metrics.pop("train/skipped", 0.0) > 0
        self.skips["skipped_steps"] += skipped
        self.skips["consecutive_skips"] = self.skips["consecutive_skips"] + 1 if skipped else 0
        metrics["train/skipped_steps"] = float(self.skips["skipped_steps"])
        if not skipped:
            return
        log.warning("step %d: non-finite loss or gradient norm (loss %s, grad_norm %s): update skipped", step,
                    metrics.get("loss"), metrics.get("grad_norm"))
        if self.skips["consecutive_skips"] > self.cfg.max_consecutive_skips:
            self._log(step, metrics)
            last = None
            if self.checkpointer is not None:
                self.checkpointer.wait()
                last = self.checkpointer.latest_step()
            raise UserError(f"step {step}: {self.skips['consecutive_skips']} steps in a row had a non-finite loss or "
                            f"gradient norm (option 'learner.max_consecutive_skips' is "
                            f"{self.cfg.max_consecutive_skips}); stopped, the last checkpoint is {last}")

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if metrics:
            self.writer.write(step, metrics)
