"""The Grain pipeline: records -> trait-mix -> chat template + tokens -> left-padded, bucketed prompt batches.

    trait records --filter(traits, domains)--+
                                             +-- shard -> shuffle -> repeat --+
    regular records -------------------------+                                +-- mix(1-f, f) -> tokenize
                                                                                   -> drop > max_prompt_len
                                                                                   -> batch(P) -> pad to bucket

Everything before batching is a Grain `MapDataset` (random access by index), so the whole
stream is a pure function of (sources, config) and the iterator state is one integer: a
restored iterator continues exactly where the saved one stopped. Ablation filters act on the
trait source *before* mixing, so the dose stays `trait_fraction` whatever they remove.

The dose is exact per window: a dose f = k / W (the smallest W <= 1000 that makes k whole; 5% = 1 in 20)
puts exactly k trait prompts in every window of W prompts, at positions drawn per window from the seed, so
an arm sees the dose it names at any length (n prompts hold floor(n / W) * k to ceil(n / W) * k trait
prompts). Trait prompts are stratified: successive trait slots cycle through the traits, and each trait
through the domains (a Latin square over (trait, domain) cells), so any 6 consecutive trait prompts cover the
six traits and any 42 cover all 42 cells; inside a cell records are shuffled afresh each epoch. Each process
takes every `shard_count`-th record of each source (of each cell) and applies the windows to its own stream.
"""

from __future__ import annotations

import bisect
import functools
import logging
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import grain
import numpy as np

from data.config import DataConfig
from data.generator import generate_regular_records, generate_trait_records
from data.readers import read_records
from data.schema import DOMAINS, TRAITS, Record
from data.scenarios.common import stable_seed
from engine.errors import UserError
from models.tokenizer import encode_chats, left_pad

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptBatch:
    """P prompts, left-padded to one bucket length L, with their records (for the graders)."""

    input_ids_BxL: np.ndarray  # int32 token ids, pad id on the left
    mask_BxL: np.ndarray  # bool, True on real tokens (positions count from each row's first real token)
    lengths_B: np.ndarray  # int32 unpadded prompt lengths
    records: list[Record]  # the source records, same order


def filter_trait_records(records: Sequence[Record], cfg: DataConfig) -> list[Record]:
    """Applies the ablation filters (traits, trait_domains, exclude_trait_domains) to trait records."""
    out = []
    for r in records:
        if cfg.traits and r["trait"] not in cfg.traits:
            continue
        if cfg.trait_domains and r["domain"] not in cfg.trait_domains:
            continue
        if r["domain"] in cfg.exclude_trait_domains:
            continue
        out.append(r)
    return out


def load_sources(cfg: DataConfig, known_graders=None) -> tuple[list[Record], list[Record]]:
    """(trait records after the ablation filters, regular records) from files or the bundled generator."""

    def read(paths: Sequence[str]) -> list[Record]:
        out: list[Record] = []
        for p in paths:
            recs, _stats = read_records(p, cfg.on_error, known_graders)
            out.extend(recs)
        return out

    trait = read(cfg.trait_files) if cfg.trait_files else generate_trait_records(cfg.n_per_cell, cfg.seed, cfg.split)
    regular = (
        read(cfg.regular_files) if cfg.regular_files
        else generate_regular_records(cfg.n_regular, cfg.seed, cfg.split, cfg.levels)
    )
    wrong = next((r for r in trait if r["kind"] != "trait"), None) or next(
        (r for r in regular if r["kind"] != "regular"), None
    )
    if wrong is not None:
        raise UserError(
            f"record {wrong['id']}: field 'kind': {wrong['kind']!r} record in the "
            f"{'trait' if wrong['kind'] == 'regular' else 'regular'} source"
        )
    return filter_trait_records(trait, cfg), regular


@dataclass(frozen=True)
class TokenizedSource:
    """A source's records with their prompt token ids; over-long prompts already removed."""

    records: list[Record]  # kept records
    ids: list[np.ndarray]  # int32 prompt ids (chat template + generation prompt), aligned with records
    dropped: int  # records removed for exceeding max_prompt_len


def tokenize_source(
    records: Sequence[Record], tokenizer: Any, max_prompt_len: int, chunk: int = 2048
) -> TokenizedSource:
    """Tokenizes every record once, up front (sources are in memory anyway), dropping over-long prompts.

    Doing it per source rather than per streamed element means each epoch costs only index
    shuffling and padding, and the dose is computed over prompts that can actually be used.
    """
    kept: list[Record] = []
    ids: list[np.ndarray] = []
    dropped = 0
    for lo in range(0, len(records), chunk):
        part = records[lo : lo + chunk]
        for r, t in zip(part, encode_chats(tokenizer, [r["messages"] for r in part])):
            if len(t) > max_prompt_len:
                dropped += 1
                continue
            kept.append(r)
            ids.append(np.asarray(t, dtype=np.int32))
    if dropped:
        log.warning(
            "dropped %d of %d prompt(s) longer than max_prompt_len=%d tokens", dropped, len(records), max_prompt_len
        )
    return TokenizedSource(kept, ids, dropped)


