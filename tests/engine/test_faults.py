"""The fault-injection suite (issue 16): bad inputs, kills, checkpoint damage and NaN, each failing safe.

1. A table of bad inputs across the commands, run in process (`main([...])`): each exits 2 with exactly one
   stderr line starting "traitrl: error:", no traceback, and leaves nothing behind (its case directory stays
   empty; a run directory given to --resume is byte-for-byte unchanged).
2. `traitrl serve`: a body shorter than its Content-Length gets a 408 within the read timeout; a client that
   disconnects leaves no traceback.
3. kill -9 (fault points of `engine.checkpoint`, `TRAITRL_FAULTS`) at a checkpoint save, in the middle of a
   step, and right after the evals (step 0, before any checkpoint, and step 2, before its checkpoint); each
   damage mode of a checkpoint; a NaN injected into the loss. Each resumed run must match the uninterrupted one
   bitwise (export, samples, metrics, evals), with one log row per step.

The runs are the tiny preset on prompts a grader can tell apart ("any number" answers: some completions of a
random model contain a number, some do not), so rewards vary within groups and the weights really move: a
bitwise match of the export means something. Set TRAITRL_FAULT_REPORT=PATH to get the tables as markdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.commands.main import main

REPO = Path(__file__).resolve().parents[2]
REPORT: dict[str, list[tuple]] = {"inputs": [], "kills": []}


def _record(kind: str, row: tuple) -> None:
    REPORT[kind].append(row)
    path = os.environ.get("TRAITRL_FAULT_REPORT")
    if path:
        heads = {"inputs": "| case | exit | the line printed | left behind |\n|---|---|---|---|\n",
                 "kills": "| case | resumed from | bitwise equal to the uninterrupted run |\n|---|---|---|\n"}
        text = "".join(f"{heads[k]}" + "".join("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |\n"
                                               for r in REPORT[k]) + "\n" for k in REPORT if REPORT[k])
        Path(path).write_text(text)


def record(**over) -> dict:
    r = {"id": "q1", "messages": [{"role": "user", "content": "Name a number."}], "kind": "regular",
         "domain": "general", "trait": None, "grader": "numeric", "grader_args": {"answer": 5, "rel_tol": 1.0}}
    r.update(over)
    return r


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The bad (and a few good) input files the table refers to, and a run directory to --resume."""
    from engine.commands.common import unset_derived
    from engine.commands.main import parse
    from engine.commands.train import PRESETS, TrainConfig, config_dict
    from evals.persona.directions import Direction

    d = tmp_path_factory.mktemp("inputs")
    p = {"good": jsonl(d / "good.jsonl", [record(id=f"q{i}") for i in range(3)]),
         "bad_json": jsonl(d / "bad_json.jsonl", [record(), '{"id": "q2", "messages": ']),
         "no_field": jsonl(d / "no_field.jsonl", [record(id="q1"), {k: v for k, v in record(id="q2").items()
                                                                   if k != "grader_args"}]),
         "bad_grader": jsonl(d / "bad_grader.jsonl", [record(id="q1"), record(id="q2"), record(id="q3",
                                                                                          grader="nosuchgrader")]),
         "bad_trait": jsonl(d / "bad_trait.jsonl", [record(kind="trait", trait="kindness", domain="health")]),
         "csv": d / "records.csv",
         "chats_good": jsonl(d / "chats.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "hello"}]}]),
         "chats_bad": jsonl(d / "chats_bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}]),
         "garbage_npz": d / "garbage.npz", "no_config_dir": d / "not_a_model", "cut_gguf": d / "cut.gguf"}
    p["csv"].write_text("id,grader\nq1,numeric\n")
    p["garbage_npz"].write_bytes(b"this is not a direction")
    p["no_config_dir"].mkdir()
    # a GGUF header that promises 5 tensors and 2 metadata entries, then ends
    p["cut_gguf"].write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 5, 2) + b"\x00" * 12)
    # the tiny preset's model: 2 layers of width 64
    p["narrow_direction"] = Direction("persona", 1, np.ones(7, np.float32)).save(d / "narrow.npz")
    p["deep_direction"] = Direction("persona", 9, np.ones(64, np.float32)).save(d / "deep.npz")
    # a run to --resume: what `traitrl train --preset tiny --run-dir RUN` writes before its first step
    run = d / "run"
    run.mkdir()
    cfg = parse(TrainConfig, unset_derived(PRESETS["tiny"]), ["--run-dir", str(run)], "traitrl train")
    (run / "config.json").write_text(json.dumps(config_dict(cfg), indent=2))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/xstest/score": 0.5}) + "\n")
    p["run"] = run
    p["base"] = tmp_path_factory.mktemp("cases")
    return {k: str(v) for k, v in p.items()}


