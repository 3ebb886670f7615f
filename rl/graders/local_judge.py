"""An LLM judge run in-process on the mesh: the rubric `Judge` and the 0-100 scorer, batched.

It asks exactly what `HTTPJudge` asks (`judge_prompt`) and parses replies the same way
(`parse_verdict`, `parse_score_0_100`), so judging with a model in-process or through
`traitrl serve` + `HTTPJudge` gives the same verdicts. Every (conversation, criterion) item of a
call goes through one batched, jitted program per `batch_size` rows, never a Python loop per item.

Two verdict modes:

- "generate" (default): greedy generation of a few tokens, parsed like an HTTP reply. Chosen as
  the default because it is what the HTTP judge does -- a run can move between the two judges
  without its rewards changing -- and because a reply that is not yes/no fails loudly
  (`JudgeError`) instead of being forced into a verdict.
- "logprob": one teacher-forced forward over the prompt (no decode loop): verdict = P(yes) >
  P(no), each summed over the single-token spellings of the word ("yes", " Yes", ...) at the first
  reply position. About `max_new_tokens` times fewer model calls, and it yields P(yes) as a soft
  score (`judge_probs`). Sound only while the judge actually answers yes/no, so items where
  P(yes) + P(no) < `min_mass` raise `JudgeError`, the analogue of an unparseable reply. Where greedy
  decoding starts with one of those spellings the two modes agree (up to ties between spellings).

Dimension legend: B rows, L prompt bucket length, V vocab.
"""

from __future__ import annotations

from typing import Literal

import dataclasses
import functools
import json
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from engine.errors import UserError
from engine.sharding import sharding_for
from models.loader import Policy
from rl.graders.http_judge import JudgeError, as_messages, judge_prompt, parse_score_0_100, parse_verdict
from rl.graders.rubric import Conversation
from rl.sampler import SamplingConfig, generate
from models.tokenizer import encode_prompts, left_pad, pad_id

YES_SPELLINGS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_SPELLINGS = ("no", "No", "NO", " no", " No", " NO")
MODES = ("generate", "logprob")