REGULAR, TRAIT = 0, 1  # source tags in the index stream


def _stream(n: int, cfg: DataConfig, tag: int, what: str) -> grain.MapDataset:
    ds = grain.MapDataset.range(n)[cfg.shard_index :: cfg.shard_count]
    if len(ds) == 0:
        raise UserError(
            f"option 'data': the {what} source is empty for shard {cfg.shard_index}/{cfg.shard_count} "
            f"after filters ({n} records before sharding)"
        )
    # A fresh permutation each epoch (Grain reseeds shuffle per repeat epoch), deterministic in the seed.
    return ds.shuffle(seed=cfg.seed * 1000 + tag).repeat().map(lambda i: (tag, int(i)))


def dose_window(f: float) -> tuple[int, int]:
    """(k, W): k trait prompts in every window of W, the smallest W <= 1000 with f * W whole (else f rounded)."""
    frac = Fraction(f).limit_denominator(1000)
    return frac.numerator, frac.denominator


def _trait_cells(records: Sequence[Record], cfg: DataConfig) -> list[list[int]]:
    """This shard's trait record indices per (trait, domain) cell, in Latin-square order: cell j of the cycle has
    trait j mod T and, on the b-th pass over the traits, the trait's domains shifted by b."""
    cells: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        cells.setdefault((str(r.get("trait")), str(r.get("domain"))), []).append(i)
    traits = sorted({t for t, _ in cells}, key=lambda t: (TRAITS.index(t) if t in TRAITS else len(TRAITS), t))
    domains = sorted({d for _, d in cells}, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d))
    out = []
    for b in range(len(domains)):
        for ti, t in enumerate(traits):
            idx = cells.get((t, domains[(ti + b) % len(domains)]), [])[cfg.shard_index :: cfg.shard_count]
            if idx:
                out.append(idx)
    return out


