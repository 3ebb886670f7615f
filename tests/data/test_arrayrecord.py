"""ArrayRecord record files, read through Grain: round trip, bad entries, corrupt files, the data pipeline."""

import json

import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from data.config import DataConfig
from data.generator import generate_trait_records
from data.pipeline import load_sources
from data.readers import read_arrayrecord, read_records, write_arrayrecord
from engine.errors import UserError


def test_round_trip_and_bad_entries(tmp_path):
    rows = generate_trait_records(1, seed=0, split="train")[:20]
    p = tmp_path / "t.arrayrecord"
    assert write_arrayrecord(rows, p) == 20
    back, stats = read_records(p)
    assert back == rows and stats.kept == 20 and stats.skipped == 0

    bad = tmp_path / "bad.arrayrecord"
    w = ArrayRecordWriter(str(bad), "group_size:1")
    for data in (rows[0], {**rows[1], "kind": "nope"}, b"\xff not json", rows[2]):
        w.write(data if isinstance(data, bytes) else json.dumps(data).encode())
    w.close()
    with pytest.raises(UserError, match=rf"{bad}:2: field 'kind'"):
        read_arrayrecord(bad)
    kept, stats = read_arrayrecord(bad, on_error="skip")
    assert kept == [rows[0], rows[2]] and stats.skipped == 2 and "UTF-8 JSON" in stats.errors[1]


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_arrayrecord(tmp_path / "missing.arrayrecord")
    junk = tmp_path / "junk.arrayrecord"
    junk.write_bytes(b"this is not an array record file")
    with pytest.raises(UserError, match="not a readable ArrayRecord file"):
        read_records(junk)


def test_pipeline_reads_arrayrecord_sources(tmp_path):
    trait = generate_trait_records(1, seed=0, split="train")
    p = tmp_path / "trait.arrayrecord"
    write_arrayrecord(trait, p)
    got, _ = load_sources(DataConfig(trait_files=(str(p),), n_regular=10))
    assert [r["id"] for r in got] == [r["id"] for r in trait]