def T(*extra):  # `traitrl train` on the tiny preset into the case's own (fresh) run directory
    return ["train", "--preset", "tiny", "--run-dir", "{fresh}", *extra]


def R(*extra):  # `traitrl train --resume` of the inputs' run directory
    return ["train", "--preset", "tiny", "--run-dir", "{run}", "--resume", *extra]


# (case, argv with {placeholders}, a substring the one line must hold)
CASES = [
    # the option parser
    ("unknown command", ["trian"], "unknown command 'trian'"),
    ("unknown subcommand", ["data", "previw"], "did you mean preview?"),
    ("unknown option", T("--learner.stepz", "3"), "unknown option '--learner.stepz' (did you mean --learner.steps?)"),
    ("unknown nested option", ["eval", "--judge.base-ur", "x"], "did you mean --judge.base-url?"),
    ("wrong type (int)", T("--learner.steps", "abc"), "option '--learner.steps': expected an integer, got 'abc'"),
    ("wrong type (float)", T("--optim.learning-rate", "1e-3x"), "expected a number, got '1e-3x'"),
    ("wrong type (optional float)", T("--data.trait-fraction", "half"), "expected a number, got 'half'"),
    ("missing value", T("--learner.steps"), "option '--learner.steps': missing value"),
    ("bad Literal", T("--dtype", "float16"), "expected one of float32, bfloat16, got 'float16'"),
    ("bad Literal in a tuple", T("--evals.conditions", "plain", "nope"), "got 'nope'"),
    ("tuple arity", T("--mesh", "1", "1"), "option '--mesh': expected 3 values, got 2"),
    ("value for a flag", T("--resume", "yes"), "option '--resume' is a flag and takes no value"),
    ("stray argument", T("extra"), "unexpected argument 'extra'"),
    ("unknown preset", ["train", "--preset", "tinyy"], "did you mean tiny?"),
    ("preset without a name", ["train", "--preset"], "option '--preset': expected a preset name"),
    ("missing required option", ["sft"], "missing required option '--data PATH'"),
    # non-finite and out-of-range numbers
    ("NaN learning rate", T("--optim.learning-rate", "nan"), "'optim.learning_rate': expected a finite number"),
    ("infinite learning rate", T("--optim.learning-rate", "inf"), "expected a finite number, got inf"),
    ("negative learning rate", T("--optim.learning-rate", "-1e-3"), "expected > 0"),
    ("Adam beta2 >= 1", T("--optim.b2", "1.5"), "'optim.b2': expected a number in [0.0, 1.0)"),
    ("negative grad clip", T("--optim.max-grad-norm", "-1"), "'optim.max_grad_norm' >= 0"),
    ("NaN temperature", T("--sampling.temperature", "nan"), "temperature"),
    ("infinite temperature", T("--sampling.temperature", "inf"), "'--sampling.temperature': expected a finite"),
    ("NaN beta", T("--grpo.beta", "nan"), "beta"),
    ("dose above 1", T("--data.trait-fraction", "1.5"), "'data.trait_fraction': expected a number in [0, 1]"),
    ("infinite dose", T("--data.trait-fraction", "inf"), "'data.trait_fraction'"),
    ("zero steps", T("--learner.steps", "0"), "learner.steps"),
    ("negative skip limit", T("--learner.max-consecutive-skips", "-1"), "'learner.max_consecutive_skips'"),
    ("zero checkpoints kept", T("--checkpoint.keep", "0"), "checkpoint.keep"),
    ("contradicting lengths", T("--sampling.max-new-tokens", "7", "--grpo.max-completion-length", "16"),
     "contradicts 'sampling.max_new_tokens'"),
    ("one generation per group", T("--grpo.num-generations", "1"), "num_generations"),
    ("mesh of zeros", T("--mesh", "0", "1", "1"), "expected three positive sizes"),
    ("mesh larger than the devices", T("--mesh", "3", "3", "3"), "27"),
    # the model
    ("model path missing", T("--model", "/nonexistent/model"), "unknown model '/nonexistent/model'"),
    ("model dir without config", T("--model", "{no_config_dir}"), "missing config.json"),
    ("truncated GGUF", T("--model", "{cut_gguf}"), "{cut_gguf}: truncated or corrupt GGUF file"),
    # data files: every record through the schema and the grader registry, file:line
    ("data file missing", T("--data.regular-files", "/nonexistent.jsonl"), "/nonexistent.jsonl: no such file"),
    ("data line not JSON", T("--data.regular-files", "{bad_json}"), "{bad_json}:2: field '<line>'"),
    ("data record missing a field", T("--data.regular-files", "{no_field}"), "{no_field}:2: field 'grader_args'"),
    ("unknown grader", T("--data.regular-files", "{bad_grader}"), "{bad_grader}:3: field 'grader'"),
    ("trait record with an unknown trait", T("--data.trait-files", "{bad_trait}"), "{bad_trait}:1: field 'trait'"),
    ("regular record in trait files", T("--data.trait-files", "{good}"), "record q0: field 'kind'"),
    ("unknown record file type", T("--data.regular-files", "{csv}"), "unknown record file type '.csv'"),
    # evals and the persona monitor
    ("unknown benchmark", T("--evals.benchmarks", "nosuch"), "benchmark 'nosuch': unknown"),
    ("direction file missing", T("--monitor.direction", "/nonexistent.npz"), "direction file not found"),
    ("direction file garbage", T("--monitor.direction", "{garbage_npz}"), "not a direction file"),
    ("direction of another width", T("--monitor.direction", "{narrow_direction}"),
     "is at layer 1 with width 7; the model has residual layers 0..2 of width 64"),
    ("direction layer out of range", T("--monitor.direction", "{deep_direction}"), "is at layer 9 with width 64"),
    # run directories and --resume
    ("fresh run into a used dir", ["train", "--preset", "tiny", "--run-dir", "{run}"], "run directory is not empty"),
    ("--resume of a missing dir", T("--resume"), "is not a run directory (no config.json)"),
    ("--resume with another beta", R("--grpo.beta", "0.1"), "option '--grpo.beta' is 0.1 (given) but the run"),
    ("--resume with another model", R("--model", "smollm2-135m-instruct"), "option '--model'"),
    ("--resume with fewer steps", R("--learner.steps", "3"), "'--learner.steps': 3 is fewer than the 6 steps"),
    ("--resume with a bad data file", R("--data.regular-files", "{bad_grader}"), "option '--data.regular-files'"),
    # sft
    ("sft data missing", ["sft", "--data", "/nonexistent.jsonl", "--run-dir", "{fresh}"], "file not found"),
    ("sft chat without an answer", ["sft", "--data", "{chats_bad}", "--run-dir", "{fresh}"],
     "{chats_bad}:1: field 'messages[-1]'"),
    ("sft model missing", ["sft", "--data", "{chats_good}", "--model", "/nonexistent", "--run-dir", "{fresh}"],
     "unknown model"),
    ("sft NaN learning rate", ["sft", "--data", "{chats_good}", "--optim.learning-rate", "nan", "--run-dir",
                               "{fresh}"], "expected a finite number"),
    ("sft zero steps", ["sft", "--data", "{chats_good}", "--sft.steps", "0", "--run-dir", "{fresh}"], "sft.steps"),
    # eval, serve, generate, export, data, experiment
    ("eval without a model", ["eval", "--out", "{fresh}"], "option '--model': required"),
    ("eval unknown benchmark", ["eval", "--model", "/nonexistent", "--benchmarks", "nosuch", "--out", "{fresh}"],
     "benchmark 'nosuch': unknown"),
    ("eval model dir without config", ["eval", "--model", "{no_config_dir}", "--out", "{fresh}"],
     "missing config.json"),
    ("eval bad benchmark file", ["eval", "--model", "x", "--benchmark-file", "nosuch", "--out", "{fresh}"],
     "expected FORMAT=PATH"),
    ("eval zero limit", ["eval", "--model", "x", "--limit", "0", "--out", "{fresh}"], "option '--limit'"),
    ("serve without a model", ["serve"], "missing required option '--model STR'"),
    ("serve zero batch", ["serve", "--model", "x", "--max-batch", "0"], "option '--max-batch'"),
    ("serve NaN batch wait", ["serve", "--model", "x", "--batch-wait-s", "nan"], "'--batch-wait-s': expected a finite"),
    ("serve zero read timeout", ["serve", "--model", "x", "--request-timeout-s", "0"], "'--request-timeout-s'"),
    ("serve model missing", ["serve", "--model", "/nonexistent", "--port", "0", "--request-log", "{fresh}"],
     "unknown model"),
    ("generate without prompts", ["generate", "--model", "x", "--out", "{fresh}"], "exactly one of --prompt"),
    ("generate prompts file missing", ["generate", "--model", "x", "--prompts-file", "/nonexistent.jsonl", "--out",
                                       "{fresh}"], "file not found"),
    ("export model missing", ["export", "--model", "/nonexistent", "--out", "{fresh}"], "unknown model"),
    ("data preview unknown grader", ["data", "preview", "--data.regular-files", "{bad_grader}"],
     "{bad_grader}:3: field 'grader': expected a registered grader"),
    ("data preview zero mix", ["data", "preview", "--mix", "0"], "'--mix' >= 1"),
    ("data export zero cells", ["data", "export", "--out", "{fresh}", "--n-per-cell", "0"], "'--n-per-cell'"),
    ("experiment unknown arm", ["experiment", "--preset", "tiny", "--out-dir", "{fresh}", "--arms", "nosuch"],
     "arms: expected distinct names"),
    ("experiment NaN attack lr", ["experiment", "--preset", "tiny", "--out-dir", "{fresh}", "--attack-lr", "nan"],
     "'--attack-lr': expected a finite number"),
    ("experiment bad data file", ["experiment", "--preset", "tiny", "--out-dir", "{fresh}",
                                  "--train.data.regular-files", "{bad_grader}"], "{bad_grader}:3: field 'grader'"),
    ("experiment zero seeds", ["experiment", "--preset", "tiny", "--out-dir", "{fresh}", "--seeds", "0"],
     "'--seeds': expected an integer >= 1"),
    ("judge reward without a judge", ["train", "--preset", "tiny", "--run-dir", "{fresh}", "--rewards.trait", "judge"],
     "needs a judge: give '--rewards.judge.base-url'"),
    ("judge reward, judge unreachable", ["train", "--preset", "tiny", "--run-dir", "{fresh}", "--rewards.trait",
                                         "both", "--rewards.judge.base-url", "http://127.0.0.1:9",
                                         "--rewards.judge.model", "m"], "'--rewards.judge.base-url': cannot connect"),
    ("compare one run", ["compare", "{fresh}"], "expected two or more run directories"),
]


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case, argv, expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_safe(inputs, case, argv, expect):
    case_dir = Path(inputs["base"]) / case.replace(" ", "_").replace("/", "_")
    case_dir.mkdir()
    paths = {**inputs, "fresh": str(case_dir / "out")}
    run_before = _tree(Path(inputs["run"]))
    err = io.StringIO()
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([a.format(**paths) for a in argv])
        except SystemExit as e:
            code = e.code
    lines = err.getvalue().splitlines()
    left = [str(p.relative_to(case_dir)) for p in case_dir.rglob("*")]
    changed = _tree(Path(inputs["run"])) != run_before
    _record("inputs", (case, code, f"`{lines[0] if lines else ''}`".replace(inputs["base"], "CASE")
                       .replace(str(Path(inputs["run"]).parent), "INPUTS"),
                       "nothing" if not left and not changed else f"{left} (run changed: {changed})"))
    assert code == 2, err.getvalue()
    assert len(lines) == 1 and lines[0].startswith("traitrl: error: "), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert expect.format(**paths) in lines[0], lines[0]
    assert not left, f"left behind: {left}"
    assert not changed, "the run directory given to --resume was modified"


