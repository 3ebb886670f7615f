"""Writes the bundled records (trait scenarios and/or regular tasks) of one split to a JSONL file.

One record per line in the record schema of the README (`id`, `messages`, `kind`, `domain`,
`trait`, `grader`, `grader_args`, `meta`). `grader_args` carries the ground truth the grader reads
and a `reference` answer (`null` where a good answer cannot be canned, the no-cue well-being
controls); `meta` has the split, the variant and the ids of the facts the record was built from.
Records are validated before anything is written, and the file is replaced atomically.

    export_records("heldout", "trait", Path("heldout.jsonl"))  ->  number of records written
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data.generator import generate_trait_records
from data.scenarios.common import SPLITS
from data.schema import validate_record
from data.tasks import generate_regular_records
from engine.errors import UserError

KINDS = ("trait", "regular")


def export_records(
    split: str,
    kind: str | None,
    out: Path | str,
    seed: int = 0,
    n_per_cell: int = 100,
    n_regular: int = 10_000,
    known_graders: frozenset[str] | None = None,
) -> int:
    """`split`'s records of `kind` ("trait", "regular" or None for both) written to `out`; returns the count.

    Trait records: up to `n_per_cell` per (trait, domain) cell; regular: `n_regular` tasks.
    """
    if split not in SPLITS:
        raise UserError(f"option 'split': unknown value {split!r} (expected one of {', '.join(SPLITS)})")
    if kind is not None and kind not in KINDS:
        raise UserError(f"option 'kind': unknown value {kind!r} (expected one of {', '.join(KINDS)}, or none for both)")
    for name, n in (("n_per_cell", n_per_cell), ("n_regular", n_regular)):
        if not isinstance(n, int) or n < 0:
            raise UserError(f"option '{name}': expected an integer >= 0, got {n!r}")
    records = []
    if kind in (None, "trait"):
        records += generate_trait_records(n_per_cell, seed, split)
    if kind in (None, "regular"):
        records += generate_regular_records(n_regular, seed, split)
    for r in records:  # `known_graders` (the reward registry's names, passed by the command) checks each grader
        validate_record(r, r["id"], known_graders=known_graders)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return len(records)
