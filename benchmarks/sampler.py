"""Sampler throughput vs. transformers `generate` on CPU: same weights, same batch, one run.

    python benchmarks/sampler.py                      # canonical workload (../shared/peers/workload.json)
    python benchmarks/sampler.py --model smollm2      # SmolLM2-135M-Instruct, 16 sequences x 64 tokens
    python benchmarks/sampler.py --xla-flags="--xla_cpu_use_onednn=true"
    python benchmarks/sampler.py --data 1                # no CPU mesh variant

Canonical workload ("tiny-qwen2-grpo-v1"): a random Qwen2 (vocab 4096, hidden 256, MLP 704, 4
layers, 8 heads / 2 KV heads, tied embeddings) built by transformers after torch.manual_seed(0);
8 prompts x 8 generations of 32 tokens, 64 new tokens each, temperature 1, full vocabulary, EOS
disabled (HF: min_new_tokens = max_new_tokens; ours: no stop ids). Both engines get warmups, then
the median of timed runs, in alternating blocks so host noise hits both. Compilation is timed
separately. Ours is timed as "grouped" (P=8 prompts, G=8: the shared prompt is prefilled once per
group, as a GRPO rollout does) and "flat" (64 independent rows: exactly HF's work), each on one
XLA CPU device and, with --data N > 1, data-parallel over a mesh of N CPU devices
(`--xla_force_host_platform_device_count=N`, batch sharded over `data`): XLA runs the devices'
programs concurrently, which keeps both cores busy where one device's small matmuls do not. That
helps the compute-bound canonical workload; SmolLM2 decode is memory-bandwidth bound (every
replica re-reads all weights each token), so there --data defaults to 1.

FLOP/s counts useful model FLOPs (2 x matmul params per token + causal attention over the real
context), compared with a 2048^3 float32 matmul measured in the same process.

Memory-bandwidth roofline: a decode step must read every weight and the KV it attends to
(`models.flops.decode_bytes`: the prompt's KV once per group, the completion blocks filled so far); the
roofline tokens/s is sequences x steps / (those bytes / bandwidth), with the bandwidth of a streaming
read + write measured in the same process (on an accelerator: the vendor's HBM figure). `fraction_of_
bandwidth_roofline` = measured tokens/s over it (the timed call includes prefill and sampling too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--model", choices=("canonical", "smollm2"), default="canonical")
_parser.add_argument("--smollm2-path", default="smollm2-135m-instruct", help="name or HF directory for --model smollm2")
_parser.add_argument("--runs", type=int, default=5, help="timed runs per engine")
_parser.add_argument("--warmup", type=int, default=2, help="warmup runs per engine (after compilation)")
_parser.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for this run (set before jax is imported)")
_parser.add_argument("--skip-hf", action="store_true", help="time only traitrl")
_parser.add_argument(
    "--data",
    type=int,
    default=0,
    help="CPU devices for the data-parallel variant (0: cores for canonical, 1 for smollm2; 1: no mesh variant)",
)
ARGS = _parser.parse_args()
if ARGS.data == 0:
    ARGS.data = (os.cpu_count() or 1) if ARGS.model == "canonical" else 1
flags = ARGS.xla_flags + (f" --xla_force_host_platform_device_count={ARGS.data}" if ARGS.data > 1 else "")
if flags.strip():
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

import models
from engine.sharding import make_mesh
from hostload import cpu_ticks, steal_pct  # noqa: E402  (benchmarks/hostload.py, beside this script)
from models.flops import BANDWIDTH, decode_bytes
from rl.sampler import Sampler, SamplingConfig
from models.tokenizer import encode_prompts

CANONICAL = {
    "vocab_size": 4096,
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "tie_word_embeddings": True,
    "max_position_embeddings": 512,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "rms_norm_eps": 1e-6,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": None,
}
CHAT = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "How do I boil an egg? Step by step, with times.",
    "Hi!",
    "Translate 'good morning' into Spanish and German.",
    "Why is the sky blue? Explain it to a ten year old.",
    "Give me a recipe for pancakes.",
    "What is 17 times 23?",
    "Name the planets of the solar system in order.",
    "Summarise the plot of Hamlet in one paragraph.",
    "What does a compiler do?",
    "Suggest a name for a cat.",
    "Is it safe to eat raw chicken?",
    "Write a short poem about autumn leaves falling in a quiet park.",
]


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9  # best of reps: the least disturbed


def measure_bandwidth(mbytes: int = 256, reps: int = 5) -> float:
    """Bytes/s of a jitted streaming pass (read + write of an mbytes array), best of reps; the HBM table on
    accelerators."""
    kind = jax.devices()[0].device_kind
    for name, bw in BANDWIDTH.items():
        if name.lower() in kind.lower():
            return bw
    x = jnp.ones((mbytes << 20) // 4, jnp.float32)
    f = jax.jit(lambda a: a * 1.0001)
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * x.nbytes / best


def model_flops(cfg, prefill_rows: int, prompt_lens: np.ndarray, new_tokens: int, rows: int) -> float:
    """Useful FLOPs: 2 x matmul params per token processed + causal attention over the real context."""
    D, F, E = cfg.hidden_size, cfg.intermediate_size, cfg.head_size
    H, K, nl = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers
    per_tok = 2 * (nl * (D * E * (2 * H + 2 * K) + 3 * D * F) + D * cfg.vocab_size)
    attn = lambda ctx: 4 * nl * H * E * ctx  # q.k and p.v for one query over ctx keys
    # Prefill: every prompt token (the lm head only on the last one); decode: new_tokens - 1 steps.
    lm = 2 * D * cfg.vocab_size
    Lp = np.asarray(prompt_lens, np.float64)  # decode step j attends to n + j keys, j = 1 .. T-1
    reps = rows // prefill_rows
    prefill = sum((per_tok - lm) * n + lm + attn(n * (n + 1) / 2) for n in Lp[::reps])
    decode = sum(per_tok * (new_tokens - 1) + attn((new_tokens - 1) * (2 * n + new_tokens) / 2) for n in Lp)
    return float(prefill + decode)


def timed(fn, runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds per run; appends process CPU seconds (all threads) per run to `cpu`."""
    out = []
    for _ in range(runs):
        c0, t0 = os.times(), time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            c1 = os.times()
            cpu.append(c1.user + c1.system - c0.user - c0.system)
    return out


