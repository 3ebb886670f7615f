"""Forward-pass throughput: traitrl (JAX) vs transformers (PyTorch) on the same weights, one run.

    python benchmarks/forward.py [--model smollm2-135m-instruct] [--batch 8] [--length 256]

Both engines compute fp32 logits for a batch x length block of token ids (no padding). Prints
tokens/s of each, the ratio, compile time, and achieved GFLOP/s against a 2048^3 matmul peak
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def forward_flops(cfg, batch: int, length: int) -> float:
    """Matmul FLOPs of one forward: 2 x weights x tokens + attention scores/values + lm head."""
    tokens = batch * length
    dense = 2 * cfg.num_params(include_embedding=False) * tokens
    attn = 2 * 2 * batch * length * length * cfg.num_attention_heads * cfg.head_size * cfg.num_hidden_layers
    head = 2 * cfg.hidden_size * cfg.vocab_size * tokens
    return dense + attn + head


def _time(fn, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    import torch
    import transformers

    import models

    t0 = time.perf_counter()
    policy = models.load(args.model)
    load_s = time.perf_counter() - t0
    cfg = policy.config
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.length))
    mask = np.ones_like(ids, dtype=bool)

    fwd = jax.jit(lambda m, i, k: m(i, attention_mask=k))
    ji, jm = jnp.asarray(ids), jnp.asarray(mask)
    t0 = time.perf_counter()
    fwd(policy.model, ji, jm).block_until_ready()
    compile_s = time.perf_counter() - t0
    ours = _time(lambda: fwd(policy.model, ji, jm).block_until_ready(), 1, args.reps)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    hf = transformers.AutoModelForCausalLM.from_pretrained(policy.source, dtype=torch.float32).eval()
    ti = torch.tensor(ids)
    with torch.inference_mode():
        theirs = _time(lambda: hf(input_ids=ti).logits, 1, args.reps)

    peak = matmul_peak_gflops()
    tokens = args.batch * args.length
    flops = forward_flops(cfg, args.batch, args.length)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    result = {
        "model": args.model, "batch": args.batch, "length": args.length, "load_s": round(load_s, 2),
        "traitrl_tokens_per_s": round(tokens / ours_s, 1), "hf_tokens_per_s": round(tokens / theirs_s, 1),
        "ratio": round(theirs_s / ours_s, 2), "traitrl_compile_s": round(compile_s, 2),
        "traitrl_gflops": round(flops / ours_s / 1e9, 1), "hf_gflops": round(flops / theirs_s / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1), "traitrl_fraction_of_peak": round(flops / ours_s / 1e9 / peak, 3),
        "devices": str(jax.devices()[0].device_kind), "torch_threads": torch.get_num_threads(),
    }
    print(f"traitrl {result['traitrl_tokens_per_s']:.0f} tok/s | transformers {result['hf_tokens_per_s']:.0f} tok/s "
          f"| ratio {result['ratio']:.2f}x | {result['traitrl_gflops']:.0f} GFLOP/s of a "
          f"{result['matmul_peak_gflops']:.0f} GFLOP/s matmul peak")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
