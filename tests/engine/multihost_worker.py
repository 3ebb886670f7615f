"""One process of the multi-host GRPO test (run as a script; see test_multihost.py).

argv: out.npz  process_id  num_processes  coordinator(host:port or "-")  local_devices
Each process reads its own shard of the prompts (shard = process id); with one process the
stream is the concatenation of both shards, in process order: the same global batch.
"""

import os
import sys

out, pid, nproc, coord, ndev = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from engine.distributed import DistributedConfig, initialize, to_host  # noqa: E402

if coord != "-":
    initialize(DistributedConfig(coordinator_address=coord, num_processes=nproc, process_id=pid))

import models  # noqa: E402
from engine.sharding import make_mesh  # noqa: E402
from data.pipeline import prompt_batch  # noqa: E402
from rl import grpo  # noqa: E402
from rl.learner import Learner, LearnerConfig  # noqa: E402
from rl.sampler import Sampler, SamplingConfig  # noqa: E402
from engine.train_state import OptimConfig  # noqa: E402

CFG = models.ModelConfig(family="qwen2", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=True, eos_token_id=1,
                         pad_token_id=0)
SHARDS, PER_SHARD = 2, 2


def shard_prompts(shard: int, step: int) -> list[dict]:
    rng = np.random.default_rng([7, step, shard])
    return [{"id": f"s{shard}-{step}-{i}", "prompt_ids": rng.integers(2, 64, rng.integers(3, 7)).tolist()}
            for i in range(PER_SHARD)]


class Prompts:
    def __init__(self, shards):
        self.shards, self.pos = shards, 0

    def __next__(self):
        self.pos += 1
        recs = [r for s in self.shards for r in shard_prompts(s, self.pos)]
        return prompt_batch([{"id": r["id"]} for r in recs], [r["prompt_ids"] for r in recs], (8,), CFG.pad_token_id)


def even_fraction(prompts, completions, records):
    return [sum(int(t) % 2 == 0 for t in c.split()) / max(len(c.split()), 1) for c in completions]


mesh = make_mesh(2, 2, 1)
with jax.set_mesh(mesh):
    policy = models.Policy(models.init(CFG, mesh=mesh, seed=0), None, CFG, "", mesh)
    ref = jax.tree.map(lambda x: x.copy(), nnx.state(policy.model, nnx.Param))
    shards = [pid] if nproc > 1 else list(range(SHARDS))
    learner = Learner(policy, Sampler(SamplingConfig(temperature=1.0, max_new_tokens=8, prompt_buckets=(8,),
                                                     stop_token_ids=())),
                      [("even", even_fraction)], Prompts(shards),
                      grpo.GRPOConfig(num_generations=4, max_completion_length=8, beta=0.04, loss_type="grpo"),
                      OptimConfig(learning_rate=1e-2, schedule="constant"), LearnerConfig(steps=2, progress=False),
                      reference_params=ref)
    init = to_host(jax.tree.leaves(ref))
    history = learner.run()
    params = to_host(jax.tree.leaves(learner.state.params))
if pid == 0:
    moved = max(float(np.abs(a - b).max()) for a, b in zip(params, init, strict=True))
    np.savez(out, *params, rewards=np.array([m["reward"] for m in history]), moved=np.array(moved))
print(f"process {pid}/{jax.process_count()} devices {jax.device_count()} done", flush=True)
