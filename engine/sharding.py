"""Mesh construction and the one table that maps logical axis names to mesh axes.

Every parameter carries `logical_axes` metadata (e.g. `("embed", "mlp")`). `RULES` says which mesh
axis each logical name is split over. A dimension whose size the mesh axis does not divide is
replicated instead (e.g. 2 KV heads on a tensor axis of 4), so any mesh works for any model; the
cost is only memory on that dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from engine.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axis (or tuple of axes, or None = replicated). Read it as a table.
RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),  # activations: batch split over both data-parallel axes
    "layers": None,  # the leading axis of scanned (stacked) block parameters and caches: every device has all
    "vocab": "tensor",  # embedding rows / lm_head columns, and the logits' last axis: with a tensor axis each
    # device computes its vocabulary slice of the logits and the log-softmax reduces across (never all-gathered)
    "embed": "fsdp",  # model width of weights: ZeRO-3 style parameter sharding
    "heads": "tensor",  # query heads (Megatron attention split)
    "kv_heads": "tensor",  # key/value heads (replicated when fewer than the tensor axis)
    "head_dim": None,
    "mlp": "tensor",  # SwiGLU inner width (Megatron MLP split)
    "norm": None,  # RMSNorm scales are tiny: replicate
    "length": None,
    "cache_length": None,
}


def check_mesh_size(mesh: Sequence[int], n_devices: int | None = None) -> None:
    """A (data, fsdp, tensor) shape must use every device (default: all of this job's)."""
    n = len(jax.devices()) if n_devices is None else n_devices
    data, fsdp, tensor = mesh
    if data * fsdp * tensor != n:
        raise UserError(f"mesh: data*fsdp*tensor = {data}*{fsdp}*{tensor} = {data * fsdp * tensor}, "
                        f"but there are {n} devices")


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all), with Auto axis types.

    Auto axes let XLA's sharding propagation place intermediate activations; we pin only the few
    that matter (batch dimension) with `constrain`.
    """
    devices = list(jax.devices() if devices is None else devices)
    check_mesh_size((data, fsdp, tensor), len(devices))
    grid = np.asarray(devices).reshape(data, fsdp, tensor)
    return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3)


def _axis_size(mesh: Mesh, axes) -> int:
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def spec_for(shape: Sequence[int], logical_axes: Sequence[str | None], mesh: Mesh) -> P:
    """PartitionSpec for an array of `shape` whose dims are named `logical_axes` (via RULES).

    A mesh axis is used at most once per array and only where it divides the dimension.
    """
    used: set[str] = set()
    spec = []
    for dim, name in zip(shape, logical_axes, strict=True):
        axes = RULES.get(name) if name is not None else None
        axes = (axes,) if isinstance(axes, str) else axes
        if axes:
            axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if not axes or dim % _axis_size(mesh, axes):
            spec.append(None)
            continue
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else axes)
    return P(*spec)


def sharding_for(shape, logical_axes, mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, spec_for(shape, logical_axes, mesh))


def constrain(x: jax.Array, logical_axes: Sequence[str | None], mesh: Mesh | None) -> jax.Array:
    """Pins an activation's sharding by logical names; a no-op without a mesh."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, sharding_for(x.shape, logical_axes, mesh))


def batch_sharding(mesh: Mesh | None, ndim: int) -> NamedSharding | None:
    """Rows over the batch axes, everything else replicated (the layout of every [B, ...] step input)."""
    if mesh is None:
        return None
    return NamedSharding(mesh, P(RULES["batch"], *([None] * (ndim - 1))))
