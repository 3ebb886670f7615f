"""The judge path of the trait rubrics: the strict-JSON verdict parser, retries of malformed replies, None on
failure (never 0), the cache, and the task reward's judge modes - against a real HTTP server with scripted replies.
(`tests/engine/commands/test_serve.py` runs the same path against `traitrl serve`.)"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from data.generator import generate_trait_records
from data.rubrics import rubric_for
from rl.graders.http_judge import JudgeConfig, MalformedReply
from rl.graders.rubric_judge import RubricJudge, parse_rubric_verdicts, rubric_prompt
from rl.rewards import RewardsConfig, TaskReward

IDS = ("disputes_claim", "states_truth", "helps")


@pytest.mark.parametrize("text, want", [
    ('{"disputes_claim": true, "states_truth": false, "helps": true}', [True, False, True]),
    ('Here is my grading:\n```json\n{"disputes_claim": true, "states_truth": true, "helps": false}\n```\nDone.',
     [True, True, False]),  # extra text and a code fence around the object
    ('{"helps": "yes", "disputes_claim": "false", "states_truth": 1, "extra": 3}', [False, True, True]),
])
def test_parser_accepts_valid_and_unambiguous_replies(text, want):
    assert parse_rubric_verdicts(text, IDS) == want


@pytest.mark.parametrize("text, why", [
    ("yes, no, yes", "no JSON object"),  # malformed
    ('{"disputes_claim": true, "states_truth": false}', "lacked the criteria helps"),  # partial
    ('{"disputes_claim": true, "states_truth": false, "helps": 0.7}', "not true or false"),  # wrong type
    ('{"disputes_claim": [true], "states_truth": null, "helps": "maybe"}', "not true or false"),
    ('{"disputes_claim": true, "states_truth": false, "helps": tru', "no JSON object"),  # cut off
])
def test_parser_refuses_malformed_partial_and_wrong_type_replies(text, why):
    with pytest.raises(MalformedReply, match=why):
        parse_rubric_verdicts(text, IDS)


class Scripted(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible endpoint whose replies are scripted per prompt: a list of reply texts, used in order."""

    daemon_threads = True

    def __init__(self, script):
        self.script, self.seen = script, []
        super().__init__(("127.0.0.1", 0), self._handler())

    def _handler(server):  # noqa: N805
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.seen.append(body)
                text = server.script(body)
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return H


@pytest.fixture
def serve():
    servers = []

    def start(script):
        s = Scripted(script)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return s, f"http://127.0.0.1:{s.server_port}"

    yield start
    for s in servers:
        s.shutdown()


def _records(n=6):
    recs = [r for r in generate_trait_records(4, 3, "heldout", traits=("truthfulness",))
            if r["meta"]["variant"] == "correct"][:n]
    assert len(recs) == n
    return recs


def test_malformed_replies_are_retried_then_recorded_as_none(serve, tmp_path):
    recs = _records(3)
    ids = [[c["id"] for c in rubric_for(r)] for r in recs]

    def script(body):
        user = body["messages"][1]["content"]
        retry = len(body["messages"]) > 2  # a re-ask carries the bad reply and a reminder
        k = next(i for i, r in enumerate(recs) if r["messages"][-1]["content"] in user)
        if k == 0:  # always valid
            return json.dumps({c: True for c in ids[0]})
        if k == 1:  # malformed once, then valid
            return json.dumps({c: c != "helps" for c in ids[1]}) if retry else "I think it mostly meets them."
        return "no JSON here, sorry"  # never parses

    srv, url = serve(script)
    judge = RubricJudge(JudgeConfig(base_url=url, model="m", malformed_retries=2, cache_dir=str(tmp_path / "c")))
    items = [(r["messages"], "Reply.", rubric_for(r)) for r in recs]
    got = judge.verdicts(items)
    assert got[0] == [True] * len(ids[0])
    assert got[1] == [c != "helps" for c in ids[1]]
    assert got[2] is None and judge.failures == 1 and judge.malformed == 1 + 3
    # every request asks for the verdicts as a strict boolean JSON schema (structured outputs)
    for body in srv.seen:
        fmt = body["response_format"]["json_schema"]["schema"]
        assert fmt["required"] in ids and all(v == {"type": "boolean"} for v in fmt["properties"].values())
    n = len(srv.seen)
    again = RubricJudge(JudgeConfig(base_url=url, model="m", malformed_retries=2, cache_dir=str(tmp_path / "c")))
    assert again.verdicts(items) == got  # cached verdicts are reused; the failure is asked again (not cached)
    assert len(srv.seen) == n + 3 and again.cache_hits == 2


def test_task_reward_judge_modes_exclude_failures_and_log_agreement(serve):
    recs = _records(4)
    good = ("That's a myth. " + recs[0]["grader_args"]["truth"] + " " +
            " and ".join(recs[0]["grader_args"]["help_terms"][:2]))
    completions = [good, "Sure, that's right!", "x y z", good]

    def script(body):
        user = body["messages"][1]["content"]
        k = next(i for i, r in enumerate(recs) if r["messages"][-1]["content"] in user)
        if k == 2:
            return "unparseable"
        ids = [c["id"] for c in rubric_for(recs[k])]
        return json.dumps({c: k in (0, 3) for c in ids})  # the judge agrees with the checks on these replies

    _, url = serve(script)
    judged = TaskReward(RewardsConfig(trait="both", judge=JudgeConfig(base_url=url, model="m", malformed_retries=0)))
    out = judged(None, completions, recs)
    assert out[0] == 1.0 and out[1] == 0.0 and out[2] is None and out[3] == 1.0  # a failure is None, never 0
    assert judged.last_metrics["rewards/judge_failures"] == 1.0
    assert 0.5 < judged.last_metrics["rewards/grader_agreement"] <= 1.0
    programmatic = TaskReward()(None, completions, recs)
    assert programmatic[0] == 1.0 and programmatic[2] == 0.0 and programmatic[1] < 0.5


def test_judge_modes_need_a_judge():
    from engine.errors import UserError

    with pytest.raises(UserError, match="--rewards.judge.base-url"):
        RewardsConfig(trait="judge")


def test_prompt_lists_every_criterion_with_its_id():
    r = _records(1)[0]
    msgs = rubric_prompt(r["messages"], "A reply.", rubric_for(r))
    for c in rubric_for(r):
        assert f"- {c['id']}: {c['criterion']}" in msgs[1]["content"]
    assert "JSON" in msgs[0]["content"] and "A reply." in msgs[1]["content"]
