"""The fault-injection suite (issue 16), part 2: kill -9, checkpoint damage and NaN, each failing safe.

kill -9 (fault points of `engine.checkpoint`, `TRAITRL_FAULTS`) at a checkpoint save, in the middle of a step,
and right after the evals (step 0, before any checkpoint, and step 2, before its checkpoint); each damage mode
of a checkpoint; a NaN injected into the loss. Each resumed run must match the uninterrupted one bitwise
(export, samples, metrics, evals), with one log row per step.

The runs are the tiny preset on prompts a grader can tell apart ("any number" answers: some completions of a
random model contain a number, some do not), so rewards vary within groups and the weights really move: a
bitwise match of the export means something.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.commands.main import main

from tests.engine.faults_common import REPO, jsonl, record, tree
from tests.engine.faults_common import record_row as _record


# ---- kill -9, checkpoint damage, NaN: end to end on the tiny preset -------------------------------------------


STEPS = 4


def _base(data: str) -> list[str]:
    return ["train", "--preset", "tiny", "--learner.steps", str(STEPS), "--checkpoint.save-every", "1",
            "--checkpoint.keep", "2", "--evals.every", "2", "--evals.limit", "4", "--learner.log-samples", "64",
            "--data.regular-files", data, "--data.trait-fraction", "0", "--learner.no-progress"]


def _cli(args, faults: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAITRL_PEAK_FLOPS": "1e11", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "PYTHONPATH": str(REPO)}
    env.pop("TRAITRL_FAULTS", None)
    if faults:
        env["TRAITRL_FAULTS"] = faults
    return subprocess.run([sys.executable, "-m", "engine.commands", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def numbers(tmp_path_factory) -> str:
    """Prompts whose numeric grader passes any completion that names a number: rewards vary within a group."""
    path = tmp_path_factory.mktemp("data") / "numbers.jsonl"
    jsonl(path, [record(id=f"n{i:02d}", messages=[{"role": "user", "content": f"Name a number near {i}."}])
                 for i in range(40)])
    return str(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, numbers) -> Path:
    """The uninterrupted run everything else is compared with."""
    run = tmp_path_factory.mktemp("reference") / "run"
    proc = _cli([*_base(numbers), "--run-dir", str(run)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def _rows(run: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (run / name).read_text().splitlines()]


def assert_same_run(run: Path, ref: Path) -> None:
    """Bitwise the same weights, the same completions step by step, the same curves and evals, one row per step."""
    from safetensors.numpy import load_file

    a, b = load_file(ref / "hf" / "model.safetensors"), load_file(run / "hf" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert [m["step"] for m in _rows(run, "metrics.jsonl")] == list(range(STEPS + 1))  # one row per step
    keys = ("reward", "reward_std", "loss", "grad_norm", "kl", "train/skipped_steps")
    assert ([{k: m.get(k) for k in keys} for m in _rows(run, "metrics.jsonl")]
            == [{k: m.get(k) for k in keys} for m in _rows(ref, "metrics.jsonl")])
    samples = lambda r: sorted((s["step"], s["id"], s["completion"], tuple(s["reward"]))  # noqa: E731
                               for s in _rows(r, "samples.jsonl"))
    assert samples(run) == samples(ref)  # the same data order and completions, no step logged twice
    evals = lambda r: sorted((e["step"], e["benchmark"], e["condition"], e["score"])  # noqa: E731
                             for e in _rows(r, "evals.jsonl"))
    assert evals(run) == evals(ref) and {e[0] for e in evals(run)} == {0, 2, 4}


def _resumed_from(stderr: str) -> str:
    for line in stderr.splitlines():
        if "resuming from checkpoint" in line:
            return line.split("resuming from checkpoint", 1)[1].split(";")[0].strip() + " (fallback)"
        if "resumed from step" in line:
            return line.rsplit(" ", 1)[1]
        if "no checkpoint yet" in line:
            return "none: started over"
    return "?"


def test_reference_run_moves_the_weights_and_exports_for_transformers(reference):
    """The weights change (a bitwise match below is not trivial) and the export loads in transformers with our
    logits."""
    import torch
    import transformers

    import models

    grads = [m["grad_norm"] for m in _rows(reference, "metrics.jsonl")[1:]]
    assert all(g > 0 for g in grads), grads
    hf = transformers.AutoModelForCausalLM.from_pretrained(reference / "hf", dtype=torch.float32).eval()
    ours = models.load(reference / "hf")
    ids = np.array([[5, 17, 99, 3, 250, 8, 41]])
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    got = np.asarray(ours.model(ids, attention_mask=np.ones_like(ids, bool)))
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


KILLS = [  # (case, fault, the checkpoint the resume must start from: exact, or the newest it may be)
    ("kill -9 while writing checkpoint 3", "kill-save@3", "2"),
    ("kill -9 in the middle of step 3", "kill-step@3", "<=2"),
    ("kill -9 after the step-0 evals, no checkpoint yet", "kill-eval@0", "none: started over"),
    ("kill -9 after the step-2 evals, before checkpoint 2", "kill-eval@2", "<=1"),
]


@pytest.fixture(scope="module")
def killed_runs(reference, numbers, tmp_path_factory) -> dict[str, tuple]:
    """Each kill case as a chain of two processes: the run killed at its fault point, then `--resume`. Two chains
    run at a time (the compiled programs come from the reference run's cache)."""
    from concurrent.futures import ThreadPoolExecutor

    base = tmp_path_factory.mktemp("killed")

    def chain(faults: str):
        run = base / faults.replace("@", "-")
        args = [*_base(numbers), "--run-dir", str(run)]
        killed = _cli(args, faults)
        steps = sorted(p.name for p in (run / "checkpoints").iterdir()) if (run / "checkpoints").is_dir() else []
        resumed = _cli([*args, "--resume"]) if killed.returncode == -9 else None
        return run, killed, steps, resumed

    with ThreadPoolExecutor(2) as pool:
        return dict(zip([k[1] for k in KILLS], pool.map(chain, [k[1] for k in KILLS]), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("case, faults, expect", KILLS, ids=[k[1] for k in KILLS])
def test_killed_run_resumes_bitwise(killed_runs, reference, case, faults, expect):
    run, killed, steps_at_kill, resumed = killed_runs[faults]
    assert killed.returncode == -9, killed.stderr[-3000:]
    if faults == "kill-save@3":
        assert "2" in steps_at_kill and "3" not in steps_at_kill  # step 3 never became a checkpoint
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = _resumed_from(resumed.stderr)
    _record("kills", (case, got, "yes (export, samples, metrics, evals)"))
    if expect.startswith("<="):  # the newest save may still have been in flight (async) when the kill came
        assert got == "none: started over" or (got.isdigit() and int(got) <= int(expect[2:])), got
    else:
        assert got == expect, resumed.stderr[-2000:]
    assert_same_run(run, reference)
    assert (run / "hf" / "tokenizer.json").is_file() and "Traceback" not in resumed.stderr


def _copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run that lives at its new place (config.json's run_dir follows)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, "run_dir": str(dst)}, indent=2))
    for p in ("hf", "summary.json", "report.md"):  # the outputs the resumed run must write again
        shutil.rmtree(dst / p) if (dst / p).is_dir() else (dst / p).unlink(missing_ok=True)
    return dst


def _in_process(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["truncated", "no-metadata", "empty-extra"])
def test_damaged_latest_checkpoint_falls_back_bitwise(reference, numbers, tmp_path, mode, caplog):
    """The latest checkpoint (4) damaged three ways: --resume falls back to 3, says so in one line, redoes step 4
    and ends bitwise where the uninterrupted run did."""
    import logging

    from tests.engine.test_checkpoint import damage

    run = _copy_run(reference, tmp_path / "run")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["3", "4"]
    damage(run / "checkpoints" / "4", mode)
    with caplog.at_level(logging.INFO):
        code, err = _in_process([*_base(numbers), "--run-dir", str(run), "--resume"])
    assert code == 0, err
    lines = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
    assert len(lines) == 1 and "resuming from checkpoint 3" in lines[0], lines
    # the failed reads of checkpoint 4 left no asyncio task behind to log a page of TensorStore spec later
    import gc

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage()[:200] for r in caplog.records]
    _record("kills", (f"checkpoint 4 damaged: {mode}", "3 (fallback)", "yes (export, samples, metrics, evals)"))
    assert (run / "checkpoints.damaged" / "4").is_dir()
    assert_same_run(run, reference)


@pytest.mark.slow
def test_no_checkpoint_restores_is_one_line_and_changes_nothing(reference, numbers, tmp_path):
    from tests.engine.test_checkpoint import damage

    run = _copy_run(reference, tmp_path / "run")
    damage(run / "checkpoints" / "4", "truncated")
    damage(run / "checkpoints" / "3", "no-metadata")
    before = tree(run)
    code, err = _in_process([*_base(numbers), "--run-dir", str(run), "--resume"])
    lines = err.splitlines()
    _record("kills", ("checkpoints 3 and 4 both damaged", "none: one-line error, exit 2", "n/a (run unchanged)"))
    assert code == 2 and len(lines) == 1 and lines[0].startswith("traitrl: error: ") and "no checkpoint restores" in \
        lines[0], err
    assert tree(run) == before


@pytest.mark.slow
def test_nan_loss_is_skipped_and_too_many_stop_the_run(numbers, tmp_path, monkeypatch):
    """A NaN injected into the loss of step 2 (its advantages poisoned, `nan-loss@2`): the update is skipped inside
    the jitted step (checkpoint 2 holds exactly checkpoint 1's parameters and optimizer state), counted in
    train/skipped_steps, and the run goes on; a NaN at steps 2 and 3 with --learner.max-consecutive-skips 1 stops
    at step 3 with one line."""
    import jax

    from engine.checkpoint import Checkpointer
    from engine.commands.common import build_policy
    from engine.train_state import OptimConfig, init_state

    args = [*_base(numbers), "--checkpoint.keep", "4", "--evals.every", "0"]
    monkeypatch.setenv("TRAITRL_FAULTS", "nan-loss@2")
    code, err = _in_process([*args, "--run-dir", str(tmp_path / "one")])
    assert code == 0, err
    rows = _rows(tmp_path / "one", "metrics.jsonl")
    assert [r["train/skipped_steps"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert np.isnan(rows[1]["loss"]) and all(np.isfinite(r["loss"]) for r in (rows[0], rows[2], rows[3]))

    _, template = init_state(build_policy("tiny", None).model, OptimConfig(learning_rate=1e-3))
    ckpt = Checkpointer(tmp_path / "one" / "checkpoints", read_only=True)
    states = {s: ckpt.restore(template, s)[0] for s in (1, 2, 3)}
    ckpt.close()
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa
    assert same(states[1].params, states[2].params) and same(states[1].opt_state, states[2].opt_state)
    assert not same(states[2].params, states[3].params)  # training went on after the skipped step
    _record("kills", ("NaN loss at step 2", "n/a: update skipped in the step, run completed",
                      "checkpoint 2 == checkpoint 1 (params, optimizer state)"))

    monkeypatch.setenv("TRAITRL_FAULTS", "nan-loss@2,nan-loss@3")
    code, err = _in_process([*args, "--run-dir", str(tmp_path / "two"), "--learner.max-consecutive-skips", "1"])
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("traitrl: error: step 3: 2 steps in a row had a non-finite loss"), lines[0]
    assert not (tmp_path / "two" / "hf").exists()  # nothing exported
    _record("kills", ("NaN loss at steps 2 and 3, max 1 in a row", "n/a: stopped at step 3, exit 2", lines[0]))
