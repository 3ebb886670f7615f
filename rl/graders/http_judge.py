"""An LLM judge behind an OpenAI-compatible `/v1/chat/completions` endpoint, for the rubric grader.

Built for long RL runs against a flaky server: a concurrency limit (the judge is shared with other
jobs), a per-request timeout, retries with exponential backoff on transport errors, 429 and 5xx,
and an on-disk cache keyed by (model, prompt) so a restarted run or a retried batch never pays for
(or re-scores) a judgement twice. Verdicts are parsed from a one-word "yes" / "no" reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from rl.graders.rubric import Conversation

JUDGE_SYSTEM = (
    "You grade one criterion of an assistant's last reply in a conversation. Reply with exactly one word: "
    "'yes' if the reply meets the criterion, 'no' if it does not."
)


class JudgeError(RuntimeError):
    """The judge endpoint kept failing after all retries, or replied with something that is not yes / no."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is and how hard to try."""

    base_url: str  # e.g. "http://127.0.0.1:8000" (the client appends /v1/chat/completions)
    model: str  # model name sent in the request
    api_key_env: str = ""  # environment variable holding a bearer token ("" = no auth header)
    max_concurrency: int = 8  # requests in flight at once
    timeout_s: float = 60.0  # per request (connect + read)
    max_retries: int = 6  # retries per item after the first attempt
    backoff_s: float = 0.5  # first retry delay; doubles each retry, capped at backoff_max_s
    backoff_max_s: float = 8.0  # longest delay between retries
    cache_dir: str = ""  # on-disk judgement cache ("" = no cache)
    max_tokens: int = 4  # reply budget; one word is enough

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise UserError(f"option 'judge.base_url': expected an http(s) URL, got {self.base_url!r}")
        if not self.model:
            raise UserError("option 'judge.model': expected a model name, got ''")
        for name in ("max_concurrency", "max_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"option 'judge.{name}': expected an integer >= 1, got {getattr(self, name)!r}")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise UserError("option 'judge': expected max_retries >= 0, timeout_s > 0, backoff_s >= 0")


def judge_prompt(conversation: Conversation, criterion: str) -> list[dict]:
    transcript = "\n".join(f"[{m['role']}] {m['content']}" for m in conversation)
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": f"Conversation:\n{transcript}\n\nCriterion: {criterion}\n\nMet? (yes/no)"},
    ]


def parse_verdict(text: str) -> bool:
    word = text.strip().strip(".!*'\"").lower().split()[:1]
    if word and word[0] in ("yes", "true", "met"):
        return True
    if word and word[0] in ("no", "false", "unmet"):
        return False
    raise JudgeError(f"judge reply is not yes/no: {text[:80]!r}")


class DiskCache:
    """One small JSON file per judgement, written atomically, so concurrent runs can share a cache."""

    def __init__(self, root: str):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> bool | None:
        p = self._path(key)
        try:
            return bool(json.loads(p.read_text())["met"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def put(self, key: str, met: bool) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"met": met}))
        os.replace(tmp, p)


class HTTPJudge:
    """`Judge` over HTTP: `judge(items) -> list[bool]`, in input order, each item judged once."""

    def __init__(self, cfg: JudgeConfig):
        import httpx  # optional dependency: only runs with an HTTP judge need it

        self.cfg = cfg
        self._httpx = httpx
        self.cache = DiskCache(cfg.cache_dir) if cfg.cache_dir else None
        self.requests = 0  # HTTP requests sent (for logs and tests)
        self.cache_hits = 0

    def _key(self, messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps([self.cfg.model, messages], sort_keys=True).encode()).hexdigest()

    def judge(self, items: Sequence[tuple[Conversation, str]]) -> list[bool]:
        return asyncio.run(self._judge_all(items))

    async def _judge_all(self, items: Sequence[tuple[Conversation, str]]) -> list[bool]:
        headers = {}
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise UserError(f"option 'judge.api_key_env': environment variable {self.cfg.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        limits = self._httpx.Limits(max_connections=self.cfg.max_concurrency)
        async with self._httpx.AsyncClient(
            base_url=self.cfg.base_url.rstrip("/"),
            headers=headers,
            limits=limits,
            timeout=self._httpx.Timeout(self.cfg.timeout_s),
        ) as client:
            return list(await asyncio.gather(*(self._one(client, sem, c, k) for c, k in items)))

    async def _one(self, client, sem: asyncio.Semaphore, conversation: Conversation, criterion: str) -> bool:
        messages = judge_prompt(conversation, criterion)
        key = self._key(messages)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.cache_hits += 1
            return hit
        body = {"model": self.cfg.model, "messages": messages, "temperature": 0.0, "max_tokens": self.cfg.max_tokens}
        last = "no attempt"
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** (attempt - 1)))
            async with sem:
                self.requests += 1
                try:
                    resp = await client.post("/v1/chat/completions", json=body)
                except self._httpx.TransportError as e:  # refused, reset, timeout: the server may be restarting
                    last = f"{type(e).__name__}: {e}"
                    continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise JudgeError(f"judge {self.cfg.base_url}: HTTP {resp.status_code}: {resp.text[:200]}")
            met = parse_verdict(resp.json()["choices"][0]["message"]["content"])
            if self.cache is not None:
                self.cache.put(key, met)
            return met
        raise JudgeError(f"judge {self.cfg.base_url}: gave up after {self.cfg.max_retries + 1} attempts ({last})")
