"""Multi-host through JAX's own multi-controller runtime: init, and the two host-side exchanges the loop needs.

Every process runs the same program on a global mesh. Each reads its own shard of the data; the
prompt records of a step are exchanged (`gather_objects`) so every process holds the whole global
batch in process order, then rollouts, the update and checkpoints are global SPMD computations.
Rewards run on the host, identically on every process, over the global rollouts (`to_host`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

from engine.errors import UserError


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins a multi-process run (all None: a single process, or JAX's auto-detection)."""

    coordinator_address: str | None = None  # host:port of process 0's coordinator (env JAX_COORDINATOR_ADDRESS)
    num_processes: int | None = None  # processes in the run (env JAX_NUM_PROCESSES)
    process_id: int | None = None  # this process's index (env JAX_PROCESS_ID)
    auto: bool = False  # let JAX detect the cluster (TPU VMs, SLURM, Kubernetes) with no address given

    def __post_init__(self):
        if self.num_processes is not None and self.num_processes < 1:
            raise UserError(f"distributed.num_processes: expected >= 1, got {self.num_processes}")
        if self.process_id is not None and self.num_processes is not None and not 0 <= self.process_id < self.num_processes:
            raise UserError(f"distributed.process_id: expected 0 <= id < {self.num_processes}, got {self.process_id}")


def initialize(cfg: DistributedConfig = DistributedConfig()) -> bool:
    """Calls `jax.distributed.initialize` when the config or the environment asks for it; returns whether it did."""
    env = os.environ
    address = cfg.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    n = cfg.num_processes if cfg.num_processes is not None else _int_env("JAX_NUM_PROCESSES")
    pid = cfg.process_id if cfg.process_id is not None else _int_env("JAX_PROCESS_ID")
    if address is None and not cfg.auto:
        if n not in (None, 1):
            raise UserError("distributed: num_processes > 1 needs --distributed.coordinator-address (host:port)")
        return False
    if jax.distributed.is_initialized():
        return True
    kwargs = {} if address is None else {"coordinator_address": address, "num_processes": n, "process_id": pid}
    if address is not None and (n is None or pid is None):
        raise UserError("distributed: with a coordinator address, give num_processes and process_id too")
    jax.distributed.initialize(**kwargs)
    return True


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment {name}: expected an integer, got {value!r}") from None


def gather_objects(local: list) -> list:
    """Concatenates every process's JSON-serialisable list, in process order (identity on one process)."""
    if jax.process_count() == 1:
        return list(local)
    from jax.experimental import multihost_utils

    blob = np.frombuffer(json.dumps(local).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([blob.size], np.int64)).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: blob.size] = blob
    blobs = multihost_utils.process_allgather(padded)
    out: list = []
    for row, size in zip(blobs.reshape(len(sizes), -1), sizes, strict=True):
        out.extend(json.loads(row[: int(size)].tobytes().decode()))
    return out


def to_host(tree: Any) -> Any:
    """NumPy copies of (possibly multi-process) arrays: each leaf whole, on every process."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)
