"""`traitrl train --preset tiny` end to end in a real process, resume, and config validation (exit 2)."""

import json
import subprocess
import sys

import pytest


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


@pytest.mark.slow
def test_killed_mid_save_resumes_exactly(tmp_path):
    """4 steps straight vs 2 steps + a process killed while writing checkpoint 3 + resume: bitwise the same."""
    import os

    import numpy as np
    from safetensors.numpy import load_file

    common = ("train", "--preset", "tiny", "--learner.steps", "4", "--checkpoint.save-every", "1",
              "--checkpoint.keep", "4", "--learner.log-samples", "64")
    straight = _cli(*common, "--run-dir", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    env = {**os.environ, "TRAITRL_KILL_IN_SAVE": "3"}
    killed = subprocess.run([sys.executable, "-m", "engine.cli", *common, "--run-dir", str(tmp_path / "b")],
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert killed.returncode == -9, killed.stderr[-3000:]
    ckpts = tmp_path / "b" / "checkpoints"
    assert (ckpts / "2").is_dir() and not (ckpts / "3").is_dir()  # step 3 never became a checkpoint
    resumed = _cli(*common, "--run-dir", str(tmp_path / "b"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(tmp_path / "a" / "hf" / "model.safetensors"), load_file(tmp_path / "b" / "hf" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    def samples(run):  # the data order and the completions, step by step (step 3 of run b was rerun after the kill)
        rows = [json.loads(l) for l in (tmp_path / run / "samples.jsonl").read_text().splitlines()]
        return {(r["step"], r["id"], r["completion"]) for r in rows}

    assert samples("a") == samples("b") and len({s for s, _, _ in samples("a")}) == 4