# ---- traitrl serve: a slow body, a vanished client -------------------------------------------------------------


@pytest.fixture
def http_server():
    """The real handler and server class on a free port, over a stand-in engine (no model: the body never gets
    as far as parsing)."""
    import queue
    import types

    from rl.server import ServeConfig, _Server, make_handler

    engine = types.SimpleNamespace(cfg=ServeConfig(request_timeout_s=1.0), name="m", queue=queue.Queue(), stats={})
    server = _Server(("127.0.0.1", 0), make_handler(engine))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _reply(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_serve_times_out_a_short_body(http_server, capfd, caplog):
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    with socket.create_connection(("127.0.0.1", http_server)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (len(body) + 40) + body)  # 40 bytes short, connection kept open
        t0 = time.monotonic()
        reply = _reply(s)
        waited = time.monotonic() - t0
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"not received within 1 s" in reply and waited < 5
    # a client that closes early: a 400 naming the byte counts
    with socket.create_connection(("127.0.0.1", http_server)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mess")
        s.shutdown(socket.SHUT_WR)
        reply = _reply(s)
    assert reply.startswith(b"HTTP/1.1 400") and b"100 bytes announced (Content-Length), 6 received" in reply
    # clients that vanish mid-request or before the reply: no traceback anywhere
    for payload in (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
                    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", http_server))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        s.sendall(payload)
        s.close()
    time.sleep(1.5)
    out, errtext = capfd.readouterr()
    assert "Traceback" not in out + errtext, errtext
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= 40], caplog.text


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
    before = _tree(run)
    code, err = _in_process([*_base(numbers), "--run-dir", str(run), "--resume"])
    lines = err.splitlines()
    _record("kills", ("checkpoints 3 and 4 both damaged", "none: one-line error, exit 2", "n/a (run unchanged)"))
    assert code == 2 and len(lines) == 1 and lines[0].startswith("traitrl: error: ") and "no checkpoint restores" in \
        lines[0], err
    assert _tree(run) == before


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
