"""`traitrl train --preset tiny` end to end in a real process, resume, and config validation (exit 2)."""

import json
import subprocess
import sys


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def test_train_tiny_then_resume(tmp_path):
    run = tmp_path / "run"
    proc = _cli("train", "--preset", "tiny", "--run-dir", str(run), "--learner.steps", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps_run" in proc.stdout
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert (run / "hf" / "model.safetensors").is_file() and (run / "hf" / "tokenizer.json").is_file()
    again = _cli("train", "--preset", "tiny", "--run-dir", str(run), "--learner.steps", "5", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert json.loads((run / "summary.json").read_text())["steps_run"] == 2


def test_train_validation_errors(tmp_path):
    bad = _cli("train", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--sampling.max-new-tokens", "7")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "sampling.max-new-tokens" in bad.stderr
    bad = _cli("train", "--preset", "nope")
    assert bad.returncode == 2 and "--preset" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("train", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--grpo.num-generations", "1",
               "--sampling.max-new-tokens", "16")
    assert bad.returncode == 2 and "num_generations" in bad.stderr and "Traceback" not in bad.stderr
