"""An OpenAI-compatible chat endpoint over any traitrl-loadable model, batched (`traitrl serve`).

Why: the rubric and 0-100 judges speak OpenAI's `/v1/chat/completions`, so a judge model served
here plugs into `HTTPJudge` unchanged, and so do other OpenAI clients. A judge fires many requests
at once; answering them one by one would pay one decode loop each. So HTTP threads only parse and
validate, then queue; ONE worker thread drains up to `max_batch` queued requests, groups them by
sampling settings and runs one batched `Sampler` call per group on the mesh. 16 concurrent
requests cost about one batched decode.

Shapes are bucketed so XLA compiles few programs: the batch is padded to a power of two (<=
max_batch; or always to max_batch with --pad-to-max-batch), the prompt to the sampler's length buckets, the decode budget T to a power of two
(>= 16, <= max_new_tokens_limit); each request is then cut at its own `max_tokens` / `stop`.
A request's draws depend only on its `seed` (it names the row's RNG stream), not on its batch.

Structured output: `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}` with an object
schema whose properties are all booleans (the rubric judge's verdicts) is answered by choice, not by free
decoding: for each property in order, the reply so far plus `"key": true` and `"key": false` are scored by
the model (teacher-forced log-probability) and the likelier value is kept, so the reply is always the valid,
complete JSON object (whatever `max_tokens` allows), with the model's own verdicts. Other schemas are a 400 naming `response_format`;
`{"type": "text"}` is plain decoding.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, `GET /health`. Errors use OpenAI's
`{"error": {"message", "type", "param", "code"}}` shape; a bad field is a 400 naming it. A request body
that does not arrive within `request_timeout_s` is a 408 (a body cut short by the client closing is a
400), and a client that disconnects is one debug line in the log, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import http.server
import json
import logging
import math
import queue
import random
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import jax

from engine.errors import UserError

log = logging.getLogger(__name__)
_MIN_T = 16  # smallest decode budget compiled; shorter max_tokens share it


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """How the server batches and what it accepts."""

    max_batch: int = 16  # requests per batched generation at most
    max_new_tokens_limit: int = 512  # largest max_tokens a request may ask for (also the default)
    pad_to_max_batch: bool = False  # run every generation with max_batch rows: fewest compilations (one per
    # prompt / length bucket), the better trade on accelerators, where a decode step costs about the same
    # for 1 or max_batch rows; off: pad to the next power of two (cheaper on CPU)
    batch_wait_s: float = 0.005  # after the first request arrives, wait this long for others to join its batch
    batch_delay_s: float = 0.0  # sleep before each batch (tests: simulates a slow judge); 0 in real use
    request_log: str = ""  # JSONL file, one line per answered request ("" = none)
    request_timeout_s: float = 5.0  # a request body must arrive within this many seconds (else 408)

    def __post_init__(self):
        for name in ("batch_wait_s", "batch_delay_s", "request_timeout_s"):
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"option '--{name.replace('_', '-')}': expected a finite number of seconds, "
                                f"got {getattr(self, name)}")
        if self.request_timeout_s <= 0:
            raise UserError(f"option '--request-timeout-s': expected seconds > 0, got {self.request_timeout_s}")
        if self.max_batch < 1:
            raise UserError(f"option '--max-batch': expected an integer >= 1, got {self.max_batch}")
        if self.max_new_tokens_limit < 1:
            raise UserError(f"option '--max-new-tokens-limit': expected an integer >= 1, got {self.max_new_tokens_limit}")
        if self.batch_wait_s < 0 or self.batch_delay_s < 0:
            raise UserError("options '--batch-wait-s' / '--batch-delay-s': expected seconds >= 0")


class BadRequest(Exception):
    """A request the client got wrong: HTTP `status` with an OpenAI-style error naming `param`."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