class _Windowed:
    """Element i of the mixed stream -> (source tag, record index): see the module docstring."""

    def __init__(self, cfg: DataConfig, n_regular: int, trait_records: Sequence[Record]):
        self.k, self.W = dose_window(cfg.dose)
        if cfg.dose > 0 and self.k == 0:
            raise UserError(f"option 'data.trait_fraction': expected 0 or at least 0.001 (one prompt in 1000), "
                            f"got {cfg.dose}")
        self.seed = cfg.seed
        self.regular = _stream(n_regular, cfg, REGULAR, "regular") if self.k < self.W else None
        self.cells = []
        if self.k > 0:
            cells = _trait_cells(trait_records, cfg)
            if not cells:
                raise UserError(f"option 'data': the trait (after filters) source is empty for shard "
                                f"{cfg.shard_index}/{cfg.shard_count} ({len(trait_records)} records before sharding)")
            # Each cell's records, shuffled afresh every epoch (deterministic in the seed and the cell).
            self.cells = [(idx, grain.MapDataset.range(len(idx)).shuffle(seed=cfg.seed * 1000 + 7 + c).repeat())
                          for c, idx in enumerate(cells)]

    @functools.lru_cache(maxsize=4096)
    def slots(self, w: int) -> tuple[int, ...]:
        """The trait positions of window w."""
        if self.k in (0, self.W):
            return tuple(range(self.k))
        rng = random.Random(stable_seed("dose-window", self.seed, w))
        return tuple(sorted(rng.sample(range(self.W), self.k)))

    def __call__(self, i: int) -> tuple[int, int]:
        w, p = divmod(int(i), self.W)
        slots = self.slots(w)
        before = bisect.bisect_left(slots, p)
        if before < len(slots) and slots[before] == p:
            j = w * self.k + before  # the j-th trait prompt of the stream
            idx, order = self.cells[j % len(self.cells)]
            return TRAIT, idx[order[j // len(self.cells)]]
        j = w * (self.W - self.k) + p - before  # the j-th regular prompt
        return REGULAR, self.regular[j][1]


def index_stream(cfg: DataConfig, n_regular: int, trait_records: Sequence[Record]) -> grain.MapDataset:
    """The infinite, sharded, shuffled stream of (source tag, index) with the trait dose mixed in per window.

    Streaming small tuples rather than records keeps Grain's per-element overhead (tree
    flattening, byte-size stats) negligible; batches look the records up at the end.
    """
    return grain.MapDataset.range(sys.maxsize).map(_Windowed(cfg, n_regular, trait_records))


def prompt_batch(records: Sequence[Record | dict], prompt_ids: Sequence[Sequence[int]], buckets: Sequence[int],
                 pad: int) -> PromptBatch:
    """A `PromptBatch` from records and their token ids (for callers that tokenize themselves: tests, benchmarks)."""
    ids, mask = left_pad(prompt_ids, buckets, pad)
    return PromptBatch(ids, mask, np.asarray([len(x) for x in prompt_ids], np.int32), list(records))


class PadToBucket:
    """Batch function: looks up P (tag, index) pairs and left-pads them to the smallest bucket that fits.

    This is the one place a training prompt is padded: the learner hands the arrays to the sampler as they are.
    """

    def __init__(self, sources: Sequence[TokenizedSource], buckets: Sequence[int], pad: int):
        self.sources = sources
        self.buckets = tuple(buckets)
        self.pad = pad

    def __call__(self, items: Sequence[tuple[int, int]]) -> PromptBatch:
        return prompt_batch([self.sources[t].records[i] for t, i in items], [self.sources[t].ids[i] for t, i in items],
                            self.buckets, self.pad)


def _sources(cfg: DataConfig, trait: Sequence[Record] | None, regular: Sequence[Record] | None):
    if trait is None or regular is None:
        t, r = load_sources(cfg)
        return (t if trait is None else filter_trait_records(trait, cfg)), (r if regular is None else list(regular))
    return filter_trait_records(trait, cfg), list(regular)


def prompt_batches(
    cfg: DataConfig,
    tokenizer: Any,
    buckets: Sequence[int],
    pad: int,
    trait: Sequence[Record] | None = None,
    regular: Sequence[Record] | None = None,
) -> grain.IterDataset:
    """The full pipeline as a Grain `IterDataset` of `PromptBatch`; sources default to `load_sources(cfg)`.

    `buckets` are the sampler's prompt lengths (`SamplingConfig.prompt_buckets`) and `pad` the model's pad id
    (`models.tokenizer.pad_id`): batches come out ready for the sampler.
    """
    max_len = buckets[-1] if cfg.max_prompt_len is None else cfg.max_prompt_len
    if buckets[-1] < max_len:
        raise UserError(f"option 'data.max_prompt_len' ({max_len}) exceeds the largest prompt bucket "
                        f"({buckets[-1]}, option 'sampling.prompt_buckets')")
    trait, regular = _sources(cfg, trait, regular)
    srcs = [None, None]
    srcs[REGULAR] = (
        tokenize_source(regular, tokenizer, max_len)
        if cfg.dose < 1
        else TokenizedSource([], [], 0)
    )
    srcs[TRAIT] = (
        tokenize_source(trait, tokenizer, max_len) if cfg.dose > 0 else TokenizedSource([], [], 0)
    )
    ds = index_stream(cfg, len(srcs[REGULAR].records), srcs[TRAIT].records)
    read = grain.ReadOptions(
        num_threads=cfg.read_threads, prefetch_buffer_size=4 * cfg.batch_size if cfg.read_threads else 0
    )
    it_ds = ds.to_iter_dataset(read).batch(
        cfg.batch_size, drop_remainder=True, batch_fn=PadToBucket(srcs, buckets, pad)
    )
    if cfg.worker_count:
        from absl import flags

        # Grain's worker processes read absl flags; the tyro CLI never parses them, so take the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.worker_count))
    return it_ds


def prompt_iterator(
    cfg: DataConfig,
    tokenizer: Any,
    buckets: Sequence[int],
    pad: int,
    trait: Sequence[Record] | None = None,
    regular: Sequence[Record] | None = None,
    state: dict | None = None,
) -> grain.DatasetIterator:
    """An iterator of `PromptBatch`; `it.get_state()` / `it.set_state(s)` (or `state=`) save and restore position.

    The state is a small JSON-able dict; Orbax saves it next to the model with
    `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`.
    """
    it = iter(prompt_batches(cfg, tokenizer, buckets, pad, trait, regular))
    if state is not None:
        it.set_state(state)
    return it


def record_iterator(cfg: DataConfig, trait: Sequence[Record] | None = None, regular: Sequence[Record] | None = None):
    """The mixed record stream without tokenization (previews, dose checks, evals that tokenize themselves).

    Same order as `prompt_iterator` when no prompt is over-long (tokenization can only drop records).
    """
    trait, regular = _sources(cfg, trait, regular)
    srcs = {REGULAR: regular, TRAIT: trait}
    ds = index_stream(cfg, len(regular), trait).map(lambda ti: srcs[ti[0]][ti[1]])
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
