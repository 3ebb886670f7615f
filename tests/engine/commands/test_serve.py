"""`traitrl serve` over a real socket: endpoint shapes, errors, batching, and the rubric judge path
surviving a `kill -9` of the server mid-batch.

The served model is the tiny judge of tests/rl/test_local_judge.py (a random decoder whose lm head
can only say " yes" or " no", depending on the prompt), saved as an HF directory with its toy
tokenizer and served by `python -m engine.commands serve` in a subprocess.
"""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import models
from engine.commands.main import main
from rl.graders.http_judge import HTTPJudge, JudgeConfig, judge_prompt, parse_score_0_100
from rl.graders.local_judge import LocalJudge, LocalJudgeConfig
from rl.graders.rubric import make_rubric_grader
from rl.sampler import SamplingConfig, generate_text
from models.tokenizer import encode_prompts
from tests.rl.test_local_judge import judge_items, rubric_batch, yes_no_policy

REPO = Path(__file__).resolve().parents[3]


class Server:
    """`python -m engine.commands serve` in a subprocess; waits for its ready line."""

    def __init__(self, model_dir: Path, port: int, log: Path, tmp: Path, xla_cache: Path):
        # Every generation has 4 rows (one compiled program per prompt bucket), and the restarted server
        # loads the first one's programs from JAX's persistent cache: the test pays for 2 compilations.
        cmd = [sys.executable, "-m", "engine.commands", "serve", "--model", str(model_dir), "--port", str(port),
               "--served-name", "judge", "--max-batch", "4", "--pad-to-max-batch", "--max-new-tokens-limit", "8",
               "--batch-delay-s", "0.15", "--request-log", str(log)]
        env = dict(os.environ, PYTHONPATH=str(REPO), JAX_COMPILATION_CACHE_DIR=str(xla_cache),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        self.xla_cache = xla_cache
        self.stderr = tmp / f"server-{port}-{time.monotonic_ns()}.err"
        self.log = log
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            line = ""
        if not line.startswith("serving judge on http://127.0.0.1:"):
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r}\n{self.stderr.read_text()[-3000:]}")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def answered(self) -> list[dict]:
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture(scope="module")
def judge_model(tmp_path_factory):
    policy = yes_no_policy()
    directory = models.save_hf(policy, tmp_path_factory.mktemp("judge") / "hf")
    return policy, directory


@pytest.fixture(scope="module")
def server(judge_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    srv = Server(judge_model[1], 0, tmp / "requests-1.jsonl", tmp, tmp / "xla")
    yield srv
    if srv.proc.poll() is None:  # the kill test may have replaced it
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=30) == 0  # a clean shutdown on SIGTERM


