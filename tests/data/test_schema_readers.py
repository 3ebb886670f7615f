"""Record schema and readers: a bad line names file:line and the field; skip mode counts."""

from __future__ import annotations

import json
import logging

import pytest

from data.readers import read_jsonl, read_parquet, read_records, write_jsonl, write_parquet
from data.schema import validate_record
from engine.errors import UserError


def rec(**over):
    r = {
        "id": "r1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "kind": "regular",
        "domain": "math",
        "trait": None,
        "grader": "numeric",
        "grader_args": {"answer": 4},
    }
    r.update(over)
    return r


@pytest.mark.parametrize(
    "bad, field",
    [
        (rec(kind="other"), "kind"),
        (rec(kind="trait"), "trait"),  # a trait record needs a known trait
        (rec(trait="fairness"), "trait"),  # a regular record must have trait null
        (rec(messages=[]), "messages"),
        (rec(messages=[{"role": "bot", "content": "x"}]), "messages[0].role"),
        (rec(messages=[{"role": "user", "content": 3}]), "messages[0].content"),
        (rec(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]), "messages[1].role"),
        (rec(grader_args=[1]), "grader_args"),
        (rec(id=""), "id"),
        (rec(extra=1), "extra"),
        ({k: v for k, v in rec().items() if k != "grader"}, "grader"),
    ],
)
def test_validate_record_names_the_field(bad, field):
    with pytest.raises(UserError) as e:
        validate_record(bad, "f.jsonl:3")
    msg = str(e.value)
    assert msg.startswith("f.jsonl:3: field '") and f"'{field}'" in msg and "\n" not in msg


def test_validate_known_graders():
    validate_record(rec(), "x", known_graders=frozenset({"numeric"}))
    with pytest.raises(UserError, match="'grader'"):
        validate_record(rec(grader="nope"), "x", known_graders=frozenset({"numeric"}))


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_jsonl_bad_line_raises_with_file_line_and_field(tmp_path):
    p = tmp_path / "train.jsonl"
    _write(p, [rec(id="a"), rec(id="b"), rec(id="c", kind="trait")])
    with pytest.raises(UserError, match=rf"{p}:3: field 'trait'"):
        read_jsonl(p)
    _write(p, [rec(id="a"), "{not json", rec(id="c")])
    with pytest.raises(UserError, match=rf"{p}:2: field '<line>': expected valid JSON"):
        read_records(p)


def test_jsonl_skip_mode_counts_and_logs(tmp_path, caplog):
    p = tmp_path / "train.jsonl"
    _write(p, [rec(id="a"), "{not json", "", rec(id="c", grader_args="x"), rec(id="d")])
    with caplog.at_level(logging.WARNING):
        records, stats = read_jsonl(p, on_error="skip")
    assert [r["id"] for r in records] == ["a", "d"]
    assert (stats.kept, stats.skipped) == (2, 2)
    assert f"{p}:2" in stats.first_error and "skipped 2 bad line(s)" in caplog.text


def test_parquet_round_trip_and_bad_row(tmp_path):
    pytest.importorskip("pyarrow")
    rows = [
        rec(id="a"),
        rec(id="b", meta={"split": "train"}),
        rec(id="c", kind="trait", trait="fairness", grader="fairness", grader_args={"expected": "yes"}),
    ]
    p = tmp_path / "t.parquet"
    assert write_parquet(rows, p) == 3
    back, stats = read_parquet(p)
    assert back == rows and stats.skipped == 0
    write_parquet([rows[0], rec(id="b", kind="nope")], p)
    with pytest.raises(UserError, match=rf"{p}:2: field 'kind'"):
        read_records(p)
    assert len(read_records(p, on_error="skip")[0]) == 1


def test_reader_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="unknown record file type"):
        read_records(tmp_path / "x.csv")
    with pytest.raises(UserError, match="data.on_error"):
        read_jsonl(tmp_path / "x.jsonl", on_error="ignore")
    p = tmp_path / "ok.jsonl"
    assert write_jsonl([rec()], p) == 1 and read_jsonl(p)[0] == [rec()]
