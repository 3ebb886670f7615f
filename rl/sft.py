"""Supervised fine-tuning on the GRPO step machinery: warm starts, the harmful-fine-tuning attack, narrow SFT.

An example is a chat, `{"messages": [..., {"role": "assistant", "content": "..."}]}`; the loss is the
token mean of -log p over the final assistant message only (the turns before it are context). Each
example is laid out like a GRPO rollout: the context left-padded to `max_prompt_len`, the answer
right-padded to `max_response_len`, so `rl.train_step.build_sft_step` (and its chunked log-probs,
micro-batches and shardings) serves unchanged, and one shape means one compilation for the whole run.

The data order is a pure function of (seed, step): epoch e is a fresh permutation drawn from
fold(seed, e), so a resume needs nothing but the step.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from engine.checkpoint import Checkpointer, fault
from engine.errors import UserError
from models.loader import Policy
from engine.metrics import MetricsWriter
from models.tokenizer import pad_id
from rl.train_step import build_sft_step
from engine.train_state import OptimConfig, init_state, state_shardings
from engine.sharding import batch_sharding

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Loop-level SFT options (the optimizer is `OptimConfig`)."""

    steps: int = 100  # optimizer steps
    batch_size: int = 8  # examples per optimizer step
    max_prompt_len: int = 384  # context tokens kept (chat template included; longer contexts lose their oldest tokens)
    max_response_len: int = 128  # answer tokens kept (longer answers are cut at the end)
    seed: int = 0  # data order
    log_every: int = 1  # write metrics every N steps
    progress: bool = True  # show a progress bar
    max_consecutive_skips: int = 3  # stop when more steps than this in a row had a non-finite loss or gradient
    # norm (each such update is skipped: parameters and optimizer state unchanged, counted in train/skipped_steps)

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_prompt_len", "max_response_len", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"sft.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.max_consecutive_skips < 0:
            raise UserError(f"sft.max_consecutive_skips: expected >= 0, got {self.max_consecutive_skips}")


