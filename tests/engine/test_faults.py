"""The fault-injection suite (issue 16), part 1: bad inputs and `traitrl serve` fail safe (the kills, checkpoint
damage and NaN are in test_kill_resume.py).

1. A table of bad inputs across the commands, run in process (`main([...])`): each exits 2 with exactly one
   stderr line starting "traitrl: error:", no traceback, and leaves nothing behind (its case directory stays
   empty; a run directory given to --resume is byte-for-byte unchanged).
2. `traitrl serve`: a body shorter than its Content-Length gets a 408 within the read timeout; a client that
   disconnects leaves no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.commands.main import main

from tests.engine.faults_common import jsonl, record, tree
from tests.engine.faults_common import record_row as _record


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


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case, argv, expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_safe(inputs, case, argv, expect):
    case_dir = Path(inputs["base"]) / case.replace(" ", "_").replace("/", "_")
    case_dir.mkdir()
    paths = {**inputs, "fresh": str(case_dir / "out")}
    run_before = tree(Path(inputs["run"]))
    err = io.StringIO()
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([a.format(**paths) for a in argv])
        except SystemExit as e:
            code = e.code
    lines = err.getvalue().splitlines()
    left = [str(p.relative_to(case_dir)) for p in case_dir.rglob("*")]
    changed = tree(Path(inputs["run"])) != run_before
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
