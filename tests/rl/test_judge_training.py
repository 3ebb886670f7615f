"""A GRPO run whose trait reward is a model judge: `traitrl train --rewards.trait both` against `traitrl serve`'s
server code on a real socket (the tiny random model as the judge, answering the verdicts' JSON schema).

Shows the judge path end to end: every trait completion is judged over HTTP, the judge's rubric points are the
reward, and the step's metrics carry `rewards/judge_failures`, `rewards/grader_agreement` (judge vs the
programmatic checks) and the grading time, overlapped with the reference forward (`time/rewards_wait`).
"""

import json
import threading

import pytest

from engine.commands.common import build_policy
from engine.commands.main import main
from rl.server import Engine, ServeConfig, bind, make_handler


@pytest.fixture(scope="module")
def judge_url():
    engine = Engine(build_policy("tiny", None), "tiny-judge", ServeConfig(max_batch=8))
    engine.start()
    server = bind("127.0.0.1", 0)
    server.RequestHandlerClass = make_handler(engine)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", engine
    server.shutdown()
    engine.stop()
    server.server_close()


def test_grpo_with_a_served_judge_logs_rewards_failures_and_agreement(judge_url, tmp_path):
    url, engine = judge_url
    run = tmp_path / "run"
    main(["train", "--preset", "tiny", "--run-dir", str(run), "--learner.steps", "2", "--evals.every", "0",
          "--no-export", "--data.trait-fraction", "1.0", "--rewards.trait", "both",
          "--rewards.judge.base-url", url, "--rewards.judge.model", "tiny-judge", "--learner.no-progress"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["rewards/judge_failures"] == 0.0  # the schema-constrained replies always parse
        assert 0.0 <= r["rewards/grader_agreement"] <= 1.0
        assert r["rewards/excluded"] == 0.0 and 0.0 <= r["rewards/graders/mean"] <= 1.0
        assert r["time/rewards"] > 0 and r["time/rewards_wait"] >= 0
    P, G = 4, 4  # the tiny preset: every completion of every (trait) prompt was judged once
    assert engine.stats["requests"] >= 2 * P * G
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["reward"][0] is not None for s in samples)
