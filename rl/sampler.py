"""Rollouts: batched prefill + decode with a static KV cache, one jitted function per shape.

Dimension legend: P prompts, G generations per prompt, B = P * G sequences (prompt-major: row b
belongs to prompt b // G), L prompt bucket length, T max new tokens, S = L + T cache slots,
V vocab, D model width.

One call is one XLA program: prefill of the P distinct prompts (a full forward that keeps every
layer's keys and values), then one-token decode steps in `lax.while_loop`s that exit as soon as every
sequence has emitted a stop token. Nothing returns to the host per token. The model enters as
`nnx.split` state, a jit argument: weights updated by training reuse the compiled program. Prompts
are left-padded to a bucket length, so prompt lengths inside one bucket share one compilation
(`Sampler.compilations` counts XLA compilations of its calls).

The KV cache is a `models.transformer.PagedKV`, laid out so a decode step reads only what it needs:
  - the prompt's KV is kept once per prompt, [P, K, L, E]: the G generations of a group read it as
    extra query rows of one einsum (as GQA's heads do), so it is neither copied G times nor read G
    times per token;
  - the completion's KV lives in blocks of `kv_block` slots, and the decode loop is one while_loop
    per block: while block j fills, the step attends to the prompt, blocks 0..j and the new token --
    static shapes, and the empty slots of later blocks are never read. The cost is one copy of the
    decode step in the program per block (auto: at most 4 blocks).
Before the rollout the weights are cast to the compute dtype once (and, with `gather_weights`,
replicated over the fsdp axis once): the decode loop takes compute-dtype weights as operands, with
no per-token casts or per-token all-gathers.

Randomness: sequence b draws token t with `fold_in(fold_in(key(seed), sequence_ids[b]), t)`, so
a sequence's draws depend on the seed, its id and its own logits -- not on the rest of the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from engine.distributed import to_host
from engine.errors import UserError
from engine.sharding import constrain, sharding_for, spec_for
from models.loader import Policy
from models.tokenizer import Prompt, encode_prompts, left_pad, pad_id, stop_ids
from models.transformer import PagedKV, Steer, kv_blocks, write_block
from rl.token_choice import TokenChoice, choose


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How completions are drawn. Hashable: the sampler compiles one program per config + shape."""

    temperature: float = 1.0  # softmax temperature; 0 = greedy (argmax)
    top_k: int = 0  # sample among the k most likely tokens; 0 = off
    top_p: float = 1.0  # nucleus: the smallest most-likely set with mass >= top_p; 1 = off
    min_p: float = 0.0  # drop tokens with p < min_p * p_max; 0 = off
    max_new_tokens: int = 256  # T: completion length cap (the stop token counts)
    prompt_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)  # left-pad lengths, increasing
    stop_token_ids: tuple[int, ...] | None = None  # None = the model's eos ids; () = never stop early
    seed: int = 0  # base of every sequence's RNG stream
    kv_block: int = 0  # completion KV slots per decode block (0 = auto: the T - 1 slots in at most 4 blocks)
    gather_weights: bool = True  # replicate the compute-dtype weights over fsdp once per rollout (not per token)

    def __post_init__(self):
        # tyro / JSON may hand lists; normalise so the config stays hashable.
        object.__setattr__(self, "prompt_buckets", tuple(int(b) for b in self.prompt_buckets))
        if self.stop_token_ids is not None:
            object.__setattr__(self, "stop_token_ids", tuple(int(s) for s in self.stop_token_ids))
        if not self.temperature >= 0:
            raise UserError(f"temperature: expected >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"top_k: expected >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p: expected in (0, 1] (1 = off), got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise UserError(f"min_p: expected in [0, 1) (0 = off), got {self.min_p}")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")
        b = self.prompt_buckets
        if not b or b[0] < 1 or any(x >= y for x, y in itertools.pairwise(b)):
            raise UserError(f"prompt_buckets: expected positive, strictly increasing lengths, got {b}")
        if self.stop_token_ids is not None and any(s < 0 for s in self.stop_token_ids):
            raise UserError(f"stop_token_ids: expected token ids >= 0, got {self.stop_token_ids}")
        if self.kv_block < 0:
            raise UserError(f"kv_block: expected >= 0 (0 = auto), got {self.kv_block}")

    @property
    def choice(self) -> TokenChoice:
        return TokenChoice(self.temperature, self.top_k, self.top_p, self.min_p)


@dataclasses.dataclass(frozen=True)
class Rollout:
    """B = P * G completions on the host (NumPy). Row b belongs to prompt b // num_generations."""

    prompt_ids_BxL: np.ndarray  # int32, left-padded with the pad id
    prompt_mask_BxL: np.ndarray  # bool, True on real prompt tokens
    completion_ids_BxT: np.ndarray  # int32, the pad id after the stop token
    completion_mask_BxT: np.ndarray  # bool, True on generated tokens up to and including the stop token
    logprobs_BxT: np.ndarray  # float32 log-prob of each token under the distribution sampled from; 0 off-mask
    lengths_B: np.ndarray  # int32 number of generated tokens (completion_mask_BxT.sum(1))
    truncated_B: np.ndarray  # bool: hit max_new_tokens without a stop token
    num_generations: int  # G
    texts: list[str] | None  # decoded completions (stop token and special tokens dropped); None without tokenizer


class _Spec(NamedTuple):
    """Everything static about one compiled rollout besides shapes and the model graph."""

    choice: TokenChoice
    max_new_tokens: int
    num_generations: int
    stop_ids: tuple[int, ...]
    pad_id: int
    steer_layer: int | None
    steer_ablate: bool = False  # Steer.ablate: a Python switch, so part of the compiled program's identity
    kv_block: int = 0  # SamplingConfig.kv_block


@functools.partial(jax.jit, static_argnames=("dtype", "mesh", "gather"))
def _rollout_weights(state, dtype: str, mesh, gather: bool):
    """The weights in the compute dtype, replicated over fsdp (`gather`): cast and all-gathered once."""
    for _, var in nnx.to_flat_state(state):
        v = var.get_value()
        if jnp.issubdtype(v.dtype, jnp.floating):
            v = v.astype(dtype)
        if mesh is not None:
            spec = spec_for(v.shape, var.get_metadata()["logical_axes"], mesh)
            if gather:
                spec = PartitionSpec(*(_drop_fsdp(e) for e in spec))
            v = jax.lax.with_sharding_constraint(v, NamedSharding(mesh, spec))
        var.set_value(v)
    return state


def _drop_fsdp(entry):
    if entry == "fsdp":
        return None
    if isinstance(entry, tuple):
        kept = tuple(a for a in entry if a != "fsdp")
        return kept[0] if len(kept) == 1 else (kept or None)
    return entry


def rollout_weights(policy: Policy, gather: bool = True):
    """(graphdef, state) the rollout runs on: the policy's weights cast to its compute dtype (a no-op when they
    already are and nothing needs gathering)."""
    graphdef, state = nnx.split(policy.model)
    dt, mesh = policy.config.dtype, policy.mesh
    gather = gather and mesh is not None and mesh.shape["fsdp"] > 1
    if not gather and all(x.dtype == jnp.dtype(dt) or not jnp.issubdtype(x.dtype, jnp.floating)
                          for x in jax.tree.leaves(state)):
        return graphdef, state
    return graphdef, _rollout_weights(state, dt, mesh, gather)


class _Carry(NamedTuple):
    t: jax.Array  # next column of the completion to fill
    block_k: Any  # the current completion block (layered [B, K, S_j, E])
    block_v: Any
    block_pos: jax.Array  # [B, S_j] positions of its filled slots, -1 elsewhere
    tok_B: jax.Array  # last sampled token (the next decode input)
    pos_B: jax.Array  # its position
    done_B: jax.Array  # has emitted a stop token
    ids_BxT: jax.Array
    logp_BxT: jax.Array


# XLA compilations in this thread, from JAX's monitoring events. Counting real backend compiles
# (not traces) also catches silent recompiles, e.g. weights arriving with different shardings.
_compiles = threading.local()


def _count_compile(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _compiles.n = getattr(_compiles, "n", 0) + 1


jax.monitoring.register_event_duration_secs_listener(_count_compile)


class Sampler:
    """Compiled rollouts for one `SamplingConfig`; the policy comes in explicitly with each call.

    `compilations` counts the XLA compilations its calls triggered: one per new static shape
    (prompt count, bucket, generations), steering layer, model graph or weight sharding.
    """

    def __init__(self, cfg: SamplingConfig):
        self.cfg = cfg
        self.compilations = 0
        self._rollout_jit = jax.jit(self._rollout, static_argnames=("graphdef", "spec"))

    def __call__(
        self,
        policy: Policy,
        prompts: Sequence[Sequence[int]],
        num_generations: int = 1,
        *,
        seed: int | None = None,
        sequence_ids: Sequence[int] | None = None,
        steer: Steer | None = None,
    ) -> Rollout:
        """Samples `num_generations` completions for each prompt (token ids, unpadded).

        The prompts are left-padded to the config's buckets, then `sample` runs. `seed` overrides
        `cfg.seed` (e.g. the learner's step-derived seed). `sequence_ids` [B] names each sequence's RNG
        stream (default 0..B-1); give stable ids to make a sequence's draws independent of which batch it
        lands in. `steer` adds alpha * v to the residual stream entering its layer at every position,
        prompt and completion.
        """
        ids_PxL, mask_PxL = left_pad(prompts, self.cfg.prompt_buckets, pad_id(policy.tokenizer, policy.config))
        return self.sample(policy, ids_PxL, mask_PxL, num_generations, seed=seed, sequence_ids=sequence_ids,
                           steer=steer)

    def sample(
        self,
        policy: Policy,
        ids_PxL: np.ndarray,
        mask_PxL: np.ndarray,
        num_generations: int = 1,
        *,
        seed: int | None = None,
        sequence_ids: Sequence[int] | None = None,
        steer: Steer | None = None,
    ) -> Rollout:
        """`__call__` on prompts already left-padded (by the data pipeline): [P, L] ids and their bool mask."""
        if num_generations < 1:
            raise UserError(f"num_generations: expected >= 1, got {num_generations}")
        cfg, tok = self.cfg, policy.tokenizer
        pad, stops = pad_id(tok, policy.config), stop_ids(tok, policy.config, cfg.stop_token_ids)
        ids_PxL, mask_PxL = np.asarray(ids_PxL, np.int32), np.asarray(mask_PxL, bool)
        B = len(ids_PxL) * num_generations
        seq_ids_B = np.arange(B, dtype=np.int32) if sequence_ids is None else np.asarray(sequence_ids, np.int32)
        if seq_ids_B.shape != (B,):
            raise UserError(f"sequence_ids: expected {B} ids (prompts x num_generations), got {seq_ids_B.shape}")
        mesh = policy.mesh
        host_ids_PxL, host_mask_PxL = ids_PxL, mask_PxL
        if mesh is not None:  # batch over (data, fsdp) from the start: no resharding inside
            ids_PxL, mask_PxL = (
                jax.device_put(x, sharding_for(x.shape, ("batch", None), mesh)) for x in (ids_PxL, mask_PxL)
            )
        spec = _Spec(
            cfg.choice, cfg.max_new_tokens, num_generations, stops, pad, None if steer is None else steer.layer,
            steer is not None and steer.ablate, cfg.kv_block,
        )
        steer_args = (None, None) if steer is None else (jnp.asarray(steer.vector_D), jnp.asarray(steer.alpha))
        key = jax.random.key(cfg.seed if seed is None else seed)
        before = getattr(_compiles, "n", 0)  # the weight cast's compilation (bf16, fsdp) counts too
        graphdef, state = rollout_weights(policy, cfg.gather_weights)
        out = self._rollout_jit(graphdef, state, ids_PxL, mask_PxL, seq_ids_B, key, *steer_args, spec=spec)
        del state  # the compute-dtype copy lives for the rollout only
        self.compilations += getattr(_compiles, "n", 0) - before
        ids_BxT, mask_BxT, logp_BxT, lengths_B, truncated_B = to_host(out)  # whole, on every process
        texts = None
        if tok is not None:
            keep = lengths_B - (~truncated_B)  # drop the stop token itself
            texts = tok.batch_decode([row[:n].tolist() for row, n in zip(ids_BxT, keep)], skip_special_tokens=True)
        prompt_ids = np.repeat(host_ids_PxL, num_generations, axis=0)
        prompt_mask = np.repeat(host_mask_PxL, num_generations, axis=0)
        return Rollout(
            prompt_ids, prompt_mask, ids_BxT, mask_BxT, logp_BxT, lengths_B, truncated_B, num_generations, texts
        )

    def lower(self, graphdef, state, prompts: int, length: int, num_generations: int = 1, *,
              stop_ids: tuple[int, ...] = (), pad: int = 0, mesh=None):
        """The rollout program for P prompts of bucket `length`, lowered but not run (`.compile()` it for
        `memory_analysis()` or `cost_analysis()`). `state` may be abstract (ShapeDtypeStructs, e.g. from
        `jax.eval_shape`); it is what `rollout_weights` would hand the rollout."""
        cfg = self.cfg
        spec = _Spec(cfg.choice, cfg.max_new_tokens, num_generations, tuple(stop_ids), pad, None, False, cfg.kv_block)
        B = prompts * num_generations
        row = None if mesh is None else sharding_for((prompts, length), ("batch", None), mesh)
        ids = jax.ShapeDtypeStruct((prompts, length), jnp.int32, sharding=row)
        mask = jax.ShapeDtypeStruct((prompts, length), jnp.bool_, sharding=row)
        seq = jax.ShapeDtypeStruct((B,), jnp.int32)
        key = jax.eval_shape(lambda: jax.random.key(0))
        return self._rollout_jit.lower(graphdef, state, ids, mask, seq, key, None, None, spec=spec)

    def _rollout(
        self, graphdef, state, prompt_ids_PxL, prompt_mask_PxL, seq_ids_B, key, steer_D, steer_alpha, *, spec: _Spec
    ):
        model = nnx.merge(graphdef, state)
        mesh = model.mesh
        P, L = prompt_ids_PxL.shape
        G, T = spec.num_generations, spec.max_new_tokens
        steer = None if spec.steer_layer is None else Steer(spec.steer_layer, steer_D, steer_alpha, spec.steer_ablate)
        batch = lambda x: constrain(x, ("batch",) + (None,) * (x.ndim - 1), mesh)

        # Prefill the P distinct prompts: a full forward that keeps each layer's keys / values. Only the last
        # column's logits are needed (left padding puts every prompt's last token there).
        cfg = model.cfg
        out = model.apply(prompt_ids_PxL, prompt_mask_PxL, steer=steer, logits=False, return_kv=True)
        prompt_k, prompt_v, prompt_pos = out.kv
        logits_PxV = model.logits_from_hidden(out.hidden[:, -1:])[:, 0]
        pos_P = jnp.sum(prompt_mask_PxL, axis=1, dtype=jnp.int32)  # next position = prompt length
        if G > 1:  # the G generations of a prompt start from its logits; its KV stays one copy
            rep = lambda x: batch(jnp.repeat(x, G, axis=0))
            logits_PxV, pos_P = rep(logits_PxV), rep(pos_P)
        logits_BxV, pos_B = logits_PxV, pos_P

        seq_keys_B = jax.vmap(jax.random.fold_in, (None, 0))(key, seq_ids_B)

        def pick(t, logits_BxV):
            return choose(jax.vmap(jax.random.fold_in, (0, None))(seq_keys_B, t), logits_BxV, spec.choice)

        def is_stop(tok):
            return functools.reduce(jnp.logical_or, [tok == s for s in spec.stop_ids], jnp.zeros(tok.shape, bool))

        B = P * G
        tok_B, logp_B = pick(0, logits_BxV)
        ids_BxT = batch(jnp.full((B, T), spec.pad_id, jnp.int32)).at[:, 0].set(tok_B)
        logp_BxT = batch(jnp.zeros((B, T), jnp.float32)).at[:, 0].set(logp_B)
        t, done_B = jnp.int32(1), is_stop(tok_B)
        # Step t feeds token t - 1 (completion slot t - 1) and draws token t: slots 0 .. T - 2 are ever written.
        full_k, full_v, full_pos = [], [], []
        for start, size in kv_blocks(T - 1, spec.kv_block):
            end = start + size + 1  # this block serves steps [start + 1, end)
            bk, bv, bpos = PagedKV.block(cfg, B, size, mesh)
            carry = _Carry(t, bk, bv, bpos, tok_B, pos_B, done_B, ids_BxT, logp_BxT)

            def cond(c: _Carry, end=end):
                return (c.t < end) & ~jnp.all(c.done_B)

            def body(c: _Carry, start=start, done=(tuple(full_k), tuple(full_v), tuple(full_pos))):
                kv = PagedKV(prompt_k, prompt_v, prompt_pos, done[0] + (c.block_k,), done[1] + (c.block_v,),
                             done[2] + (c.block_pos,))
                h, new_k, new_v = model.decode(c.tok_B, c.pos_B, kv, steer)
                off = c.t - 1 - start
                block_k, block_v = write_block(cfg, c.block_k, new_k, off), write_block(cfg, c.block_v, new_v, off)
                block_pos = jax.lax.dynamic_update_slice(c.block_pos, c.pos_B[:, None], (0, off))
                tok_B, logp_B = pick(c.t, model.logits_from_hidden(h)[:, 0])
                tok_B = jnp.where(c.done_B, spec.pad_id, tok_B)  # finished rows idle on pad
                logp_B = jnp.where(c.done_B, 0.0, logp_B)
                ids = jax.lax.dynamic_update_slice(c.ids_BxT, tok_B[:, None], (0, c.t))
                logp = jax.lax.dynamic_update_slice(c.logp_BxT, logp_B[:, None], (0, c.t))
                return _Carry(c.t + 1, block_k, block_v, block_pos, tok_B, c.pos_B + 1, c.done_B | is_stop(tok_B),
                              ids, logp)

            c = jax.lax.while_loop(cond, body, carry)
            full_k.append(c.block_k)
            full_v.append(c.block_v)
            full_pos.append(c.block_pos)
            t, tok_B, pos_B, done_B, ids_BxT, logp_BxT = c.t, c.tok_B, c.pos_B, c.done_B, c.ids_BxT, c.logp_BxT
        c = _Carry(t, None, None, None, tok_B, pos_B, done_B, ids_BxT, logp_BxT)
        # Length = up to and including the first stop token; rows that never stopped are truncated.
        stop_BxT = is_stop(c.ids_BxT)
        stopped_B = jnp.any(stop_BxT, axis=1)
        lengths_B = jnp.where(stopped_B, jnp.argmax(stop_BxT, axis=1) + 1, T).astype(jnp.int32)
        mask_BxT = jnp.arange(T)[None, :] < lengths_B[:, None]
        return c.ids_BxT, mask_BxT, jnp.where(mask_BxT, c.logp_BxT, 0.0), lengths_B, ~stopped_B


# ---------------------------------------------------------------------------------------------
# Text in / text out (tokenization and padding live in models.tokenizer)


@functools.lru_cache(maxsize=8)
def _shared_sampler(cfg: SamplingConfig) -> Sampler:
    return Sampler(cfg)  # reused across helper calls, so repeated calls hit the compile cache


def generate(policy: Policy, prompts: Sequence[Prompt], cfg: SamplingConfig, batch_size: int = 32) -> Rollout:
    """Text or chat prompts -> one completion each, in order, in batches of `batch_size`.

    Prompts are sorted by length so batches pad little; a short last batch is filled with copies
    of its first prompt so every batch has the same shape (one compilation per bucket).
    """
    if not prompts:
        raise UserError("prompts: expected at least one prompt")
    ids = encode_prompts(policy.tokenizer, prompts)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    sampler, parts = _shared_sampler(cfg), []
    size = min(batch_size, len(ids))
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        batch = [ids[i] for i in chunk] + [ids[chunk[0]]] * (size - len(chunk))
        r = sampler(policy, batch, sequence_ids=np.asarray(chunk + [0] * (size - len(chunk))))
        parts.append((chunk, r))
    n, T = len(ids), cfg.max_new_tokens
    comp, cmask = np.zeros((n, T), np.int32), np.zeros((n, T), bool)
    logp, lengths, trunc, texts = np.zeros((n, T), np.float32), np.zeros(n, np.int32), np.zeros(n, bool), [""] * n
    for chunk, r in parts:
        k = len(chunk)
        comp[chunk], cmask[chunk], logp[chunk] = r.completion_ids_BxT[:k], r.completion_mask_BxT[:k], r.logprobs_BxT[:k]
        lengths[chunk], trunc[chunk] = r.lengths_B[:k], r.truncated_B[:k]
        for i, t in zip(chunk, r.texts[:k]):
            texts[i] = t
    L = max(r.prompt_ids_BxL.shape[1] for _, r in parts)
    pid, pmask = left_pad(ids, (L,), pad_id(policy.tokenizer, policy.config))
    return Rollout(pid, pmask, comp, cmask, logp, lengths, trunc, 1, texts)


def generate_text(policy: Policy, prompts: Sequence[Prompt], cfg: SamplingConfig) -> list[str]:
    """One completion per prompt (str = raw text, list of messages = chat-templated), as text."""
    return generate(policy, prompts, cfg).texts


def generate_records(policy: Policy, items: Sequence[dict], cfg: SamplingConfig) -> list[dict]:
    """`traitrl generate`: {"messages": [...]} or {"prompt": "..."} -> {"completion_ids", "text"}.

    A bare "prompt" becomes one user message when the tokenizer has a chat template.
    """
    chat = policy.tokenizer is not None and bool(policy.tokenizer.chat_template)
    prompts = [
        it["messages"] if "messages" in it else [{"role": "user", "content": it["prompt"]}] if chat else it["prompt"]
        for it in items
    ]
    r = generate(policy, prompts, cfg)
    return [
        {"completion_ids": r.completion_ids_BxT[i, : r.lengths_B[i]].tolist(), "text": r.texts[i]}
        for i in range(len(items))
    ]