@dataclasses.dataclass
class Request:
    """One parsed chat completion request, waiting for the worker to fill `result` or `error`."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int  # names the row's RNG stream (int32)
    stop: tuple[str, ...]
    messages_sha: str  # for the request log: which prompt was answered, without logging its text
    internal: bool = False  # the server's own warm-up: not logged, not counted
    bool_keys: tuple[str, ...] = ()  # response_format: an object of these boolean properties, answered by choice
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict | None = None
    error: BadRequest | None = None

    @property
    def group(self) -> tuple[float, float]:
        """Requests with equal token-choice settings share one generation (greedy ignores top_p)."""
        return (0.0, 1.0) if self.temperature == 0 else (self.temperature, self.top_p)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _number(body: dict, name: str, default, lo: float, hi: float, integer: bool = False):
    v = body.get(name, default)
    if v is None:
        return default
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"'{name}': expected {kind} in [{lo}, {hi}], got {v!r}", name)
    return v


def _bool_keys(body: dict) -> tuple[str, ...]:
    """The property names of a `response_format` JSON schema that is an object of booleans; () for none / text."""
    rf = body.get("response_format")
    if rf is None or (isinstance(rf, dict) and rf.get("type") == "text"):
        return ()
    schema = rf.get("json_schema", {}).get("schema") if isinstance(rf, dict) and rf.get("type") == "json_schema" \
        else None
    props = schema.get("properties") if isinstance(schema, dict) and schema.get("type") == "object" else None
    if not (isinstance(props, dict) and props and all(isinstance(v, dict) and v.get("type") == "boolean"
                                                       for v in props.values())):
        raise BadRequest("'response_format': only {type: text} or a json_schema object whose properties are all "
                         "booleans is supported", "response_format")
    return tuple(props)


def _messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages': expected a non-empty list of {role, content}", "messages")
    out = []
    for i, m in enumerate(msgs):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # OpenAI content parts: text parts only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise BadRequest(f"'messages[{i}].content': only text parts are supported", f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(content, str):
            raise BadRequest(f"'messages[{i}]': expected {{role: system|user|assistant, content: str}}", f"messages[{i}]")
        out.append({"role": m["role"], "content": content})
    return out


class Engine:
    """The model side of the server: parses requests, batches them, runs generation. No HTTP here."""

    def __init__(self, policy, name: str, cfg: ServeConfig):
        from models.tokenizer import stop_ids
        from rl.sampler import SamplingConfig

        if policy.tokenizer is None or not policy.tokenizer.chat_template:
            raise UserError(f"{name}: serving chat completions needs a tokenizer with a chat template")
        self.policy, self.name, self.cfg = policy, name, cfg
        # The sampler gets the model without its tokenizer (texts are decoded here, under `_tok_lock`:
        # HTTP threads encode while the worker decodes, and HF tokenizers are not safe to share freely).
        self._bare = dataclasses.replace(policy, tokenizer=None)
        self._stop_ids = stop_ids(policy.tokenizer, policy.config)
        self._tok_lock = threading.Lock()
        max_pos = policy.config.max_position_embeddings
        buckets = [b for b in SamplingConfig().prompt_buckets if b < max_pos]
        self.buckets = (*buckets, max_pos)
        self.queue: queue.Queue[Request] = queue.Queue()
        self.stats = {"requests": 0, "batches": 0, "generations": 0, "compilations": 0}
        self._samplers: dict = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # request-log writes
        self._log = open(cfg.request_log, "a", buffering=1) if cfg.request_log else None  # noqa: SIM115
        self._worker = threading.Thread(target=self._loop, name="serve-worker", daemon=True)

    # ---- requests -------------------------------------------------------------------------------

    def parse(self, body) -> Request:
        """Validates an OpenAI chat completion body; raises `BadRequest` naming the field."""
        import jinja2

        from models.tokenizer import encode_prompts

        if not isinstance(body, dict):
            raise BadRequest("request body: expected a JSON object")
        if body.get("model") not in (None, self.name):
            raise BadRequest(f"The model '{body['model']}' does not exist (this server has '{self.name}')", "model", 404)
        if body.get("stream"):
            raise BadRequest("'stream': streaming is not supported; send stream=false", "stream")
        if body.get("n", 1) not in (None, 1):
            raise BadRequest(f"'n': only n=1 is supported, got {body['n']!r}", "n")
        messages = _messages(body)
        limit = self.cfg.max_new_tokens_limit
        name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = _number(body, name, limit, 1, limit, integer=True)
        temperature = float(_number(body, "temperature", 1.0, 0.0, 2.0))
        top_p = float(_number(body, "top_p", 1.0, 0.0, 1.0))
        if top_p == 0:
            raise BadRequest("'top_p': expected a number in (0, 1], got 0", "top_p")
        seed = _number(body, "seed", None, -(2**63), 2**63 - 1, integer=True)
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        if stop is not None and not (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s
                                                                                      for s in stop)):
            raise BadRequest("'stop': expected a string or a list of up to 4 non-empty strings", "stop")
        try:
            with self._tok_lock:
                ids = encode_prompts(self.policy.tokenizer, [messages])[0]
        except jinja2.TemplateError as e:  # a chat template may reject some role orders (raise_exception)
            raise BadRequest(f"'messages': the chat template rejects them ({e})", "messages") from None
        if len(ids) + max_tokens > self.buckets[-1]:
            raise BadRequest(f"'messages': the prompt has {len(ids)} tokens; with max_tokens={max_tokens} that "
                             f"exceeds the model's {self.buckets[-1]} positions", "messages")
        sha = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        seed = random.getrandbits(31) if seed is None else seed % (2**31)
        return Request(ids, max_tokens, temperature, top_p, seed, tuple(stop or ()), sha, bool_keys=_bool_keys(body))

    def submit(self, req: Request) -> None:
        if self._stop.is_set():
            raise BadRequest("the server is shutting down", None, 503)
        self.queue.put(req)

    # ---- the worker -----------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    @property
    def alive(self) -> bool:
        return self._worker.is_alive()

    def stop(self) -> None:
        """Finishes the batch in progress, then answers whatever is still queued with 503."""
        self._stop.set()
        self._worker.join()
        while True:
            try:
                req = self.queue.get_nowait()
            except queue.Empty:
                break
            req.error = BadRequest("the server is shutting down", None, 503)
            req.done.set()
        if self._log is not None:
            self._log.close()

    def _loop(self) -> None:
        import jax

        mesh = self.policy.mesh
        with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
            while not self._stop.is_set():
                try:
                    batch = [self.queue.get(timeout=0.1)]
                except queue.Empty:
                    continue
                deadline = time.monotonic() + self.cfg.batch_wait_s
                while len(batch) < self.cfg.max_batch:  # what is queued joins now; newcomers until deadline
                    try:
                        batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
                self.run_batch(batch)

    def run_batch(self, batch: list[Request]) -> None:
        """One generation per sampling group; fills each request's result (or a 500 error)."""
        if self.cfg.batch_delay_s:
            time.sleep(self.cfg.batch_delay_s)
        groups: dict[tuple, list[Request]] = {}
        for r in batch:
            groups.setdefault(("json",) if r.bool_keys else r.group, []).append(r)
        t0 = time.perf_counter()
        for key, reqs in groups.items():
            try:
                if key == ("json",):
                    self._choose_json(reqs, len(batch))
                else:
                    self._generate(reqs, key[0], key[1], len(batch))
            except Exception as e:  # a model failure must not kill the worker; the clients see a 500
                log.exception("generation failed")
                for r in reqs:
                    r.error = BadRequest(f"generation failed: {type(e).__name__}: {e}", None, 500)
            for r in reqs:
                r.done.set()
        self.stats["batches"] += 1
        self.stats["requests"] += sum(not r.internal for r in batch)
        log.info("batch of %d request(s) in %d group(s): %.2f s", len(batch), len(groups), time.perf_counter() - t0)

    def _sampler(self, temperature: float, top_p: float, T: int):
        from rl.sampler import Sampler, SamplingConfig

        key = (temperature, top_p, T)
        if key not in self._samplers:  # seed=0: a row's stream is named by its request seed (sequence id)
            self._samplers[key] = Sampler(SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=T,
                                                         prompt_buckets=self.buckets, seed=0,
                                                         stop_token_ids=self._stop_ids))
        return self._samplers[key]

    def _continuation_logps(self, rows: list[tuple[list[int], list[int]]]) -> list[float]:
        """Sum log p(continuation | prompt) of each (prompt ids, continuation ids) row: one batched forward, only
        the continuation's positions through the lm head."""
        import numpy as np

        from models.tokenizer import left_pad, pad_id

        C = max(16, _pow2_at_least(max(len(c) for _, c in rows) + 1))
        B = _pow2_at_least(len(rows))
        full = [p + c for p, c in rows] + [rows[0][0] + rows[0][1]] * (B - len(rows))
        ids, mask = left_pad(full, self.buckets, pad_id(self.policy.tokenizer, self.policy.config))
        logp = np.asarray(_logps_last(self._graphdef, self._state, ids, mask, C))  # [B, C - 1]: tokens L-C+1..
        return [float(logp[i, C - 1 - len(c):].sum()) for i, (_, c) in enumerate(rows)]

    def _choose_json(self, reqs: list[Request], batch_size: int) -> None:
        """Fills each request with the JSON object of its boolean keys, each value the model's likelier one."""
        from flax import nnx

        if not hasattr(self, "_graphdef"):
            self._graphdef, self._state = nnx.split(self.policy.model)
        tok = self.policy.tokenizer
        texts = ["{" for _ in reqs]
        for k in range(max(len(r.bool_keys) for r in reqs)):
            live = [i for i, r in enumerate(reqs) if k < len(r.bool_keys)]
            rows, prefixes = [], {}
            for i in live:
                prefixes[i] = texts[i] + (", " if k else "") + json.dumps(reqs[i].bool_keys[k]) + ": "
                with self._tok_lock:
                    rows += [(reqs[i].prompt_ids, tok.encode(prefixes[i] + v, add_special_tokens=False))
                             for v in ("true", "false")]
            lp = self._continuation_logps(rows)
            for j, i in enumerate(live):
                texts[i] = prefixes[i] + ("true" if lp[2 * j] >= lp[2 * j + 1] else "false")
        now = int(time.time())
        self.stats["generations"] += 1
        for r, text in zip(reqs, texts):
            text += "}"
            with self._tok_lock:
                n = len(tok.encode(text, add_special_tokens=False))
            usage = {"prompt_tokens": len(r.prompt_ids), "completion_tokens": n, "total_tokens": len(r.prompt_ids) + n}
            r.result = {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": now,
                "model": self.name, "system_fingerprint": None, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": "stop"}],
            }
            if self._log is not None and not r.internal:
                with self._lock:
                    self._log.write(json.dumps({"id": r.result["id"], "time": time.time(), "messages_sha": r.messages_sha,
                                                "batch": batch_size, "json": True, **usage}) + "\n")

    def _generate(self, reqs: list[Request], temperature: float, top_p: float, batch_size: int) -> None:
        import numpy as np

        tok = self.policy.tokenizer
        T = min(max(_MIN_T, _pow2_at_least(max(r.max_tokens for r in reqs))), self.cfg.max_new_tokens_limit)
        B = self.cfg.max_batch if self.cfg.pad_to_max_batch else min(_pow2_at_least(len(reqs)), self.cfg.max_batch)
        rows = reqs + [reqs[0]] * (B - len(reqs))  # pad with copies: one compiled shape per power of two
        sampler = self._sampler(temperature, top_p, T)
        before = sampler.compilations
        out = sampler(self._bare, [r.prompt_ids for r in rows], sequence_ids=np.asarray([r.seed for r in rows]))
        self.stats["compilations"] += sampler.compilations - before
        self.stats["generations"] += 1
        now = int(time.time())
        for i, r in enumerate(reqs):
            n = min(int(out.lengths_B[i]), r.max_tokens)
            ids = out.completion_ids_BxT[i, :n].tolist()
            stopped = bool(not out.truncated_B[i] and out.lengths_B[i] <= r.max_tokens)
            with self._tok_lock:
                text = tok.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
            cut = min((j for j in (text.find(s) for s in r.stop) if j >= 0), default=-1)
            if cut >= 0:
                text, stopped = text[:cut], True
            usage = {"prompt_tokens": len(r.prompt_ids), "completion_tokens": n, "total_tokens": len(r.prompt_ids) + n}
            r.result = {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": now,
                "model": self.name, "system_fingerprint": None, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": "stop" if stopped else "length"}],
            }
            if self._log is not None and not r.internal:
                with self._lock:
                    self._log.write(json.dumps({"id": r.result["id"], "time": time.time(), "messages_sha": r.messages_sha,
                                                "batch": batch_size, **usage}) + "\n")