def _chat(url: str, **body):
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_endpoints_shapes_errors_and_batching(server, judge_model, tmp_path):
    policy, _ = judge_model
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == "judge"
    assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"] == "judge"

    msgs = [{"role": "user", "content": "Is water wet?"}]
    r = _chat(server.url, model="judge", messages=msgs, max_tokens=5, temperature=0)
    assert r.status_code == 200
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == "judge" and out["id"].startswith("chatcmpl-")
    (choice,) = out["choices"]
    want = generate_text(policy, [msgs], SamplingConfig(temperature=0.0, max_new_tokens=5))[0]
    assert choice["message"] == {"role": "assistant", "content": want}  # what the engine generates in-process
    assert choice["finish_reason"] == "length"  # this model never emits eos
    n_prompt = len(encode_prompts(policy.tokenizer, [msgs])[0])
    assert out["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 5, "total_tokens": n_prompt + 5}
    stopped = _chat(server.url, messages=msgs, max_tokens=5, temperature=0, stop=" no").json()["choices"][0]
    assert stopped["message"]["content"] == want.split(" no")[0]
    assert stopped["finish_reason"] == ("stop" if " no" in want else "length")

    for body, param in [({"messages": msgs, "temperature": "hot"}, "temperature"),
                        ({"messages": []}, "messages"),
                        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
                        ({"messages": msgs, "max_tokens": 9}, "max_tokens"),  # over --max-new-tokens-limit
                        ({"messages": msgs, "n": 2}, "n"),
                        ({"messages": msgs, "stop": 3}, "stop")]:
        r = _chat(server.url, **body)
        assert r.status_code == 400, body
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
    r = _chat(server.url, model="gpt-9", messages=msgs)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = httpx.post(f"{server.url}/v1/chat/completions", content=b"{not json", timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]

    # The 0-100 judge over HTTP: the reply parsed; a None score is cached as such (not as a miss).
    cfg = JudgeConfig(base_url=server.url, model="judge", cache_dir=str(tmp_path / "scores"))
    prompts = ["Rate this answer from 0 to 100: 'Paris'.", [{"role": "user", "content": "Score 0-100: ok"}]]
    scores = HTTPJudge(cfg).score_0_100(prompts)
    for p, score in zip(prompts, scores):
        msgs = [{"role": "user", "content": p}] if isinstance(p, str) else p
        reply = _chat(server.url, messages=msgs, max_tokens=cfg.score_max_tokens, temperature=0).json()
        assert score == parse_score_0_100(reply["choices"][0]["message"]["content"])
    again = HTTPJudge(cfg)
    assert again.score_0_100(prompts) == scores and again.cache_hits == 2 and again.requests == 0

    # 8 concurrent requests with --max-batch 4 are answered by batched generations, not one by one.
    before = len(server.answered())
    threads = [threading.Thread(target=_chat, args=(server.url,),
                                kwargs={"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 2,
                                        "temperature": 0}) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    sizes = [row["batch"] for row in server.answered()[before:]]
    assert len(sizes) == 8 and max(sizes) > 1  # "batch": requests in the batch that answered it


@pytest.mark.slow  # ~15-25 s on 2 busy cores: two server starts
def test_rubric_judge_survives_kill_9_mid_batch(server, judge_model, tmp_path):
    policy, model_dir = judge_model
    recs, comps = rubric_batch(12)  # 36 distinct (completion, criterion) items
    cfg = {"base_url": server.url, "model": "judge", "max_concurrency": 8, "timeout_s": 60, "max_retries": 400,
           "backoff_s": 0.05, "backoff_max_s": 0.25}

    # The run with no kill; the in-process judge on the same model gives the same verdicts.
    ref_start = len(server.answered())
    ref_judge = HTTPJudge(JudgeConfig(**cfg, cache_dir=str(tmp_path / "cache-ref")))
    reference = make_rubric_grader(ref_judge)(None, comps, recs)
    in_process = LocalJudge(policy, LocalJudgeConfig(mode="logprob"))  # = greedy verdicts here (test_local_judge)
    assert reference == make_rubric_grader(in_process)(None, comps, recs)
    assert len(set(reference)) > 1  # the verdicts depend on the item

    # The same batch again, with the server killed (-9) part-way and restarted on the same port.
    judge = HTTPJudge(JudgeConfig(**cfg, cache_dir=str(tmp_path / "cache")))
    done_before = len(server.answered())
    asked = {r["messages_sha"] for r in server.answered()[ref_start:done_before]}
    assert len(asked) == 36
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(scores=make_rubric_grader(judge)(None, comps, recs)))
    worker.start()
    deadline = time.monotonic() + 60
    while len(server.answered()) < done_before + 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.kill()
    server.proc.wait()
    first = server.answered()[done_before:]
    assert 8 <= len(first) < 36, len(first)  # killed part-way through the batch
    restarted = Server(model_dir, server.port, tmp_path / "requests-2.jsonl", tmp_path, server.xla_cache)
    try:
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert result["scores"] == reference  # the same scores as the run with no kill
        # None lost, none scored twice: each item got exactly one answer, and the cache holds one judgement each.
        keys = {judge.key(judge_prompt(c, k)) for c, k in judge_items(recs, comps)}
        assert set(judge.judged) == keys and set(judge.judged.values()) == {1}
        assert len(judge.cache) == 36 and judge.requests > 36  # the requests cut off by the kill were retried
        second = restarted.answered()
        assert len(second) >= 36 - len(first)  # the restarted server answered the rest
        assert {r["messages_sha"] for r in first + second} == asked
        restarted = _rubric_judge_kill(restarted, recs, comps, cfg, model_dir, tmp_path)
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        assert restarted.proc.wait(timeout=30) == 0


def _rubric_judge_kill(server, recs, comps, cfg, model_dir, tmp_path):
    """The rubric judge path (one request per completion, verdicts as a boolean JSON schema), killed -9 part-way
    and restarted: every verdict as in the run with no kill, none lost, none asked twice. Returns the live server."""
    from data.rubrics import rubric_for
    from rl.graders.rubric_judge import RubricJudge, rubric_prompt

    cfg = dict(cfg, base_url=server.url, malformed_retries=0, rubric_max_tokens=8)  # the server allows 8
    items = [(r["messages"], c, rubric_for(r)) for r, c in zip(recs, comps)]
    reference_judge = RubricJudge(JudgeConfig(**cfg))
    reference = reference_judge.verdicts(items)
    assert None not in reference and reference_judge.malformed == 0  # the schema makes every reply parse
    judge = RubricJudge(JudgeConfig(**cfg, cache_dir=str(tmp_path / "cache-rubric")))
    done_before = len(server.answered())
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(v=judge.verdicts(items)))
    worker.start()
    deadline = time.monotonic() + 60
    while len(server.answered()) < done_before + 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.kill()
    server.proc.wait()
    first = server.answered()[done_before:]
    assert 3 <= len(first) < len(items), len(first)
    restarted = Server(model_dir, server.port, tmp_path / "requests-3.jsonl", tmp_path, server.xla_cache)
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert result["v"] == reference and judge.failures == 0
    keys = {judge.key(rubric_prompt(*it), "rubric") for it in items}
    assert set(judge.judged) == keys and set(judge.judged.values()) == {1}  # each answered exactly once
    assert len(first) + len(restarted.answered()) >= len(items) and judge.requests > len(items)
    assert all(row.get("json") for row in first + restarted.answered())
    return restarted


def test_cli_errors_are_one_line_exit_2(judge_model, capsys):
    taken = socket.create_server(("127.0.0.1", 0))
    for argv, message in [(["serve", "--model", "no-such-model", "--port", "0"], "unknown model 'no-such-model'"),
                          (["serve", "--model", str(judge_model[1]), "--port", str(taken.getsockname()[1])],
                           "already in use"),
                          (["serve", "--model", str(judge_model[1]), "--port", "0", "--max-batch", "0"],
                           "--max-batch")]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    taken.close()
