"""The in-loop hook inside the real GRPO learner (tiny model), and `traitrl eval` on the run's checkpoint."""

import dataclasses
import json

import jax
import numpy as np
from flax import nnx

import models
from engine.checkpoint import CheckpointConfig, Checkpointer
from engine.commands.main import main
from evals.config import EvalConfig
from evals.hook import EvalHook
from evals.results import read_results
from rl.grpo import GRPOConfig
from rl.learner import Learner, LearnerConfig
from engine.metrics import MetricsWriter
from rl.sampler import Sampler, SamplingConfig
from data.pipeline import prompt_batch
from engine.train_state import OptimConfig
from tests.conftest import tiny_config

BENCHES = ("corrigible-neutral-HHH", "xstest", "heldout-truthfulness")


class Prompts:
    def __init__(self, vocab):
        self.vocab, self.pos = vocab, 0

    def __next__(self):
        rng = np.random.default_rng(self.pos)
        self.pos += 1
        ids = [rng.integers(3, self.vocab, 6).tolist() for _ in range(2)]
        return prompt_batch([{"id": f"p{self.pos}-{i}"} for i in range(2)], ids, (8,), 0)


def length_reward(prompts, completions, records):
    return [len(c) / 10 for c in completions]


def test_hook_due():
    hook = EvalHook(EvalConfig(every=6), None)
    assert [s for s in range(13) if hook.due(s, 12)] == [0, 6, 12]
    assert [s for s in range(11) if hook.due(s, 10)] == [0, 6, 10]
    assert not any(EvalHook(EvalConfig(every=0), None).due(s, 12) for s in range(13))


def test_hook_in_learner_then_eval_cli(tmp_path, toy_tokenizer):
    cfg = tiny_config(toy_tokenizer)
    policy = models.Policy(models.init(cfg, seed=2), toy_tokenizer, cfg, "", None)
    models.save_hf(policy, tmp_path / "base")
    run = tmp_path / "run"
    run.mkdir()
    optim = OptimConfig(learning_rate=1e-2, schedule="constant")
    (run / "config.json").write_text(json.dumps({"model": str(tmp_path / "base"), "dtype": "float32",
                                                 "optim": dataclasses.asdict(optim)}))
    ecfg = EvalConfig(every=2, benchmarks=BENCHES, limit=2, max_new_tokens=4,
                      conditions=("plain", "harmful-steering", "helpful-steering"))
    hook = EvalHook(ecfg, run, last_step=2)
    learner = Learner(policy, Sampler(SamplingConfig(max_new_tokens=4, prompt_buckets=(8,))),
                      [("len", length_reward)], Prompts(len(toy_tokenizer)),
                      GRPOConfig(num_generations=2, max_completion_length=4, loss_type="grpo"), optim,
                      LearnerConfig(steps=2, progress=False), hooks=[hook],
                      checkpointer=Checkpointer(run / "checkpoints", CheckpointConfig(save_every=2, async_save=False)),
                      writer=MetricsWriter(run))
    learner.run()
    assert [s for s, _ in hook.history] == [0, 2]

    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r for r in rows}
    for step in (0, 2):
        for b in BENCHES:
            for k in ("score", "ci_low", "ci_high"):
                assert 0.0 <= logged[step][f"eval/{b}/{k}"] <= 1.0
        assert "eval/harmful-steering/xstest/score" in logged[step]
        assert "eval/helpful-steering/instruction-following/score" in logged[step]
        assert "eval/helpful-steering/corrigible-neutral-HHH/score" not in logged[step]  # MC: no helpful run
    assert "eval/xstest/score" not in logged.get(1, {})
    summary = [json.loads(x) for x in (run / "evals.jsonl").read_text().splitlines()]
    assert {(r["step"], r["condition"]) for r in summary} == {(s, c) for s in (0, 2) for c in ecfg.conditions}
    items = (run / "evals" / "step_000002" / "plain" / "xstest.jsonl").read_text().splitlines()
    assert len(items) == 2 and {"id", "score", "domain", "extra"} <= set(json.loads(items[0]))
    step2 = {(r.condition, r.benchmark): r for r in read_results(run)}
    assert step2[("plain", "heldout-truthfulness")].n == 2 and step2[("plain", "heldout-truthfulness")].items[0].domain

    # `traitrl eval` on the run dir restores step 2 and reproduces the hook's log-prob scores exactly.
    main(["eval", "--model", str(run), "--benchmarks", "corrigible-neutral-HHH", "xstest", "--limit", "2",
          "--max-new-tokens", "4", "--out", str(tmp_path / "out")])
    cli = {r.benchmark: r for r in read_results(tmp_path / "out", step=2)}
    hooked = step2[("plain", "corrigible-neutral-HHH")]
    assert [i.id for i in cli["corrigible-neutral-HHH"].items] == [i.id for i in hooked.items]
    np.testing.assert_allclose([i.score for i in cli["corrigible-neutral-HHH"].items],
                               [i.score for i in hooked.items], atol=1e-5)
    assert [i.extra["text"] for i in cli["xstest"].items] == [i.extra["text"] for i in step2[("plain", "xstest")].items]
    from engine.commands.common import restore_policy as load_checkpoint

    restored, step = load_checkpoint(run)
    assert step == 2
    for a, b in zip(jax.tree.leaves(nnx.state(restored.model, nnx.Param)), jax.tree.leaves(learner.state.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
