"""Steering sweeps, the coherence guard, and the in-loop persona monitor, on a tiny random model."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from engine.errors import UserError
from evals.persona.capture import completion_means
from evals.persona.directions import Direction
from evals.persona.monitor import MonitorConfig, PersonaMonitor
from evals.persona.steering import SteerConfig, SweepPoint, guarded_range, repetition_rate, sweep
from models.transformer import Steer
from data.pipeline import prompt_batch
from rl import grpo
from rl.learner import Learner, LearnerConfig
from engine.metrics import MetricsWriter
from rl.sampler import Sampler, SamplingConfig
from models.tokenizer import encode_prompts
from engine.train_state import OptimConfig

PROMPTS = [[{"role": "user", "content": "What do you think about people?"}],
           [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Any advice for today?"}],
           [{"role": "user", "content": "Tell me a short story"}]]


@pytest.fixture
def policy(tiny_policy):
    """A private copy of the shared tiny policy's buffers (the monitor test trains it, and the train step donates
    its inputs: `nnx.clone` alone would share, and so delete, the session fixture's arrays)."""
    graphdef, state = nnx.split(tiny_policy.model)
    model = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
    return models.Policy(model, tiny_policy.tokenizer, tiny_policy.config, "tiny", None)


def test_repetition_rate_and_guard():
    ids = np.array([[1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
    mask = np.ones_like(ids, bool)
    np.testing.assert_allclose(repetition_rate(ids, mask), [5 / 9, 0.0])  # 9 4-grams, 4 distinct
    mask[0, 5:] = False  # only the first five tokens count: no repeated 4-gram
    assert repetition_rate(ids, mask)[0] == 0.0
    pts = [SweepPoint(a, 0.0, 0.0, 0.0, 0.0, c, [], []) for a, c in ((-4, False), (-2, True), (0, True), (2, True),
                                                                 (4, False), (8, True))]
    assert guarded_range(pts) == (-2, 2)  # contiguous around 0: the coherent 8 beyond an incoherent 4 is not in it
    assert SteerConfig(alphas=(3.0, -1.0)).alphas == (-1.0, 0.0, 3.0)  # sorted, 0 added as the reference
    with pytest.raises(UserError):
        SteerConfig(max_repetition=0.0)


GREEDY8 = SamplingConfig(temperature=0.0, max_new_tokens=8)


@pytest.fixture(scope="module")
def sampler():
    return Sampler(GREEDY8)  # shared: the sweep and the ablation check reuse its compiled programs


def test_sweep_scores_texts_and_coherence_reference(policy, sampler):
    v = 10.0 * np.random.default_rng(0).standard_normal(32).astype(np.float32)
    d = Direction("test", 1, v)
    calls = []

    def score(texts, items):
        calls.append(list(items))
        return [float(len(t)) for t in texts]

    pts = sweep(policy, PROMPTS, d, score, items=["a", "b", "c"], sampling=GREEDY8, sampler=sampler,
                cfg=SteerConfig(alphas=(-2.0, 2.0), batch_size=2, max_repetition=1.0))
    assert [p.alpha for p in pts] == [-2.0, 0.0, 2.0] and all(c == ["a", "b", "c"] for c in calls)
    assert pts[1].coherent and all(len(p.texts) == 3 for p in pts)
    assert pts[0].texts != pts[2].texts  # the direction changes what is generated
    np.testing.assert_allclose(pts[1].score, np.mean([len(t) for t in pts[1].texts]))
    # The coherence reference: at alpha 0 the unsteered model re-reading its own greedy completions gives
    # exactly the log-probs the sampler recorded while generating them; steered, the two differ.
    np.testing.assert_allclose(pts[1].logprob, pts[1].own_logprob, atol=1e-4)
    assert abs(pts[2].logprob - pts[2].own_logprob) > 1e-3
    with pytest.raises(UserError, match="layer"):
        sweep(policy, PROMPTS, Direction("bad", 7, v), score)


def test_sampler_carries_ablation_and_completion_means(policy, sampler):
    prompts = encode_prompts(policy.tokenizer, PROMPTS[:2])  # the shape of the sweep's batches: no new compile
    v = 30.0 * np.random.default_rng(1).standard_normal(32).astype(np.float32)
    before = sampler.compilations
    added = sampler(policy, prompts, steer=Steer(1, v, np.float32(0.0)))  # adding 0: the unsteered model
    ablated = sampler(policy, prompts, steer=Steer(1, v, np.float32(0.0), ablate=True))
    assert sampler.compilations - before <= 1  # the ablate switch made (only) its own program
    assert not np.allclose(ablated.logprobs_BxT, added.logprobs_BxT)
    means = completion_means(policy, added.prompt_ids_BxL, added.prompt_mask_BxL, added.completion_ids_BxT,
                             added.completion_mask_BxT, (1,))[1]
    row = np.concatenate([added.prompt_ids_BxL[0][added.prompt_mask_BxL[0]], added.completion_ids_BxT[0]])
    out = jax.jit(lambda m, i: m.apply(i, capture_layers=(1,), logits=False).captured[1])(policy.model, row[None])
    np.testing.assert_allclose(means[0], np.asarray(out)[0, -8:].mean(0), atol=2e-5)


class _Prompts:
    """Two fixed chat prompts per GRPO step (the learner's batch contract: a PromptBatch)."""

    def __init__(self, tokenizer):
        self.batch = prompt_batch([{"id": f"p{i}"} for i in range(2)], encode_prompts(tokenizer, PROMPTS[:2]),
                                  SamplingConfig().prompt_buckets, tokenizer.pad_token_id)

    def __next__(self):
        return self.batch


def test_monitor_hook_in_a_grpo_run(policy, tmp_path):
    d = Direction("persona", 1, np.random.default_rng(2).standard_normal(32).astype(np.float32))
    mon = PersonaMonitor(d, PROMPTS[:2], MonitorConfig(every=2, max_new_tokens=6, name="p"))
    r = mon.sampler(policy, encode_prompts(policy.tokenizer, PROMPTS[:2]))
    means = completion_means(policy, r.prompt_ids_BxL, r.prompt_mask_BxL, r.completion_ids_BxT, r.completion_mask_BxT,
                             (1,))[1]
    expected0 = float((means @ d.unit_D).mean())  # what the hook must log at step 0 (the initial weights)
    length = lambda prompts, completions, records: [len(c) / 10 for c in completions]
    learner = Learner(policy, Sampler(SamplingConfig(temperature=1.0, max_new_tokens=6, stop_token_ids=())),
                      [("length", length)], _Prompts(policy.tokenizer),
                      grpo.GRPOConfig(num_generations=4, max_completion_length=6, beta=0.0, loss_type="grpo"),
                      OptimConfig(learning_rate=0.05, schedule="constant"), LearnerConfig(steps=4, progress=False),
                      hooks=[mon], writer=MetricsWriter(tmp_path))
    learner.run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = {row["step"]: row for row in rows if "persona/p/projection" in row}
    assert sorted(logged) == [0, 2, 4]  # step 0 (baseline) and every 2 steps
    np.testing.assert_allclose(logged[0]["persona/p/projection"], expected0, rtol=1e-5)
    assert logged[0]["persona/p/delta"] == 0 and abs(logged[4]["persona/p/delta"]) > 1e-4  # it followed training
    assert mon(3, learner) is None  # off-cadence steps cost nothing
