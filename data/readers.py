"""Readers for user record files (JSONL, Parquet, ArrayRecord) with per-line validation.

Files are read eagerly into a list of records: prompt sets for RL are small (thousands to a
few hundred thousand prompts), and a list gives Grain a random-access source, so shuffling and
checkpointing stay exact. With `on_error="raise"` the first bad line raises `UserError`
naming `file:line` and the field; with `on_error="skip"` bad lines are counted, logged once with
the first error, and left out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data.schema import Record, validate_record
from engine.errors import UserError

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
ON_ERROR = ("raise", "skip")


@dataclass
class ReadStats:
    """What a reader saw: kept lines, skipped lines and the first error (for the log)."""

    path: str  # file read
    kept: int = 0  # records that passed validation
    skipped: int = 0  # lines left out in on_error="skip" mode
    first_error: str | None = None  # message of the first skipped line
    errors: list[str] = field(default_factory=list)  # up to 20 messages, for previews


def _check_mode(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise UserError(f"option 'data.on_error': expected one of {', '.join(ON_ERROR)}, got {on_error!r}")


def _collect(items: Iterable[tuple[str, Any]], stats: ReadStats, on_error: str, known_graders) -> list[Record]:
    """Validates `(where, obj_or_exception)` pairs into records, honouring `on_error`."""
    out: list[Record] = []
    for where, obj in items:
        try:
            if isinstance(obj, UserError):
                raise obj
            out.append(validate_record(obj, where, known_graders))
        except UserError as e:
            if on_error == "raise":
                raise
            stats.skipped += 1
            stats.first_error = stats.first_error or str(e)
            if len(stats.errors) < 20:
                stats.errors.append(str(e))
    stats.kept = len(out)
    if stats.skipped:
        log.warning(
            "%s: skipped %d bad line(s) of %d; first: %s",
            stats.path,
            stats.skipped,
            stats.skipped + stats.kept,
            stats.first_error,
        )
    return out


def _jsonl_lines(path: Path):
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines (e.g. a trailing newline) are not records
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                yield where, UserError(f"{where}: field '<line>': expected valid JSON, got parse error: {e.msg}")


def read_json_objects(path: str | Path, check: Callable[[Any], str | None], what: str) -> list[dict]:
    """Reads a JSONL file of objects for a command (prompts, chats, examples): a bad line stops with
    `file:line: <what check says>`; `check(item)` returns None when the item is fine."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: file not found")
    items = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{p}:{n}: not valid JSON ({e.msg})") from None
        problem = check(item)
        if problem is not None:
            raise UserError(f"{p}:{n}: {problem}")
        items.append(item)
    if not items:
        raise UserError(f"{p}: no {what}")
    return items


def read_jsonl(path: str | Path, on_error: OnError = "raise", known_graders=None) -> tuple[list[Record], ReadStats]:
    """Reads one record per line. Returns the records and `ReadStats` (skip counts)."""
    _check_mode(on_error)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file (expected a JSONL file of records)")
    stats = ReadStats(str(p))
    return _collect(_jsonl_lines(p), stats, on_error, known_graders), stats


def _from_parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet has no free-form dicts: `grader_args` / `meta` may be stored as JSON strings."""
    row = {k: v for k, v in row.items() if not (k == "meta" and v is None)}
    for key in ("grader_args", "meta"):
        if isinstance(row.get(key), str):
            try:
                row[key] = json.loads(row[key])
            except json.JSONDecodeError:
                pass  # left as a string; validation reports the field
    return row


def read_parquet(path: str | Path, on_error: OnError = "raise", known_graders=None) -> tuple[list[Record], ReadStats]:
    """Reads a Parquet table with the record columns; "line" in errors is the 1-based row number.

    `grader_args` (and `meta`) may be a struct column or a JSON string column: the second is
    what `write_parquet` produces, since heterogeneous dicts do not fit one Arrow struct type.
    """
    _check_mode(on_error)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file (expected a Parquet file of records)")
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # optional dependency: only Parquet users need it
        raise UserError(f"{p}: reading Parquet needs pyarrow (pip install pyarrow)") from e
    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:
        raise UserError(f"{p}: not a readable Parquet file ({type(e).__name__}: {e})") from e
    stats = ReadStats(str(p))
    items = ((f"{p}:{i}", _from_parquet_row(r)) for i, r in enumerate(rows, start=1))
    return _collect(items, stats, on_error, known_graders), stats


def read_arrayrecord(path: str | Path, on_error: OnError = "raise", known_graders=None) -> tuple[list[Record], ReadStats]:
    """Reads an ArrayRecord file through Grain's `ArrayRecordDataSource`: one UTF-8 JSON record per entry.

    ArrayRecord is Grain's native random-access format (what large prompt sets are stored in);
    "line" in errors is the 1-based entry number. Entries are read in one batched call.
    """
    _check_mode(on_error)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file (expected an ArrayRecord file of records)")
    import grain

    try:
        src = grain.sources.ArrayRecordDataSource([str(p)])
        raw = src.__getitems__(list(range(len(src))))
    except RuntimeError as e:  # array_record's C++ reader raises RuntimeError for a corrupt / foreign file
        raise UserError(f"{p}: not a readable ArrayRecord file ({str(e).splitlines()[0]})") from None

    def items():
        for i, data in enumerate(raw, start=1):
            where = f"{p}:{i}"
            try:
                yield where, json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                yield where, UserError(f"{where}: field '<record>': expected UTF-8 JSON, got {type(e).__name__}")

    stats = ReadStats(str(p))
    return _collect(items(), stats, on_error, known_graders), stats


def read_records(path: str | Path, on_error: OnError = "raise", known_graders=None) -> tuple[list[Record], ReadStats]:
    """Dispatches on the suffix: `.jsonl` / `.json` -> JSONL, `.parquet` / `.pq` -> Parquet, `.arrayrecord` ->
    ArrayRecord."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, on_error, known_graders)
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, on_error, known_graders)
    if suffix in (".arrayrecord", ".array_record"):
        return read_arrayrecord(path, on_error, known_graders)
    raise UserError(f"{path}: unknown record file type {suffix!r} (expected .jsonl, .parquet or .arrayrecord)")


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Writes records one per line (UTF-8, no ASCII escaping); returns the count."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_parquet(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Writes records to Parquet with `grader_args` / `meta` as JSON strings; returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for r in records:
        row = dict(r)
        row["grader_args"] = json.dumps(row["grader_args"], ensure_ascii=False)
        row["meta"] = json.dumps(row["meta"], ensure_ascii=False) if "meta" in row else None
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)


def write_arrayrecord(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Writes records as UTF-8 JSON entries of an ArrayRecord file (group size 1: random access); returns the count."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    n = 0
    try:
        for r in records:
            writer.write(json.dumps(r, ensure_ascii=False).encode("utf-8"))
            n += 1
    finally:
        writer.close()
    return n