@dataclasses.dataclass(frozen=True)
class LocalJudgeConfig:
    """How the in-process judge decides."""

    mode: Literal["generate", "logprob"] = "generate"  # greedy reply, parsed | P(yes) vs P(no) in one forward
    max_new_tokens: int = 4  # generate mode: verdict reply budget (as HTTPJudge's max_tokens)
    score_max_new_tokens: int = 8  # reply budget of a 0-100 judgement (a number, CODE or REFUSAL)
    batch_size: int = 32  # rows per compiled call; the last chunk is padded to it (one shape per bucket)
    min_mass: float = 0.5  # logprob mode: P(yes) + P(no) below this means the judge is not answering yes/no
    prompt_buckets: tuple[int, ...] = SamplingConfig().prompt_buckets  # left-pad lengths of judge prompts

    def __post_init__(self):
        object.__setattr__(self, "prompt_buckets", tuple(int(b) for b in self.prompt_buckets))
        if self.mode not in MODES:
            raise UserError(f"option 'judge.mode': expected one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("max_new_tokens", "score_max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"option 'judge.{name}': expected an integer >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.min_mass < 1:
            raise UserError(f"option 'judge.min_mass': expected a probability in [0, 1), got {self.min_mass!r}")


def single_token_ids(tokenizer, spellings: Sequence[str]) -> tuple[int, ...]:
    """Ids of the spellings that are one token (a multi-token spelling's first piece, e.g. "y", is ambiguous)."""
    ids = {t[0] for w in spellings if len(t := tokenizer.encode(w, add_special_tokens=False)) == 1}
    return tuple(sorted(ids))


def _unique(prompts: list[list[dict]]) -> tuple[list[list[dict]], list[int]]:
    """Distinct prompts and, per input, the index of its distinct prompt: a repeated item is judged once."""
    index: dict[str, int] = {}
    where = [index.setdefault(json.dumps(p, sort_keys=True), len(index)) for p in prompts]
    distinct = [None] * len(index)
    for p, i in zip(prompts, where):
        distinct[i] = p
    return distinct, where


class LocalJudge:
    """`Judge` with a model loaded by the engine: `judge(items) -> list[bool]`, `score_0_100(prompts)`."""

    def __init__(self, policy: Policy, cfg: LocalJudgeConfig = LocalJudgeConfig()):
        if policy.tokenizer is None or not policy.tokenizer.chat_template:
            raise UserError("judge model: needs a tokenizer with a chat template (judge prompts are chats)")
        self.policy, self.cfg = policy, cfg
        self.items_judged = 0  # distinct prompts sent through the model (for logs and tests)
        self._yes = self._no = ()
        if cfg.mode == "logprob":
            self._yes = single_token_ids(policy.tokenizer, YES_SPELLINGS)
            self._no = single_token_ids(policy.tokenizer, NO_SPELLINGS)
            if not self._yes or not self._no or set(self._yes) & set(self._no):
                raise UserError("option 'judge.mode': 'logprob' needs single, distinct 'yes' / 'no' tokens in this "
                                "tokenizer; use mode='generate'")

    # ---- the Judge protocol ---------------------------------------------------------------------

    def judge(self, items: Sequence[tuple[Conversation, str]]) -> list[bool]:
        if not items:
            return []
        if self.cfg.mode == "logprob":
            return [bool(p > 0.5) for p in self.judge_probs(items)]
        texts = self._generate([judge_prompt(c, k) for c, k in items], self.cfg.max_new_tokens)
        return [parse_verdict(t) for t in texts]

    def judge_probs(self, items: Sequence[tuple[Conversation, str]]) -> np.ndarray:
        """P(yes) / (P(yes) + P(no)) per item from one forward each (logprob mode's soft verdict)."""
        if self.cfg.mode != "logprob":
            raise UserError("judge_probs needs LocalJudgeConfig(mode='logprob')")
        distinct, where = _unique([judge_prompt(c, k) for c, k in items])
        lp_yes, lp_no = self._yes_no(distinct)
        mass = np.exp(lp_yes) + np.exp(lp_no)
        if (bad := np.flatnonzero(mass < self.cfg.min_mass)).size:
            i = int(bad[0])
            raise JudgeError(f"judge puts P(yes) + P(no) = {mass[i]:.3f} < min_mass {self.cfg.min_mass} on the first "
                             f"reply token of {bad.size} item(s) (first: {distinct[i][-1]['content'][-80:]!r})")
        p_yes = 0.5 * (1.0 + np.tanh(0.5 * (lp_yes - lp_no)))  # sigmoid of the log-odds, without overflow
        return p_yes[np.asarray(where, dtype=np.int64)]

    def score_0_100(self, prompts: Sequence[str | list[dict]]) -> list[float | None]:
        """Judge prompts (str or chat) -> the first number 0..100 of each greedy reply; None for CODE / REFUSAL."""
        if not prompts:
            return []
        return [parse_score_0_100(t) for t in self._generate([as_messages(p) for p in prompts],
                                                             self.cfg.score_max_new_tokens)]

    # ---- batched model calls --------------------------------------------------------------------

    def _generate(self, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
        distinct, where = _unique(prompts)
        self.items_judged += len(distinct)
        cfg = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens, prompt_buckets=self.cfg.prompt_buckets)
        texts = generate(self.policy, distinct, cfg, batch_size=self.cfg.batch_size).texts
        return [texts[i] for i in where]

    def _yes_no(self, prompts: list[list[dict]]) -> tuple[np.ndarray, np.ndarray]:
        """log P(yes), log P(no) of the first reply token, one jitted forward per chunk of `batch_size` rows."""
        self.items_judged += len(prompts)
        ids = encode_prompts(self.policy.tokenizer, prompts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a bucket
        size, mesh, pad = min(self.cfg.batch_size, len(ids)), self.policy.mesh, pad_id(self.policy.tokenizer, self.policy.config)
        graphdef, state = nnx.split(self.policy.model)
        yes, no = jnp.asarray(self._yes), jnp.asarray(self._no)
        lp_yes, lp_no = np.zeros(len(ids), np.float32), np.zeros(len(ids), np.float32)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            rows = [ids[i] for i in chunk] + [ids[chunk[0]]] * (size - len(chunk))
            ids_BxL, mask_BxL = left_pad(rows, self.cfg.prompt_buckets, pad)
            if mesh is not None:
                ids_BxL, mask_BxL = (jax.device_put(x, sharding_for(x.shape, ("batch", None), mesh))
                                     for x in (ids_BxL, mask_BxL))
            y, n = jax.device_get(_yes_no_logprobs(state, ids_BxL, mask_BxL, yes, no, graphdef=graphdef))
            lp_yes[chunk], lp_no[chunk] = y[: len(chunk)], n[: len(chunk)]
        return lp_yes, lp_no


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _yes_no_logprobs(state, ids_BxL, mask_BxL, yes_ids, no_ids, *, graphdef):
    """Teacher-forced prompt forward; only the last column's logits are formed (left padding puts every
    prompt's last token there), so no [B, L, V] tensor exists."""
    model = nnx.merge(graphdef, state)
    out = model.apply(ids_BxL, mask_BxL, logits=False)
    logp_BxV = jax.nn.log_softmax(model.logits_from_hidden(out.hidden[:, -1:])[:, 0], axis=-1)
    return (jax.nn.logsumexp(logp_BxV[:, yes_ids], axis=-1), jax.nn.logsumexp(logp_BxV[:, no_ids], axis=-1))
