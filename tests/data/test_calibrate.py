"""Difficulty calibration: keeps exactly the levels whose success rate lets GRPO groups differ."""

from __future__ import annotations

import json
import random

import pytest

from data.calibrate import LOW, calibrate, calibration_records, levels_flag, report, table
from engine.errors import UserError
from rl.rewards import format_reward, record_reward

PLANTED = {"arith:1": 0.02, "arith:2": 0.5, "mc:1": 0.97}


def planted_completions(records, G):
    """A fake policy: each completion is right with its level's planted probability, else a wrong answer."""
    g = random.Random(0)
    out = []
    for r in records:
        p = PLANTED[f"{r['meta']['task']}:{r['meta']['level']}"]
        a = r["grader_args"]["answer"]
        bad = next(k for k in "AB" if k != a) if r["grader"] == "multiple_choice" else a + 1
        out.append([f"Let me think.\nAnswer: {a if g.random() < p else bad}" for _ in range(G)])
    return out


def test_calibration_keeps_exactly_the_level_in_range():
    cells = calibration_records(tuple(PLANTED), n=40)
    assert list(cells) == ["arith:1", "arith:2", "mc:1"] and all(len(v) == 40 for v in cells.values())
    calls = []

    def complete(records, G):
        calls.append(len(records))
        return planted_completions(records, G)

    res = calibrate(cells, complete, record_reward, generations=8, format_reward=format_reward)
    assert calls == [120]  # every level's prompts in one call
    by = {r.name: r for r in res}
    for name, p in PLANTED.items():
        assert by[name].samples == 320 and abs(by[name].success - p) < 0.08, (name, by[name].success)
        assert by[name].format == 1.0
    assert [r.name for r in res if r.kept] == ["arith:2"] and levels_flag(res) == "arith:2"
    assert by["arith:1"].zero_spread > 0.7 and by["arith:2"].zero_spread < 0.1
    assert "arith:2" in table(res)
    rep = report(res, {"low": LOW}, 1.0)
    assert rep["kept"] == ["arith:2"] and rep["flag"] == "--data.levels arith:2"
    json.dumps(rep, allow_nan=False)


def test_ungraded_completions_are_left_out():
    cells = calibration_records(("arith:2",), n=3)

    def half_graded(prompts, completions, records):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    (r,) = calibrate(cells, lambda recs, G: [["x"] * G for _ in recs], half_graded, generations=4)
    assert r.samples == 6 and r.success == 1.0 and r.zero_spread == 1.0 and not r.kept and r.format is None
    with pytest.raises(ValueError, match="generations"):
        calibrate(cells, lambda recs, G: [], record_reward, generations=1)


def test_command_defaults_follow_train_and_bad_options_are_user_errors():
    from engine.commands.data import TRAIN_BUCKETS, CalibrateCommand
    from engine.commands.train import PRESETS

    s, c = PRESETS["default"].sampling, CalibrateCommand()
    assert (c.temperature, c.top_p, c.max_new_tokens, TRAIN_BUCKETS) == (s.temperature, s.top_p, s.max_new_tokens,
                                                                         s.prompt_buckets)
    with pytest.raises(UserError, match="option 'levels': expected"):
        CalibrateCommand(levels=("arith:7",))
    with pytest.raises(UserError, match="option '--generations'"):
        CalibrateCommand(generations=1)
    with pytest.raises(UserError, match="'--low' and '--high'"):
        CalibrateCommand(low=0.9, high=0.1)


def test_run_calibrate_end_to_end_on_the_tiny_model(tmp_path, capsys):
    from engine.commands.data import CalibrateCommand, run_calibrate

    out = tmp_path / "sub" / "calibration.json"
    rep = run_calibrate(CalibrateCommand(model="tiny", levels=("arith:1", "mc:1"), items=2, generations=2,
                                         max_new_tokens=4, out=out))
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rep))
    assert [x["name"] for x in saved["levels"]] == ["arith:1", "mc:1"]
    for x in saved["levels"]:
        assert x["items"] == 2 and x["samples"] == 4 and len(x["completions"]) == 2 and 0.0 <= x["success"] <= 1.0
    assert saved["settings"]["model"] == "tiny" and saved["settings"]["generations"] == 2
    printed = capsys.readouterr().out
    assert "arith:1" in printed and "zero_spread" in printed and str(out) in printed
