"""Hugging Face <-> traitrl parameter mapping, sharded import and export.

Our layout keeps heads as their own axes ([D, H, E] instead of HF's [H*E, D]) so the rules table
can shard heads cleanly. Each parameter has one `_Map` entry: the HF tensor name and how the HF
array is rearranged into ours. Sharded import fills each device shard from a memory map of just
the rows / columns it needs.

With `cfg.scan` the blocks' parameters are stacked along a leading layers axis: one `_Map` per
stacked parameter names its HF tensors by a template (`model.layers.{i}....`) and import / export walk
the layers inside it (a device shard covering layers [a, b) reads just those layers' tensors).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from engine.errors import UserError
from models.config import ModelConfig
from models.safetensors_io import CheckpointFiles, save_file


@dataclasses.dataclass(frozen=True)
class _Map:
    """How HF tensor `name` becomes our parameter.

    kind: "id" (same layout), "T" (transpose), "Tsplit_out" (HF [N*E, D] -> ours [D, N, E]),
    "Tsplit_in" (HF [D, N*E] -> ours [N, E, D]), "split" (HF [N*E] -> ours [N, E]).
    """

    name: str  # with `stacked`, a template with "{i}" for the layer index
    kind: str
    stacked: bool = False  # our array has a leading layers axis; layer i is HF tensor name.format(i=i)

    def names(self, num_layers: int) -> list[str]:
        return [self.name.format(i=i) for i in range(num_layers)] if self.stacked else [self.name]


def param_map(cfg: ModelConfig) -> dict[tuple, _Map]:
    """Our parameter path (as in nnx.to_flat_state) -> HF tensor."""
    m: dict[tuple, _Map] = {("embed_VxD",): _Map("model.embed_tokens.weight", "id"),
                            ("final_norm", "scale"): _Map("model.norm.weight", "id")}
    if not cfg.tie_word_embeddings:
        m[("lm_head_DxV",)] = _Map("lm_head.weight", "T")
    if cfg.scan:
        for path, one in _layer_map(cfg, "model.layers.{i}.", ("layers",)).items():
            m[path] = _Map(one.name, one.kind, stacked=True)
        return m
    for i in range(cfg.num_hidden_layers):
        m.update(_layer_map(cfg, f"model.layers.{i}.", ("layers", i)))
    return m


def _layer_map(cfg: ModelConfig, p: str, L: tuple) -> dict[tuple, _Map]:
    """One block's parameters: our path under `L` -> HF name under prefix `p`."""
    m: dict[tuple, _Map] = {}
    m[L + ("input_norm", "scale")] = _Map(p + "input_layernorm.weight", "id")
    m[L + ("post_attn_norm", "scale")] = _Map(p + "post_attention_layernorm.weight", "id")
    for ours, hf in (("q_DxHxE", "q"), ("k_DxKxE", "k"), ("v_DxKxE", "v")):
        m[L + ("attn", ours)] = _Map(f"{p}self_attn.{hf}_proj.weight", "Tsplit_out")
    m[L + ("attn", "o_HxExD")] = _Map(p + "self_attn.o_proj.weight", "Tsplit_in")
    if cfg.attention_bias:
        for ours, hf in (("q_bias_HxE", "q"), ("k_bias_KxE", "k"), ("v_bias_KxE", "v")):
            m[L + ("attn", ours)] = _Map(f"{p}self_attn.{hf}_proj.bias", "split")
    if cfg.qk_norm:
        m[L + ("attn", "q_norm", "scale")] = _Map(p + "self_attn.q_norm.weight", "id")
        m[L + ("attn", "k_norm", "scale")] = _Map(p + "self_attn.k_norm.weight", "id")
    m[L + ("mlp", "gate_DxF")] = _Map(p + "mlp.gate_proj.weight", "T")
    m[L + ("mlp", "up_DxF")] = _Map(p + "mlp.up_proj.weight", "T")
    m[L + ("mlp", "down_FxD")] = _Map(p + "mlp.down_proj.weight", "T")
    return m


