"""`traitrl serve`: an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models, /health) over any model.

The server itself (request parsing, batching worker, HTTP handler) is `rl.server`; this wires it to a
loaded policy, binds the port before the model loads (a port in use fails in a second), warms the
compiled program up, and drains cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from typing import Annotated, Literal

import tyro

from engine.commands.common import check_finite, check_mesh
from engine.commands.main import Command
from rl.server import ServeConfig

log = logging.getLogger("traitrl")


@dataclasses.dataclass(frozen=True)
class ServeCommand:
    """Serve a model over an OpenAI-compatible HTTP API."""

    model: str  # an HF directory, a .gguf file, or a known name
    port: int = 8000  # TCP port (0 = any free port; the ready line says which)
    host: str = "127.0.0.1"  # interface to listen on
    served_name: str | None = None  # the model id clients send and /v1/models lists (default: --model)
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype
    mesh: tuple[int, int, int] | None = None  # (data, fsdp, tensor) device mesh; default one device
    server: Annotated[ServeConfig, tyro.conf.arg(name="")] = ServeConfig()  # batching and limits

    def __post_init__(self):
        check_mesh(self.mesh)
        check_finite(self)


def run(cfg: ServeCommand) -> None:
    from engine.commands.common import build_policy, enable_compile_cache, on_mesh
    from rl.server import Engine, bind, make_handler

    enable_compile_cache()
    server = bind(cfg.host, cfg.port)
    try:
        with on_mesh(cfg.mesh) as mesh:
            policy = build_policy(cfg.model, mesh, cfg.dtype)  # "tiny": the random tiny model (tests, smoke runs)
        engine = Engine(policy, cfg.served_name or cfg.model, cfg.server)
        engine.start()
        warm = engine.parse({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "temperature": 0})
        warm.internal = True
        engine.submit(warm)  # compiles the 1-row greedy program and proves the model answers
        warm.done.wait()
        if warm.error is not None:
            raise RuntimeError(str(warm.error))
        server.RequestHandlerClass = make_handler(engine)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        print(f"serving {engine.name} on http://{cfg.host}:{server.server_address[1]}", flush=True)
        while not stop.wait(0.5):  # a timed wait: the signal handler runs promptly in this (main) thread
            pass
        log.info("shutting down")
        server.shutdown()  # no new requests; the ones in flight finish
        engine.stop()
    finally:
        server.server_close()


COMMAND = Command(ServeCommand, run)
