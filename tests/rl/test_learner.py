"""The GRPO loop end to end on a tiny model: it learns a verifiable reward, and resumes exactly."""

import jax
import numpy as np

import models
from engine.checkpoint import CheckpointConfig, Checkpointer
from data.pipeline import prompt_batch
from rl import grpo
from rl.learner import Learner, LearnerConfig
from engine.metrics import MetricsWriter
from rl.sampler import Sampler, SamplingConfig
from engine.train_state import OptimConfig

CFG = models.ModelConfig(family="qwen2", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=True, eos_token_id=1,
                         pad_token_id=0)


class Prompts:
    """A deterministic, checkpointable prompt stream (the Grain pipeline's contract, in miniature)."""

    def __init__(self, P=4, seed=0):
        self.rng_seed, self.P, self.pos = seed, P, 0

    def __next__(self):
        rng = np.random.default_rng([self.rng_seed, self.pos])
        self.pos += 1
        ids = [rng.integers(2, 64, rng.integers(3, 7)).tolist() for _ in range(self.P)]
        return prompt_batch([{"id": f"p{self.pos}-{i}"} for i in range(self.P)], ids, (8,), CFG.pad_token_id)

    def get_state(self):
        return {"pos": self.pos}

    def set_state(self, s):
        self.pos = s["pos"]


def even_fraction(prompts, completions, records):
    """Toy verifiable reward: the fraction of completion tokens with an even id."""
    out = []
    for c in completions:
        toks = [int(t) for t in c.split()]
        out.append(sum(t % 2 == 0 for t in toks) / max(len(toks), 1))
    return out


def _learner(steps, run_dir=None, lr=3e-3, beta=0.04, save_every=0):
    policy = models.Policy(models.init(CFG, seed=0), None, CFG)
    ref = jax.tree.map(lambda x: x.copy(), __import__("flax").nnx.state(policy.model, __import__("flax").nnx.Param))
    sampler = Sampler(SamplingConfig(temperature=1.0, max_new_tokens=8, prompt_buckets=(8,), stop_token_ids=()))
    gcfg = grpo.GRPOConfig(num_generations=8, max_completion_length=8, beta=beta, loss_type="grpo")
    optim = OptimConfig(learning_rate=lr, schedule="constant")
    ckpt = None if run_dir is None else Checkpointer(run_dir / "ckpt", CheckpointConfig(save_every=save_every, keep=2,
                                                                                         async_save=False))
    return Learner(policy, sampler, [("even", even_fraction)], Prompts(), gcfg, optim,
                   LearnerConfig(steps=steps, progress=False), reference_params=ref, checkpointer=ckpt,
                   writer=MetricsWriter(run_dir))


def test_learns_toy_reward(tmp_path):
    hist = _learner(30, tmp_path, lr=1e-2)
    rewards = [m["reward"] for m in hist.run()]
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.15, (first, last)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30
    for key in ("reward", "reward_std", "rewards/even/mean", "kl", "entropy", "clip_ratio/low_mean",
                "completions/mean_length", "frac_reward_zero_std", "step_time", "tokens_per_s", "mfu"):
        assert key in __import__("json").loads(lines[-1]), key


def test_exact_resume(tmp_path):
    straight = _learner(4)
    straight.run()
    first = _learner(2, tmp_path, save_every=2)
    first.run()
    del first  # the "killed" process: nothing survives but the checkpoint directory
    second = _learner(4, tmp_path, save_every=2)
    second.run(resume=True)
    assert second.data.pos == straight.data.pos == 4
    for a, b in zip(jax.tree.leaves(second.state.params), jax.tree.leaves(straight.state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