def _read_block(files: CheckpointFiles, m: _Map, index: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Our array's block `index` read from the HF tensors (a stacked parameter: layer by layer)."""
    if not m.stacked:
        return hf_to_ours(m.kind, files.get(m.name)[1], index, shape)
    layers = range(*_norm(index[0], shape[0]).indices(shape[0]))
    return np.stack([hf_to_ours(m.kind, files.get(m.name.format(i=i))[1], index[1:], shape[1:]) for i in layers])


def _hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "id":
        return shape
    if kind == "T":
        return shape[::-1]
    if kind == "Tsplit_out":
        return (shape[1] * shape[2], shape[0])
    if kind == "Tsplit_in":
        return (shape[2], shape[0] * shape[1])
    return (shape[0] * shape[1],)  # split


def _norm(s: slice, n: int) -> slice:
    a, b, _ = s.indices(n)
    return slice(a, b)


def _merge(outer: slice, inner: slice, inner_n: int) -> slice:
    """Rows of a flattened [N*E] axis covering outer heads when the inner (E) axis is whole."""
    if (inner.start, inner.stop) != (0, inner_n):
        raise ValueError("head_dim must not be sharded")
    return slice(outer.start * inner_n, outer.stop * inner_n)


def hf_to_ours(kind: str, hf: np.ndarray, index: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Our array's block `index` (slices of `shape`), read from the HF array (may be a memmap)."""
    idx = tuple(_norm(s, n) for s, n in zip(index, shape, strict=True))
    out_shape = tuple(s.stop - s.start for s in idx)
    if kind == "id":
        block = hf[idx]
    elif kind == "T":
        block = hf[idx[::-1]].T
    elif kind == "Tsplit_out":
        block = hf[_merge(idx[1], idx[2], shape[2]), idx[0]].T
    elif kind == "Tsplit_in":
        block = hf[idx[2], _merge(idx[0], idx[1], shape[1])].T
    else:
        block = hf[_merge(idx[0], idx[1], shape[1])]
    return np.ascontiguousarray(block).reshape(out_shape)


def ours_to_hf(kind: str, arr: np.ndarray) -> np.ndarray:
    if kind == "id":
        return arr
    if kind == "T":
        return arr.T
    if kind == "Tsplit_out":
        return arr.reshape(arr.shape[0], -1).T
    if kind == "Tsplit_in":
        return arr.reshape(-1, arr.shape[2]).T
    return arr.reshape(-1)


def load_params(model: nnx.Module, cfg: ModelConfig, directory: Path,
                shardings: dict[tuple, jax.sharding.Sharding] | None = None) -> None:
    """Fills an (abstract or concrete) model's parameters from the HF safetensors in `directory`.

    Each parameter is created directly with its sharding (`shardings[path]`, default: one device);
    `make_array_from_callback` asks for one block per addressable device and we read only that
    block from the memory-mapped file.
    """
    files = CheckpointFiles(directory)
    mapping = param_map(cfg)
    target = np.dtype(jax.numpy.dtype(cfg.param_dtype))
    state = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    n = cfg.num_hidden_layers
    missing = [name for m in mapping.values() for name in m.names(n) if name not in files]
    if missing:
        raise UserError(f"{directory}: missing tensor {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    for path, var in flat.items():
        m = mapping[path]
        value = var.get_value()
        shape = tuple(value.shape)
        want = _hf_shape(m.kind, shape[1:] if m.stacked else shape)
        for name in m.names(n):
            f, hf = files.get(name)
            if tuple(hf.shape) != want:
                raise UserError(f"{f.path}: tensor {name} has shape {list(hf.shape)}, expected {list(want)} "
                                f"from config.json")
        sharding = (shardings or {}).get(path) or jax.sharding.SingleDeviceSharding(jax.devices()[0])

        def block(index, m=m, shape=shape):
            return _read_block(files, m, index, shape).astype(target)

        var.set_value(jax.make_array_from_callback(shape, sharding, block))
    nnx.update(model, state)


def _host_array(x: jax.Array) -> np.ndarray:
    """A full host copy of a (possibly multi-host sharded) array."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def hf_tensors(model: nnx.Module, cfg: ModelConfig) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, host array) pairs, one parameter at a time (a stacked parameter: its layers in order)."""
    mapping = param_map(cfg)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for path, m in mapping.items():
        host = _host_array(flat[path].get_value())
        if m.stacked:
            for i in range(host.shape[0]):
                yield m.name.format(i=i), ours_to_hf(m.kind, host[i])
        else:
            yield m.name, ours_to_hf(m.kind, host)


def save_params(model: nnx.Module, cfg: ModelConfig, out_dir: Path, max_shard_bytes: int = 2 << 30) -> None:
    """Writes model.safetensors, or shards plus model.safetensors.index.json above the threshold."""
    mapping = param_map(cfg)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    n = cfg.num_hidden_layers
    sizes = {name: flat[p].get_value().nbytes // (n if m.stacked else 1)
             for p, m in mapping.items() for name in m.names(n)}
    total = sum(sizes.values())
    names = list(sizes)
    groups, cur, cur_bytes = [], [], 0
    for n in names:
        if cur and cur_bytes + sizes[n] > max_shard_bytes:
            groups.append(cur)
            cur, cur_bytes = [], 0
        cur.append(n)
        cur_bytes += sizes[n]
    groups.append(cur)
    write = jax.process_index() == 0
    tensors = hf_tensors(model, cfg)
    if len(groups) == 1:
        arrays = list(tensors)
        if write:
            save_file(arrays, out_dir / "model.safetensors")
        return
    weight_map = {}
    for gi, group in enumerate(groups):
        fname = f"model-{gi + 1:05d}-of-{len(groups):05d}.safetensors"
        arrays = [next(tensors) for _ in group]
        if write:
            save_file(arrays, out_dir / fname)
        weight_map.update({n: fname for n in group})
    if write:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
