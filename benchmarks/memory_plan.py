"""The memory plan (`models.memory`): the shipped presets' plans, and the plan against XLA's own figures.

    python benchmarks/memory_plan.py              # the presets' plans (gpu-1b on 80 / 141 GB, tpu-v5e-8, CPU)
    python benchmarks/memory_plan.py --check      # + plan vs compiled.memory_analysis() over small CPU configs
    python benchmarks/memory_plan.py --json-out plan.json

`--check` lowers and compiles the real programs -- the GRPO update step (`rl.train_step.build_grpo_step`), the
micro-batched reference forward (`build_logps_fn`) and the rollout (`rl.sampler.Sampler.lower`) -- from
abstract inputs (nothing is allocated or run) and compares each program's arguments + temporaries + outputs
(minus donated aliases) with the plan's figure for it. tests/models/test_memory.py runs a subset within 25%.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import models  # noqa: E402
from engine.sharding import batch_sharding, make_mesh, sharding_for  # noqa: E402
from engine.train_state import OptimConfig, TrainState  # noqa: E402
from models import memory  # noqa: E402
from models.transformer import Decoder  # noqa: E402
from rl import grpo  # noqa: E402
from rl.sampler import Sampler, SamplingConfig, _drop_fsdp  # noqa: E402
from rl.train_step import GRPOBatch, build_grpo_step, build_logps_fn  # noqa: E402

# The canonical workload model (../shared/peers/workload.json) and variations of it: the check's configs.
CANON = models.ModelConfig(family="qwen2", vocab_size=4096, hidden_size=256, intermediate_size=704,
                           num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
                           attention_bias=True)
CHECKS = [  # (name, config changes, workload, micro-batches, mesh)
    ("remat none, loop", {}, memory.Workload(4, 4, 64, 64, logps_chunk=16), 1, (1, 1, 1)),
    ("remat none, 2 micro-batches", {}, memory.Workload(8, 4, 64, 64, logps_chunk=16), 2, (1, 1, 1)),
    ("remat block (scan)", {"remat": "block"}, memory.Workload(4, 4, 128, 128, logps_chunk=16), 1, (1, 1, 1)),
    ("remat full (scan), 4 micro-batches", {"remat": "full"}, memory.Workload(8, 4, 64, 64, logps_chunk=16), 4,
     (1, 1, 1)),
    ("remat full, 8 layers, F x2", {"remat": "full", "num_hidden_layers": 8, "intermediate_size": 1408},
     memory.Workload(4, 4, 64, 64, logps_chunk=16), 1, (1, 1, 1)),
    ("bf16 compute, remat block", {"remat": "block", "dtype": "bfloat16"},
     memory.Workload(4, 4, 128, 128, logps_chunk=16), 1, (1, 1, 1)),
    ("chunked attention, remat full", {"remat": "full", "attention": "chunked", "attention_chunk": 32},
     memory.Workload(4, 4, 128, 128, logps_chunk=16), 1, (1, 1, 1)),
    ("vocab 16k, remat none", {"vocab_size": 16384}, memory.Workload(4, 4, 64, 64, logps_chunk=16), 1, (1, 1, 1)),
    ("mesh (2, 2, 2), remat full", {"remat": "full"}, memory.Workload(8, 4, 64, 64, logps_chunk=16), 1, (2, 2, 2)),
    ("mesh (1, 8, 1) fsdp, bf16, remat block", {"remat": "block", "dtype": "bfloat16"},
     memory.Workload(8, 4, 64, 64, logps_chunk=16), 2, (1, 8, 1)),
]


def _abstract_params(cfg, mesh, dtype=None, gather=False):
    model = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0), mesh))
    graphdef, params = nnx.split(model, nnx.Param)
    for _, var in nnx.to_flat_state(params):
        v = var.get_value()
        sh = None
        if mesh is not None:
            spec = sharding_for(v.shape, var.get_metadata()["logical_axes"], mesh).spec
            if gather:
                spec = jax.sharding.PartitionSpec(*(_drop_fsdp(e) for e in spec))
            sh = jax.sharding.NamedSharding(mesh, spec)
        var.set_value(jax.ShapeDtypeStruct(v.shape, jnp.dtype(dtype) if dtype else v.dtype, sharding=sh))
    return graphdef, params


def _sizes(lowered) -> dict[str, int]:
    m = lowered.compile().memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    return {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes,
            "alias": m.alias_size_in_bytes, "temp": m.temp_size_in_bytes, "total": total}


def xla_memory(cfg: models.ModelConfig, work: memory.Workload, micro_batches: int, mesh=None,
               phases=("update", "reference", "rollout")) -> dict[str, dict[str, int]]:
    """Per-device bytes XLA assigns to each compiled program (`memory_analysis()`), from abstract inputs."""
    out = {}
    B, L, T = work.sequences, work.prompt_len, work.completion_len
    S = lambda shape, dt: jax.ShapeDtypeStruct(shape, dt, sharding=None if mesh is None else
                                                batch_sharding(mesh, len(shape)))
    if "update" in phases:
        optim = OptimConfig(learning_rate=1e-6, micro_batches=micro_batches, logps_chunk=work.logps_chunk)
        graphdef, params = _abstract_params(cfg, mesh)
        tx = optim.optimizer()
        opt = jax.eval_shape(tx.init, params)
        if mesh is not None:  # the moments take their parameters' shardings (what the plan assumes, see REPORT)
            rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            opt = optax.tree_map_params(
                tx, lambda v, p: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=p.sharding), opt, params,
                transform_non_params=lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=rep))
        state = TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, opt, jax.ShapeDtypeStruct((2,), jnp.uint32))
        shard = None
        if mesh is not None:
            rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            state = jax.tree.map(lambda x: x if isinstance(x.sharding, jax.sharding.NamedSharding) else
                                 jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
            shard = jax.tree.map(lambda x: x.sharding, state)
        gcfg = grpo.GRPOConfig(num_generations=work.generations, max_completion_length=T,
                               beta=0.04 if work.reference else 0.0)
        batch = GRPOBatch(S((B, L + T), jnp.int32), S((B, L + T), jnp.bool_), S((B, T), jnp.float32),
                          S((B,), jnp.float32), None, S((B, T), jnp.float32) if work.reference else None)
        step = build_grpo_step(graphdef, gcfg, optim, shard, micro_batches=micro_batches)
        out["update"] = _sizes(step.lower(state, batch))
    if "reference" in phases:
        graphdef, params = _abstract_params(cfg, mesh, cfg.dtype)
        fn = build_logps_fn(graphdef, work.logps_chunk, micro_batches)
        out["reference"] = _sizes(fn.lower(params, S((B, L + T), jnp.int32), S((B, L + T), jnp.bool_), T))
    if "rollout" in phases:
        model = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0), mesh))
        graphdef = nnx.split(model)[0]
        _, state = _abstract_params(cfg, mesh, cfg.dtype, gather=work.gather_weights)
        sampler = Sampler(SamplingConfig(max_new_tokens=T, prompt_buckets=(L,), kv_block=work.kv_block,
                                         gather_weights=work.gather_weights))
        out["rollout"] = _sizes(sampler.lower(graphdef, state, work.prompts, L, work.generations, mesh=mesh))
    return out


def check(rows=CHECKS) -> list[dict]:
    """Plan vs XLA for each check config: [{name, phase, xla_bytes, plan_bytes, error}]."""
    res = []
    for name, change, work, M, mesh_shape in rows:
        cfg = dataclasses.replace(CANON, **change)
        mesh = None if mesh_shape == (1, 1, 1) else make_mesh(*mesh_shape)
        xla = xla_memory(cfg, work, M, mesh)
        p = memory.plan(cfg, work, mesh_shape, M, cfg.remat, memory.Device(64 * memory.GiB, "cpu"))
        for phase, sizes in xla.items():
            est = p.programs[phase]["total"]
            res.append({"name": name, "phase": phase, "xla_bytes": sizes["total"], "xla_temp_bytes": sizes["temp"],
                        "plan_bytes": est, "error": est / sizes["total"] - 1})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="also compile small CPU configs and compare")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    out = {"presets": []}
    for name, p in memory.preset_plans():
        print(f"== {name}: M={p.micro_batches}, remat={p.remat}, attention={p.attention}")
        print(p.table())
        print(p.summary() + "\n")
        out["presets"].append({"name": name, "micro_batches": p.micro_batches, "remat": p.remat,
                               "attention": p.attention, "fits": p.fits, "peak_gib": round(p.peak / memory.GiB, 2),
                               "budget_gib": round(p.device.budget / memory.GiB, 2),
                               "phases_gib": {k: round(v / memory.GiB, 2) for k, v in p.peaks.items()}})
    if args.check:
        rows = check()
        print(f"{'config':<40}{'program':>10}{'XLA MB':>10}{'plan MB':>10}{'error':>8}")
        for r in rows:
            print(f"{r['name']:<40}{r['phase']:>10}{r['xla_bytes'] / 1e6:>10.1f}{r['plan_bytes'] / 1e6:>10.1f}"
                  f"{r['error']:>+8.0%}")
        print(f"worst |error|: {max(abs(r['error']) for r in rows):.0%}")
        out["check"] = rows
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
