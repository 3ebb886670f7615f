"""`traitrl train --preset tiny` end to end in real processes (kill, resume, evals, export) and config validation."""

import json
import subprocess
import sys

import pytest


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


@pytest.mark.slow
def test_killed_mid_save_resumes_exactly(tmp_path):
    """The tiny preset end to end: 4 steps straight vs 2 steps + a process killed while writing checkpoint 3 +
    resume -> bitwise the same weights and data order; evals logged; the export matches transformers' logits."""
    import os

    import numpy as np
    from safetensors.numpy import load_file

    common = ("train", "--preset", "tiny", "--learner.steps", "4", "--checkpoint.save-every", "1",
              "--checkpoint.keep", "4", "--learner.log-samples", "64", "--evals.every", "6")
    straight = _cli(*common, "--run-dir", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    env = {**os.environ, "TRAITRL_KILL_IN_SAVE": "3"}
    killed = subprocess.run([sys.executable, "-m", "engine.commands", *common, "--run-dir", str(tmp_path / "b")],
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert killed.returncode == -9, killed.stderr[-3000:]
    ckpts = tmp_path / "b" / "checkpoints"
    assert (ckpts / "2").is_dir() and not (ckpts / "3").is_dir()  # step 3 never became a checkpoint
    resumed = _cli(*common, "--run-dir", str(tmp_path / "b"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["steps_run"] == 2 and "steps_run" in resumed.stdout
    assert (tmp_path / "b" / "hf" / "tokenizer.json").is_file()

    def metrics(run):  # one row per step (the killed step 3 was dropped on resume and redone), step 0 = evals
        return [json.loads(l) for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert [m["step"] for m in metrics("b")] == [m["step"] for m in metrics("a")] == [0, 1, 2, 3, 4]
    assert [m.get("reward") for m in metrics("b")] == [m.get("reward") for m in metrics("a")]
    a, b = load_file(tmp_path / "a" / "hf" / "model.safetensors"), load_file(tmp_path / "b" / "hf" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    def samples(run):  # the data order and the completions, step by step (step 3 of run b was rerun after the kill)
        rows = [json.loads(l) for l in (tmp_path / run / "samples.jsonl").read_text().splitlines()]
        return {(r["step"], r["id"], r["completion"]) for r in rows}

    assert samples("a") == samples("b") and len({s for s, _, _ in samples("a")}) == 4

    # The in-loop evals ran at step 0 (before the kill) and at the end (after the resume).
    steps = {json.loads(l)["step"] for l in (tmp_path / "b" / "evals.jsonl").read_text().splitlines()}
    assert steps == {0, 4}

    # The export loads in transformers with the same logits as ours.
    import torch
    import transformers

    import models

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "hf", dtype=torch.float32).eval()
    ours = models.load(tmp_path / "b" / "hf")
    ids = np.array([[5, 17, 99, 3, 250, 8, 41]])
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    got = np.asarray(ours.model(ids, attention_mask=np.ones_like(ids, bool)))
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