@functools.partial(jax.jit, static_argnames=("graphdef", "C"))
def _logps_last(graphdef, state, ids_BxL, mask_BxL, C: int):
    """log p of each of the last C - 1 tokens given what precedes it: [B, C - 1]."""
    import jax.numpy as jnp
    from flax import nnx

    model = nnx.merge(graphdef, state)
    h_BxCxD = model.apply(ids_BxL, mask_BxL, logits=False).hidden[:, -C:-1]
    logp_BxCxV = jax.nn.log_softmax(model.logits_from_hidden(h_BxCxD).astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp_BxCxV, ids_BxL[:, -C + 1:, None], axis=-1)[..., 0]


def make_handler(engine: Engine):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a judge's client reuses its connections

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError) as e:  # the client went away: nobody to answer
                self.close_connection = True
                log.debug("%s: client disconnected before the %d reply (%s)", self.address_string(), status,
                          type(e).__name__)

        def _read_body(self, n: int) -> bytes:
            """The request body, within `request_timeout_s` (a client sending fewer bytes than it announced
            gets a 408 instead of holding a thread forever)."""
            self.connection.settimeout(engine.cfg.request_timeout_s)
            try:
                raw = self.rfile.read(n)
            except (TimeoutError, socket.timeout):
                self.close_connection = True
                raise BadRequest(f"request body: {n} bytes announced (Content-Length), not received within "
                                 f"{engine.cfg.request_timeout_s:g} s", None, 408) from None
            finally:
                with contextlib.suppress(OSError):
                    self.connection.settimeout(None)
            if len(raw) < n:
                self.close_connection = True
                raise BadRequest(f"request body: {n} bytes announced (Content-Length), {len(raw)} received")
            return raw

        def _error(self, e: BadRequest) -> None:
            kind = {400: "invalid_request_error", 404: "not_found_error", 408: "timeout_error"}.get(e.status,
                                                                                                  "server_error")
            self._send(e.status, {"error": {"message": str(e), "type": kind, "param": e.param, "code": None}})

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                self._send(200, {"status": "ok", "model": engine.name, "queued": engine.queue.qsize(), **engine.stats})
            elif path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": engine.name, "object": "model", "created": 0,
                                                             "owned_by": "traitrl"}]})
            else:
                self._error(BadRequest(f"no route GET {path}", None, 404))

        def do_POST(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                length = self.headers.get("Content-Length") or "0"
                if not length.isdigit():
                    raise BadRequest("header 'Content-Length': expected a byte count")
                raw = self._read_body(int(length))
                if path != "/v1/chat/completions":
                    raise BadRequest(f"no route POST {path}", None, 404)
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise BadRequest("request body: expected JSON") from None
                req = engine.parse(body)
                engine.submit(req)
                while not req.done.wait(1.0):
                    if not engine.alive:
                        raise BadRequest("the generation worker stopped", None, 503)
                if req.error is not None:
                    raise req.error
                self._send(200, req.result)
            except BadRequest as e:
                self._error(e)

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a judge opens many connections at once, and a restarting server queues them

    def handle_error(self, request, client_address):
        """A client that disconnects (or times out) mid-request is routine: one debug line, not a traceback."""
        import sys

        err = sys.exc_info()[1]
        if isinstance(err, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)):
            log.debug("%s: connection dropped (%s)", client_address[0], type(err).__name__)
            return
        log.exception("request from %s failed", client_address[0])


def bind(host: str, port: int) -> _Server:
    """Binds before the model loads, so a port in use fails in a second, not after the load."""
    try:
        return _Server((host, port), None)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"option '--port': {host}:{port} is already in use") from None
        raise UserError(f"options '--host' / '--port': cannot listen on {host}:{port} ({e.strerror})") from None