def main():
    load_before, ticks0 = os.getloadavg(), cpu_ticks()
    tmp = tempfile.mkdtemp(prefix="traitrl-bench-")
    T = 64
    if ARGS.model == "canonical":
        torch.manual_seed(0)
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**CANONICAL, dtype="float32")).eval()
        hf.save_pretrained(tmp)
        source = tmp
        policy = models.load(source)
        P, G = 8, 8
        prompts = np.random.default_rng(1).integers(2, 4096, size=(512, 32))[:P].tolist()
        pad_id = 0
    else:
        policy = models.load(ARGS.smollm2_path)
        source = policy.source
        hf = transformers.AutoModelForCausalLM.from_pretrained(policy.source, dtype=torch.float32).eval()
        P, G = 16, 1
        prompts = encode_prompts(policy.tokenizer, [[{"role": "user", "content": c}] for c in CHAT])
        pad_id = policy.tokenizer.pad_token_id
    B = P * G
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=T, stop_token_ids=(), prompt_buckets=(32, 64), seed=2)

    # Variants of ours: (name, policy, prompts, generations). HF gets every row expanded.
    flat_prompts = [p for p in prompts for _ in range(G)]
    policies = {"": policy}
    if ARGS.data > 1:
        policies[f"_data{ARGS.data}"] = models.load(source, mesh=make_mesh(data=ARGS.data))
    variants = []
    for suffix, pol in policies.items():
        variants.append((f"traitrl_grouped{suffix}", pol, prompts, G))
        if G > 1:
            variants.append((f"traitrl_flat{suffix}", pol, flat_prompts, 1))
    samplers, first_call = {}, {}
    for name, pol, ps, g in variants:
        samplers[name] = Sampler(cfg)
        t0 = time.perf_counter()
        r = samplers[name](pol, ps, g)
        first_call[name] = time.perf_counter() - t0  # trace + compile + one run
    ids = torch.tensor(r.prompt_ids_BxL.astype(np.int64))
    mask = torch.tensor(r.prompt_mask_BxL.astype(np.int64))
    gen_kwargs = {
        "attention_mask": mask,
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_new_tokens": T,
        "min_new_tokens": T,
        "use_cache": True,
        "eos_token_id": policy.config.eos_ids[0],
        "pad_token_id": pad_id,
    }
    torch.manual_seed(2)

    def run_hf():
        with torch.no_grad():
            out = hf.generate(ids, **gen_kwargs)
        assert out.shape == (B, ids.shape[1] + T), out.shape

    def run_ours(sampler, pol, ps, g):
        def go():
            out = sampler(pol, ps, g)
            assert out.completion_ids_BxT.shape == (B, T) and out.lengths_B.min() == T

        return go

    engines = {name: run_ours(samplers[name], pol, ps, g) for name, pol, ps, g in variants}
    if not ARGS.skip_hf:
        engines["hf_generate"] = run_hf
    for fn in engines.values():
        timed(fn, ARGS.warmup)
    times, cpu = {k: [] for k in engines}, {k: [] for k in engines}
    half = max(1, ARGS.runs // 2)
    while min(len(v) for v in times.values()) < ARGS.runs:  # alternating blocks: noise hits every engine
        for k, fn in engines.items():
            times[k] += timed(fn, min(half, ARGS.runs - len(times[k])), cpu[k])
    peak = matmul_peak_gflops()
    bandwidth = measure_bandwidth()
    ticks1 = cpu_ticks()
    # Steal: the share of this VM's CPU time the hypervisor gave to other tenants during the run.
    steal = steal_pct(ticks0, ticks1)

    lens = r.prompt_mask_BxL.sum(1)
    res = {
        "workload": ARGS.model,
        "sequences": B,
        "prompts": P,
        "generations": G,
        "new_tokens": T,
        "prompt_bucket": int(r.prompt_ids_BxL.shape[1]),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "compile_s": {},  # first call minus a median run
        "matmul_2048_peak_gflops": round(peak, 1),
        "bandwidth_gb_per_s": round(bandwidth / 1e9, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "steal_pct": None if steal is None else round(steal, 1),
    }
    for k, ts in times.items():
        med = statistics.median(ts)
        entry = {
            "median_s": round(med, 4),
            "min_s": round(min(ts), 4),
            "tokens_per_s": round(B * T / med, 1),
            "cores_used": round(sum(cpu[k]) / sum(ts), 2),
        }
        if k != "hf_generate":
            prefill_rows = P if k.startswith("traitrl_grouped") else B
            fl = model_flops(policy.config, prefill_rows, lens, T, B)
            entry["gflops_per_s"] = round(fl / med / 1e9, 2)
            entry["fraction_of_matmul_peak"] = round(fl / med / 1e9 / peak, 3)
            groups = (P, G) if k.startswith("traitrl_grouped") else (B, 1)
            db = decode_bytes(policy.config, groups[0], groups[1], int(r.prompt_ids_BxL.shape[1]), T)
            roof = B * db["steps"] / (db["total"] / bandwidth)
            entry["decode_gb_read"] = round(db["total"] / 1e9, 2)
            entry["bandwidth_roofline_tokens_per_s"] = round(roof, 1)
            entry["fraction_of_bandwidth_roofline"] = round(B * T / med / roof, 3)
        res[k] = entry
        if k in first_call:
            res["compile_s"][k] = round(first_call[k] - med, 2)
    if "hf_generate" in times:
        for k in engines:
            if k != "hf_generate":
                res[f"speedup_{k}_vs_hf"] = round(res[k]["tokens_per_s"] / res["hf_generate"]["tokens_per_s"], 2)
    for k in engines:
        print(
            f"{k:22s} {res[k]['tokens_per_s']:9.1f} tokens/s  (median {res[k]['median_s']:.3f} s, "
            f"min {res[k]['min_s']:.3f} s, {res[k]['cores_used']} cores)"
        )
    for k, v in res.items():
        if k.startswith("speedup"):
            print(f"{k}: {v}x")
    for k in engines:
        if k != "hf_generate":
            e = res[k]
            print(f"{k:22s} bandwidth roofline {e['bandwidth_roofline_tokens_per_s']:9.1f} tokens/s "
                  f"({e['decode_gb_read']} GB read at {res['bandwidth_gb_per_s']} GB/s): "
                  f"{e['fraction_of_bandwidth_roofline']:.0%} of it; "
                  f"{e['fraction_of_matmul_peak']:.0%} of the matmul peak")
    print(
        f"compile: {res['compile_s']}   matmul peak: {peak:.1f} GFLOP/s   load before: {res['loadavg_before']}"
        f"   steal: {res['steal_pct']}%"
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
