"""Helpers shared by the fault-injection suites (test_faults.py: bad inputs, serve; test_kill_resume.py: kills,
checkpoint damage, NaN): the tables they record, small record / JSONL builders, a directory's content hash.

Set TRAITRL_FAULT_REPORT=PATH to get the tables as markdown: PATH.inputs.md and PATH.kills.md (one per table, so
the two suites can run in different processes)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPORT: dict[str, list[tuple]] = {"inputs": [], "kills": []}
HEADS = {"inputs": "| case | exit | the line printed | left behind |\n|---|---|---|---|\n",
         "kills": "| case | resumed from | bitwise equal to the uninterrupted run |\n|---|---|---|\n"}


def record_row(kind: str, row: tuple) -> None:
    REPORT[kind].append(row)
    path = os.environ.get("TRAITRL_FAULT_REPORT")
    if path:
        text = HEADS[kind] + "".join("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |\n"
                                     for r in REPORT[kind])
        Path(f"{path}.{kind}.md").write_text(text)


def record(**over) -> dict:
    r = {"id": "q1", "messages": [{"role": "user", "content": "Name a number."}], "kind": "regular",
         "domain": "general", "trait": None, "grader": "numeric", "grader_args": {"answer": 5, "rel_tol": 1.0}}
    r.update(over)
    return r


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}
