"""`traitrl train` config validation in real processes (one line, exit 2, no traceback).

The end-to-end runs of the tiny preset (kill -9 at a checkpoint, mid-step and after the evals, each resumed
bitwise; damaged checkpoints; NaN; the export read back by transformers) are the fault suite,
tests/engine/test_kill_resume.py.
"""

import subprocess
import sys


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine.commands", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def test_train_validation_errors(tmp_path):
    bad = _cli("train", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--sampling.max-new-tokens", "7",
               "--grpo.max-completion-length", "16")  # the completion length given twice, differently
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "sampling.max_new_tokens" in bad.stderr and "grpo.max_completion_length" in bad.stderr
    bad = _cli("train", "--preset", "nope")
    assert bad.returncode == 2 and "--preset" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("train", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--grpo.num-generations", "1",
               "--sampling.max-new-tokens", "16")
    assert bad.returncode == 2 and "num_generations" in bad.stderr and "Traceback" not in bad.stderr


def test_one_stderr_line_in_a_real_process(tmp_path):
    """What a user sees in a terminal or a pipe: the parser's error and a data error after the heavy imports are
    each the only stderr line, and the run directory is not created."""
    import json

    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"id": "q1", "messages": [{"role": "user", "content": "2+2?"}], "kind": "regular",
                                   "domain": "math", "trait": None, "grader": "nosuchgrader",
                                   "grader_args": {"answer": 4}}) + "\n")
    for args, expect in ((["--learner.stepz", "3"], "did you mean --learner.steps?"),
                         (["--data.regular-files", str(records)], f"{records}:1: field 'grader'")):
        bad = _cli("train", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), *args)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.splitlines() == [bad.stderr.strip()] and bad.stderr.startswith("traitrl: error: "), bad.stderr
        assert expect in bad.stderr and not (tmp_path / "r").exists()


def test_memory_plan_alone_and_a_run_that_cannot_fit(tmp_path):
    """`--plan` prints the per-phase plan and exits 0 with nothing written; a run whose plan fits nowhere stops
    before any weight is read, with one line naming what to change, exit 2, and no run directory."""
    import time

    run = tmp_path / "r"
    ok = _cli("train", "--preset", "tiny", "--run-dir", str(run), "--plan")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "saved activations" in ok.stdout and "M=1, remat=none" in ok.stdout and not run.exists()
    t0 = time.perf_counter()
    bad = _cli("train", "--preset", "tiny", "--run-dir", str(run), "--data.batch-size", "512",
               "--sampling.max-new-tokens", "100000")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    line, = bad.stderr.strip().splitlines()
    assert line.startswith("traitrl: error: memory plan: nothing fits") and "sampling.max_new_tokens" in line
    assert not run.exists() and time.perf_counter() - t0 < 60
    # A fixed micro-batch count the batch cannot split into is named as such.
    bad = _cli("train", "--preset", "tiny", "--run-dir", str(run), "--optim.micro-batches", "3", "--plan")
    assert bad.returncode == 2 and "optim.micro_batches=3" in bad.stderr and "Traceback" not in bad.stderr
