"""Layers as a Python loop vs one scanned block: compile time and step time, same model, same process.

    python benchmarks/scan_layers.py                  # SmolLM2-135M's shape (30 layers), random init, CPU
    python benchmarks/scan_layers.py --reps 5 --remat full

For each layout it compiles and times, after one warm call: the GRPO update step (B sequences of prompt +
completion tokens, micro-batched as configured), the micro-batched reference forward, and a rollout of
P prompts x G generations. Compile = first call minus the median call. `ModelConfig.scan_layers` defaults to
scanning exactly when remat is on; this script is the measurement behind that default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import models  # noqa: E402
from engine.train_state import OptimConfig, init_state  # noqa: E402
from models import memory  # noqa: E402
from rl import grpo  # noqa: E402
from rl.sampler import Sampler, SamplingConfig  # noqa: E402
from rl.train_step import build_batch_fn, build_grpo_step, build_logps_fn  # noqa: E402


def _time(fn, reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return {"compile_s": round(first - med, 2), "median_s": round(med, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--remat", default="none", choices=("none", "block", "full"))
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--micro-batches", type=int, default=1)
    args = ap.parse_args()
    P, G, L, T = args.prompts, args.generations, args.prompt_len, args.new_tokens
    B = P * G
    load = os.getloadavg()
    res = {"model": "SmolLM2-135M shape, random init", "remat": args.remat, "B": B, "L": L, "T": T,
           "loadavg_before": [round(x, 2) for x in load], "jax": jax.__version__}
    rng = np.random.default_rng(0)
    for scan in (False, True):
        cfg = dataclasses.replace(models.ModelConfig.from_hf(memory.SMOLLM2_135M), remat=args.remat, scan_layers=scan)
        optim = OptimConfig(learning_rate=1e-6, micro_batches=args.micro_batches, logps_chunk=32)
        graphdef, state = init_state(models.init(cfg, seed=0), optim)
        state = jax.device_put(state, jax.devices()[0])  # committed, as the step's outputs are
        gcfg = grpo.GRPOConfig(num_generations=G, max_completion_length=T, beta=0.04)
        step = build_grpo_step(graphdef, gcfg, optim)
        logps = build_logps_fn(graphdef, 32, args.micro_batches)
        ids = rng.integers(2, cfg.vocab_size, (P, L)).astype(np.int32)
        mask = np.ones_like(ids, bool)
        sampler = Sampler(SamplingConfig(max_new_tokens=T, prompt_buckets=(L,), stop_token_ids=()))
        pol = models.Policy(nnx.merge(graphdef, state.params), None, cfg, "", None)
        roll = _time(lambda: sampler.sample(pol, ids, mask, G).completion_ids_BxT, args.reps)
        r = sampler.sample(pol, ids, mask, G)
        batch, _ = build_batch_fn(gcfg)(r.prompt_ids_BxL, r.prompt_mask_BxL, r.completion_ids_BxT, r.lengths_B,
                                         r.truncated_B, rng.standard_normal((B, 1)).astype(np.float32), r.logprobs_BxT)
        ref = _time(lambda: logps(state.params, batch.ids_BxL, batch.mask_BxL, T), args.reps)
        batch = batch._replace(ref_logps_BxT=logps(state.params, batch.ids_BxL, batch.mask_BxL, T))
        box = [state]

        def update():
            box[0], m = step(box[0], batch)
            return m["loss"]

        upd = _time(update, args.reps)
        hlo_mb = round(len(step.lower(box[0], batch).as_text()) / 1e6, 2)
        res["scan" if scan else "loop"] = {"rollout": roll, "reference": ref, "update": upd,
                                           "update_stablehlo_mb": hlo_mb}
        print(json.dumps({"scan": scan, **res["scan" if scan else "loop"]}), flush=True)
    lo, sc = res["loop"], res["scan"]
    res["compile_ratio_loop_over_scan"] = {k: round(lo[k]["compile_s"] / max(sc[k]["compile_s"], 1e-3), 2)
                                           for k in ("rollout", "reference", "update")}
    res["step_ratio_scan_over_loop"] = {k: round(sc[k]["median_s"] / lo[k]["median_s"], 2)
                                        for k in ("rollout", "reference", "update")}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
