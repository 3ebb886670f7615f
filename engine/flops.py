"""A device's peak FLOP/s: the denominator of the FLOP-utilisation figure in the metrics and the benchmarks.

Utilisation = model FLOPs of the work done (`models.flops`) / wall time / (peak per device x devices).
Accelerator peaks are the vendors' dense figures; a CPU has no published number, so its fp32 matmul
rate is measured once per process (a jitted 2048^3 matmul chain, best of several) and the best rate ever
seen on the machine is cached: a measurement taken while the host is busy must not understate the peak.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp

log = logging.getLogger(__name__)

# Dense peak FLOP/s per chip by device kind substring: (bf16, fp32).
PEAKS: dict[str, tuple[float, float]] = {
    "TPU v4": (275e12, 275e12 / 2),
    "TPU v5 lite": (197e12, 197e12 / 2),
    "TPU v5e": (197e12, 197e12 / 2),
    "TPU v5p": (459e12, 459e12 / 2),
    "TPU v6": (918e12, 918e12 / 2),
    "H200": (989e12, 67e12),
    "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12),
    "L4": (121e12, 30e12),
}


_MEASURED: dict[str, float] = {}


def _cache_file() -> Path:
    root = Path(os.environ.get("TRAITRL_CACHE", Path.home() / ".cache" / "traitrl"))
    return root / "peak_flops.json"


def measure_matmul_peak(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """Best-of-`repeats` FLOP/s of one device on a jitted n^3 matmul (a chain of 4, so dispatch is amortised)."""
    x = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda a: a @ a @ a @ a @ a)
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 4 * 2 * n**3 / best


def peak_flops(dtype: str = "float32", device: jax.Device | None = None) -> float:
    """Peak FLOP/s of one device: the table for accelerators, a cached measurement for CPUs."""
    if os.environ.get("TRAITRL_PEAK_FLOPS"):  # a user's own figure (FLOP/s per device) wins
        return float(os.environ["TRAITRL_PEAK_FLOPS"])
    device = device or jax.devices()[0]
    kind = device.device_kind
    for name, (bf16, fp32) in PEAKS.items():
        if name.lower() in kind.lower():
            return bf16 if dtype == "bfloat16" else fp32
    path = _cache_file()
    key = f"{device.platform}:{kind}:{os.cpu_count()}:{dtype}"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key not in _MEASURED:  # once per process; the cache keeps the best ever seen (a busy host measures low)
        _MEASURED[key] = measure_matmul_peak(dtype=jnp.dtype(dtype))
        log.info("measured %s matmul peak: %.1f GFLOP/s", key, _MEASURED[key] / 1e9)
        if _MEASURED[key] > cached.get(key, 0.0):
            cached[key] = _MEASURED[key]
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(cached, indent=1))
            except OSError:
                pass
    return max(_MEASURED[key], cached.get(key, 0.0))
