"""On-disk activation stores: chunks of `.npy` rows plus a small JSON index, streamed back chunk by chunk.

A dataset's activations (tokens x width x layers) outgrow memory long before the model does, so
nothing here ever holds a whole store: writers flush a chunk once it reaches `chunk_rows`, readers
memory-map one chunk at a time. Layout of a store directory:

    index.json            {"version", "layers", "d_model", "positions", "dtype", "rows", "chunks": [rows...],
                           "num_examples", "meta"} -- written last, so a half-written store has no index
    L{layer}_{c:05d}.npy  [rows, D] activations of chunk c at that layer
    rows_{c:05d}.npy      [rows, 3] int32: example index, token position, token id (-1 for pooled rows)
    examples.jsonl        one line per example: {"ids": [...], "response_start": int} (top-example contexts)

Rows of chunk c are the same tokens at every layer. Legend: R rows, D model width.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from engine.errors import UserError

DTYPES = ("float32", "float16")


class StoreWriter:
    """Appends rows (activations per layer + row metadata) and flushes fixed-size chunks to disk."""

    def __init__(self, path: str | Path, layers: Sequence[int], d_model: int, positions: str,
                 chunk_rows: int = 8192, dtype: str = "float32", meta: dict | None = None):
        if dtype not in DTYPES:
            raise UserError(f"option 'dtype': expected one of {', '.join(DTYPES)}, got {dtype!r}")
        if chunk_rows < 1:
            raise UserError(f"option 'chunk_rows': expected >= 1, got {chunk_rows}")
        self.path = Path(path)
        if (self.path / "index.json").exists():
            raise UserError(f"{self.path}: already holds an activation store (index.json); choose a new directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.layers, self.d_model, self.positions = tuple(int(x) for x in layers), int(d_model), positions
        self.chunk_rows, self.dtype, self.meta = chunk_rows, dtype, dict(meta or {})
        self._acts: dict[int, list[np.ndarray]] = {layer: [] for layer in self.layers}
        self._rows: list[np.ndarray] = []
        self._pending = 0
        self._chunks: list[int] = []
        self._examples = open(self.path / "examples.jsonl", "w")  # noqa: SIM115 -- open for the writer's life
        self.num_examples = 0

    def add_example(self, ids: Sequence[int], response_start: int) -> int:
        """Records an example's token ids (for top-example contexts); returns its index."""
        self._examples.write(json.dumps({"ids": [int(t) for t in ids], "response_start": int(response_start)}) + "\n")
        self.num_examples += 1
        return self.num_examples - 1

    def add(self, acts: dict[int, np.ndarray], rows_Rx3: np.ndarray) -> None:
        """Adds R rows: `acts[layer]` is [R, D] for every layer of the store, `rows_Rx3` their metadata."""
        n = len(rows_Rx3)
        for layer in self.layers:
            a = np.asarray(acts[layer])
            if a.shape != (n, self.d_model):
                raise ValueError(f"layer {layer}: expected [{n}, {self.d_model}] rows, got {a.shape}")
            self._acts[layer].append(a.astype(self.dtype, copy=False))
        self._rows.append(np.asarray(rows_Rx3, np.int32).reshape(n, 3))
        self._pending += n
        while self._pending >= self.chunk_rows:
            self._flush(self.chunk_rows)

    def _flush(self, n: int) -> None:
        c = len(self._chunks)
        rows = np.concatenate(self._rows)
        np.save(self.path / f"rows_{c:05d}.npy", rows[:n])
        self._rows = [rows[n:]]
        for layer in self.layers:
            a = np.concatenate(self._acts[layer])
            np.save(self.path / f"L{layer}_{c:05d}.npy", a[:n])
            self._acts[layer] = [a[n:]]
        self._chunks.append(n)
        self._pending -= n

    def close(self) -> ActivationStore:
        if self._pending:
            self._flush(self._pending)
        self._examples.close()
        index = {"version": 1, "layers": list(self.layers), "d_model": self.d_model, "positions": self.positions,
                 "dtype": self.dtype, "rows": int(sum(self._chunks)), "chunks": self._chunks,
                 "num_examples": self.num_examples, "meta": self.meta}
        (self.path / "index.json").write_text(json.dumps(index, indent=1))
        return ActivationStore(self.path)


class ActivationStore:
    """Read side of a store: chunk by chunk, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        f = self.path / "index.json"
        if not f.is_file():
            raise UserError(f"{self.path}: not an activation store (no index.json; was the capture finished?)")
        index = json.loads(f.read_text())
        self.layers: tuple[int, ...] = tuple(index["layers"])
        self.d_model: int = index["d_model"]
        self.positions: str = index["positions"]
        self.rows: int = index["rows"]
        self.chunk_sizes: tuple[int, ...] = tuple(index["chunks"])
        self.num_examples: int = index["num_examples"]
        self.meta: dict = index.get("meta", {})
        self._examples: list[dict] | None = None

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_sizes)

    def check_layer(self, layer: int) -> int:
        if layer not in self.layers:
            raise UserError(f"{self.path}: option 'layer': this store has layers {list(self.layers)}, not {layer}")
        return layer

    def chunk(self, c: int, layer: int) -> np.ndarray:
        """[R, D] activations of chunk c (memory-mapped; cast with np.asarray(..., np.float32) to compute)."""
        return np.load(self.path / f"L{self.check_layer(layer)}_{c:05d}.npy", mmap_mode="r")

    def chunk_rows(self, c: int) -> np.ndarray:
        """[R, 3] int32 metadata of chunk c: example index, token position, token id."""
        return np.load(self.path / f"rows_{c:05d}.npy")

    def iter_chunks(self, layer: int, order: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(float32 activations [R, D], rows [R, 3]) per chunk, in `order` (default: stored order)."""
        for c in range(self.num_chunks) if order is None else order:
            yield np.asarray(self.chunk(c, layer), np.float32), self.chunk_rows(c)

    def examples(self) -> list[dict]:
        if self._examples is None:
            with open(self.path / "examples.jsonl") as fh:
                self._examples = [json.loads(line) for line in fh]
        return self._examples


def heldout_rows(rows_Rx3: np.ndarray, every: int) -> np.ndarray:
    """Boolean [R]: rows whose example index is a multiple of `every` (0 = none).

    Splitting by example, not by row, keeps every token of an example (and both answers of a
    contrastive pair, which share the example index) on one side of the split.
    """
    if every <= 0:
        return np.zeros(len(rows_Rx3), bool)
    return rows_Rx3[:, 0] % every == 0


def stream_moments(store: ActivationStore, layer: int, select=None) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean_D, per-dimension variance_D, row count) in float64 over the selected rows, one chunk at a time.

    `select(rows_Rx3) -> bool [R]` picks rows (default: all).
    """
    D = store.d_model
    s, ss, n = np.zeros(D), np.zeros(D), 0
    for x, rows in store.iter_chunks(layer):
        if select is not None:
            x = x[select(rows)]
        s += x.sum(0, dtype=np.float64)
        ss += np.square(x, dtype=np.float64).sum(0)
        n += len(x)
    if n == 0:
        raise UserError(f"{store.path}: no rows selected at layer {layer}")
    mean = s / n
    return mean, np.maximum(ss / n - mean**2, 0.0), n