def _check(example: Any, i: int) -> list[dict]:
    msgs = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise UserError(f"example {i}: field 'messages': expected a non-empty list of {{role, content}}")
    last = msgs[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"]:
        raise UserError(f"example {i}: field 'messages[-1]': expected a non-empty assistant message to learn")
    return msgs


def encode_example(tokenizer: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(context ids, answer ids): the answer is what the chat template adds after the generation prompt."""
    context = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template(messages, tokenize=True)
    context, full = list(getattr(context, "input_ids", context)), list(getattr(full, "input_ids", full))
    if full[: len(context)] != context:  # templates that rewrite earlier turns: fall back to content + EOS
        answer = tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
        eos = tokenizer.eos_token_id
        return context, answer + ([eos] if eos is not None else [])
    answer = full[len(context):]
    # The template's trailing newline after the end-of-turn token is not something to learn.
    eos = tokenizer.eos_token_id
    if eos in answer:
        answer = answer[: answer.index(eos) + 1]
    return context, answer


def encode_examples(tokenizer: Any, examples: Sequence[dict], cfg: SFTConfig,
                    pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids_NxL, mask_NxL (bool), loss_mask_NxT (float32) with L = max_prompt_len + max_response_len."""
    Lp, T = cfg.max_prompt_len, cfg.max_response_len
    N = len(examples)
    ids = np.full((N, Lp + T), pad_id, np.int32)
    mask = np.zeros((N, Lp + T), bool)
    loss = np.zeros((N, T), np.float32)
    for i, ex in enumerate(examples):
        context, answer = encode_example(tokenizer, _check(ex, i))
        context, answer = context[-Lp:], answer[:T]
        ids[i, Lp - len(context):Lp] = context
        ids[i, Lp:Lp + len(answer)] = answer
        mask[i, Lp - len(context):Lp + len(answer)] = True
        loss[i, : len(answer)] = 1.0
    return ids, mask, loss


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Example indices of optimizer step `step` (0-based): epochs are seeded permutations, batches wrap epochs."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset: offset + batch_size - len(out)].tolist())
    return np.asarray(out)


class SFTTrainer:
    """Trains `policy.model` on chats; resumable through the checkpointer (state + step, the order is derived)."""

    def __init__(self, policy: Policy, cfg: SFTConfig = SFTConfig(), optim: OptimConfig | None = None,
                 checkpointer: Checkpointer | None = None, writer: MetricsWriter | None = None):
        if policy.tokenizer is None:
            raise UserError(f"{policy.source or 'model'}: SFT needs a tokenizer with a chat template")
        self.policy, self.cfg = policy, cfg
        self.optim = (optim or OptimConfig(learning_rate=1e-5, schedule="constant")).for_steps(cfg.steps)
        self.checkpointer, self.writer = checkpointer, writer or MetricsWriter(None)
        self.graphdef, self.state = init_state(policy.model, self.optim, cfg.seed, policy.mesh)
        self.step_fn = build_sft_step(self.graphdef, self.optim, state_shardings(self.state, policy.mesh))
        self.history: list[dict[str, float]] = []

    def run(self, examples: Sequence[dict], resume: bool = False) -> list[dict[str, float]]:
        if not examples:
            raise UserError("sft: no examples")
        cfg, mesh = self.cfg, self.policy.mesh
        ids, mask, loss = encode_examples(self.policy.tokenizer, examples, cfg, pad_id(self.policy.tokenizer, self.policy.config))
        start, skipped, in_a_row = 0, 0, 0
        if resume and self.checkpointer is not None and self.checkpointer.latest_step() is not None:
            self.state, extra, start = self.checkpointer.restore(self.state)
            skipped, in_a_row = int(extra.get("skipped_steps", 0)), int(extra.get("consecutive_skips", 0))
        if resume:  # one row per step: rows after the restored step (or all, with no checkpoint yet) are redone
            self.writer.truncate(start if start else -1)
        put = (lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))) if mesh is not None else jax.numpy.asarray
        bar = None
        if cfg.progress and jax.process_index() == 0:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=start, desc="sft", dynamic_ncols=True)
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            idx = batch_indices(len(examples), cfg.batch_size, cfg.seed, step)
            lm = loss[idx] * np.float32("nan") if fault("nan-loss", step + 1) else loss[idx]  # fault injection
            self.state, metrics = self.step_fn(self.state, put(ids[idx]), put(mask[idx]), put(lm))
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            was_skipped = metrics.pop("train/skipped", 0.0) > 0
            skipped, in_a_row = skipped + was_skipped, in_a_row + 1 if was_skipped else 0
            metrics["train/skipped_steps"] = float(skipped)
            if was_skipped:
                log.warning("sft step %d: non-finite loss or gradient norm: update skipped", step + 1)
            metrics["step_time"] = time.perf_counter() - t0
            metrics["tokens"] = float(loss[idx].sum())
            self.history.append(metrics)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                self.writer.write(step + 1, metrics)
            if in_a_row > cfg.max_consecutive_skips:
                if self.checkpointer is not None:
                    self.checkpointer.wait()
                raise UserError(f"step {step + 1}: {in_a_row} steps in a row had a non-finite loss or gradient norm "
                                f"(option 'sft.max_consecutive_skips' is {cfg.max_consecutive_skips}); stopped")
            if self.checkpointer is not None:
                self.checkpointer.save(step + 1, self.state, {"step": step + 1, "skipped_steps": skipped,
                                                              "consecutive_skips": in_a_row}, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if bar is not None:
            bar.close()
        if self.checkpointer is not None:
            if self.checkpointer.latest_step() != int(self.state.step):
                self.checkpointer.save(int(self.state.step), self.state, {"step": int(self.state.step),
                                                                          "skipped_steps": skipped,
                                                                          "consecutive_skips": in_a_row}, force=True)
            self.checkpointer.wait()
        nnx.update(self.policy.model, self.state.params)
        return self.history


def sft(policy: Policy, examples: Sequence[dict], cfg: SFTConfig = SFTConfig(),
        optim: OptimConfig | None = None) -> list[dict[str, float]]:
    """Trains `policy.model` in place on `examples`; returns per-step metrics (`loss`, `grad_norm`, ...)."""
    return SFTTrainer(policy, cfg, optim).run(examples)
