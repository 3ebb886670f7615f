"""Minimal safetensors reader / writer on NumPy memory maps.

Why our own: `safetensors.numpy` has no bfloat16, and a memory map lets each device shard read
only its slice of a tensor (sharded loading never builds a whole tensor on one device). The
format is an 8-byte little-endian header length, a JSON header, then raw little-endian data.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import ml_dtypes
import numpy as np

from engine.errors import UserError

_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class SafetensorsFile:
    """Lazy view of one .safetensors file: `f[name]` is a read-only memmap of that tensor."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                if n > size - 8:
                    raise ValueError(f"header length {n} exceeds file size {size}")
                header = json.loads(fh.read(n))
        except FileNotFoundError:
            raise UserError(f"{self.path}: file not found") from None
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path}: not a valid safetensors file ({e})") from None
        header.pop("__metadata__", None)
        self._base = 8 + n
        self._size = size
        self.entries = header

    def keys(self):
        return self.entries.keys()

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def __getitem__(self, name: str) -> np.ndarray:
        e = self.entries[name]
        if e["dtype"] not in _DTYPES:
            raise UserError(f"{self.path}: tensor {name} has unsupported dtype {e['dtype']}")
        dt, (a, b) = _DTYPES[e["dtype"]], e["data_offsets"]
        if self._base + b > self._size:
            raise UserError(f"{self.path}: truncated file (tensor {name} ends past the end of the file)")
        shape = tuple(e["shape"])
        if b - a != int(np.prod(shape)) * dt.itemsize:
            raise UserError(f"{self.path}: tensor {name} has {b - a} bytes, expected {shape} x {dt}")
        if not shape or b == a:
            return np.zeros(shape, dt)
        return np.memmap(self.path, dtype=dt, mode="r", offset=self._base + a, shape=shape)


def save_file(tensors: Iterable[tuple[str, np.ndarray]], path: str | Path, metadata: dict | None = None) -> int:
    """Writes (name, array) pairs; arrays are pulled one at a time. Returns bytes of tensor data."""
    tensors = [(name, np.ascontiguousarray(arr)) for name, arr in tensors]
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, arr in tensors:
        if arr.dtype not in _NAMES:
            raise ValueError(f"cannot store dtype {arr.dtype} for {name}")
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data section starts 8-byte aligned, as the reference writer does
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for _, arr in tensors:
            fh.write(arr.tobytes())
    os.replace(tmp, path)
    return offset


class CheckpointFiles:
    """All tensors of an HF directory: one `model.safetensors` or shards listed in an index."""

    def __init__(self, directory: str | Path):
        d = Path(directory)
        index = d / "model.safetensors.index.json"
        single = d / "model.safetensors"
        self.where: dict[str, SafetensorsFile] = {}
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise UserError(f"{index}: not a valid safetensors index ({e})") from None
            files = {f: SafetensorsFile(d / f) for f in sorted(set(weight_map.values()))}
            for name, f in weight_map.items():
                if name not in files[f].entries:
                    raise UserError(f"{d / f}: tensor {name} listed in {index.name} is missing")
                self.where[name] = files[f]
        elif single.is_file():
            f = SafetensorsFile(single)
            self.where = {name: f for name in f.keys()}
        else:
            raise UserError(f"{d}: no model.safetensors or model.safetensors.index.json "
                            "(only safetensors checkpoints are supported)")

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def get(self, name: str) -> tuple[SafetensorsFile, np.ndarray]:
        if name not in self.where:
            raise UserError(f"{next(iter(self.where.values())).path.parent}: missing tensor {name}")
        f = self.where[name]
        return f, f[name]
