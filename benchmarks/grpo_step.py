"""One full GRPO step (rollout + rewards + reference + update): traitrl's Learner vs TRL's GRPOTrainer on CPU.

    python benchmarks/grpo_step.py                      # canonical workload, 8 timed steps, 2 interleaved rounds
    python benchmarks/grpo_step.py --rounds 3 --steps 6
    python benchmarks/grpo_step.py --skip-trl           # ours only (profiling)
    python benchmarks/grpo_step.py --xla-flags="--xla_cpu_use_onednn=true"

Workload: ../shared/peers/workload.json ("tiny-qwen2-grpo-v1"), read here and by the peer harness, so both
engines do the same work: the seeded random Qwen2 (vocab 4096, hidden 256, 4 layers, 3.87 M parameters)
that the peers' `common.py` writes once as an HF directory (both engines load that same safetensors file);
8 prompts x 8 generations, prompts of exactly 32 tokens, exactly 64 new tokens (TRL: min_new_tokens masks
EOS; ours: no stop ids), temperature 1 over the full vocabulary, the clipped GRPO loss ("grpo") with
beta 0.04 k3 KL to a frozen reference, one AdamW step per rollout batch (lr 1e-6, clip 1.0), and the
"fraction of even token ids" reward (pure Python). TRL runs the peers' own `trl_grpo.py` unchanged, in a
subprocess (its memory is its own), with vLLM, gradient checkpointing and bf16 off.

Both engines are timed in the same invocation, in alternating rounds (TRL's run, then our steps), because
the host is a shared 2-core VM whose noise moves single runs by 2x; each round records the hypervisor's
steal and the load average. Ours is compiled and warmed up first (compile time reported separately);
TRL does its own 3 warmup steps per run. Reported: seconds per step (median and min, all rounds pooled),
the ratio TRL / traitrl, our split (rollout / rewards / reference / update, from the Learner's metrics),
each engine's peak RSS (`ru_maxrss`: ours of this process, TRL's of its subprocess), and our step's
FLOP utilisation against a 2048^3 float32 matmul measured in the same run (best of the rounds).

FLOPs, two counts. Nominal (`engine.flops.grpo_step_flops`, the issue's ~237 GFLOP and the Learner's `mfu`):
2 x matmul parameters (lm head included) per token of every forward, attention over the average context,
backward = 2 x forward, the rollout as 64 independent rows. Needed (`step_flops` here, ~210 GFLOP): what
this workload cannot avoid -- each group's shared prompt prefilled once, the lm head only where a
log-prob or a next token is needed, causal attention counted exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--steps", type=int, default=8, help="timed steps per engine per round")
_parser.add_argument("--warmup", type=int, default=3, help="our warmup steps after the compiling first step")
_parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (TRL run, then our steps)")
_parser.add_argument("--data", type=int, default=0, help="CPU devices for our data-parallel mesh (0: the cores)")
_parser.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for our engine (set before jax is imported)")
_parser.add_argument("--peers", default=os.path.join(os.path.dirname(ROOT), "shared", "peers"),
                     help="the peer harness directory (workload.json, common.py, trl_grpo.py)")
_parser.add_argument("--trl-python", default=sys.executable, help="python with torch, transformers and trl")
_parser.add_argument("--model-dir", default="", help="where the peers' model is written (default: a temp dir)")
_parser.add_argument("--skip-trl", action="store_true", help="time only traitrl")
_parser.add_argument("--json-out", default="", help="also write the result JSON here")
ARGS = _parser.parse_args()
ARGS.data = ARGS.data or (os.cpu_count() or 1)
_flags = ARGS.xla_flags + (f" --xla_force_host_platform_device_count={ARGS.data}" if ARGS.data > 1 else "")
if _flags.strip():
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flags).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, ROOT)
sys.path.insert(0, ARGS.peers)

import common  # the peers' workload pieces: numpy only at import)
from hostload import cpu_ticks, steal_pct  # noqa: E402  (benchmarks/hostload.py, beside this script)

W = common.W


def write_peer_model(model_dir: str) -> None:
    """The peers' seeded model + tokenizer, written by their own code in the TRL python (keeps torch out of ours)."""
    code = "import sys, common; common.save_model_and_tokenizer(sys.argv[1])"
    subprocess.run([ARGS.trl_python, "-c", code, model_dir], cwd=ARGS.peers, check=True,
                   env={**os.environ, "PEER_MODEL_DIR": model_dir}, stdout=subprocess.DEVNULL)


def run_trl(model_dir: str, steps: int) -> dict:
    """One run of the peers' trl_grpo.py (its 3 warmup + `steps` timed steps); adds its peak RSS and steal."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PEER_MODEL_DIR"] = model_dir
    load, ticks0 = os.getloadavg(), cpu_ticks()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([ARGS.trl_python, "trl_grpo.py", str(steps)], cwd=ARGS.peers, env=env,
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own rusage (peak RSS)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"trl_grpo.py failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    res = json.loads(lines[-1])
    res["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    res["steal_pct"] = steal_pct(ticks0, cpu_ticks())
    res["loadavg_before"] = [round(x, 2) for x in load]
    return res


# ---------------------------------------------------------------------------------------------
# Ours

import jax
import jax.numpy as jnp
from flax import nnx

import models
from models.flops import grpo_step_flops
from engine.sharding import make_mesh
from data.pipeline import PromptBatch, prompt_batch
from rl import grpo
from rl.learner import Learner, LearnerConfig
from rl.sampler import Sampler, SamplingConfig, _compiles
from engine.train_state import OptimConfig

P, G, T, LP = W["prompts_per_step"], W["generations_per_prompt"], W["completion_len"], W["prompt_len"]


class PromptStream:
    """The peers' prompt pool: step k gets rows [k*P, (k+1)*P), each exactly `prompt_len` ids (no padding)."""

    def __init__(self):
        self.pool, self.k = common.prompt_pool(), 0

    def __next__(self) -> PromptBatch:
        n = len(self.pool) // P
        rows = self.pool[P * (self.k % n) : P * (self.k % n + 1)]
        self.k += 1
        return prompt_batch([{"id": f"s{self.k}-{i}"} for i in range(len(rows))], [r.tolist() for r in rows], (LP,), 0)


def even_fraction(prompts: list[str], completions: list[str], records: list[dict]) -> list[float]:
    """The workload's reward: fraction of completion tokens with an even id (words are 't<id>')."""
    out = []
    for text in completions:
        ids = [int(w[1:]) for w in text.split() if w[:1] == "t" and w[1:].isdigit()]
        out.append(sum(i % 2 == 0 for i in ids) / max(len(ids), 1))
    return out


def build_learner(model_dir: str) -> Learner:
    mesh = make_mesh(data=ARGS.data) if ARGS.data > 1 else None
    policy = models.load(model_dir, mesh=mesh)
    ref = jax.tree.map(lambda x: x.copy(), nnx.state(policy.model, nnx.Param))  # frozen reference = initial policy
    sampler = Sampler(SamplingConfig(temperature=W["temperature"], top_p=W["top_p"], top_k=W["top_k"],
                                     max_new_tokens=T, prompt_buckets=(LP,), stop_token_ids=(),
                                     seed=W["seeds"]["sampling"]))
    gcfg = grpo.GRPOConfig(num_generations=G, max_completion_length=T, beta=W["beta_kl"], epsilon=W["clip_epsilon"],
                           loss_type="grpo", scale_rewards="group")
    o = W["optimizer"]
    optim = OptimConfig(learning_rate=o["lr"], schedule="constant", b1=o["betas"][0], b2=o["betas"][1], eps=o["eps"],
                        weight_decay=o["weight_decay"], max_grad_norm=o["grad_clip_norm"])
    return Learner(policy, sampler, [("even", even_fraction)], PromptStream(), gcfg, optim,
                   LearnerConfig(steps=10**6, progress=False, seed=W["seeds"]["sampling"]), reference_params=ref)


def step_flops(cfg, prompts: int, gens: int, prompt_len: int, new: int) -> dict[str, float]:
    """Useful FLOPs of one step by phase: 2 x matmul params per token + causal attention (q.k and p.v)."""
    D, F, E, V = cfg.hidden_size, cfg.intermediate_size, cfg.head_size, cfg.vocab_size
    H, K, nl = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers
    trunk = 2 * nl * (D * E * (2 * H + 2 * K) + 3 * D * F)  # per token, without the lm head
    head = 2 * D * V
    attn = lambda ctx: 4 * nl * H * E * ctx  # one query over ctx keys
    B, L = prompts * gens, prompt_len + new
    # Rollout: prefill of each distinct prompt (lm head on its last token), then new - 1 decode steps of B rows.
    prefill = prompts * (trunk * prompt_len + attn(prompt_len * (prompt_len + 1) / 2) + head)
    decode = B * sum(trunk + head + attn(prompt_len + j + 1) for j in range(new - 1))
    # One teacher-forced forward of B x L: trunk + causal attention everywhere, lm head on the `new` positions.
    forward = B * (trunk * L + attn(L * (L + 1) / 2) + head * new)
    return {"rollout": prefill + decode, "reference": forward, "update": 3 * forward}


def matmul_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9  # best of reps: the least disturbed


def run_ours(learner: Learner, steps: int) -> tuple[list[dict], dict]:
    load, ticks0, c0 = os.getloadavg(), cpu_ticks(), os.times()
    wall0 = time.perf_counter()
    rows = [learner.train_step() for _ in range(steps)]
    wall, c1 = time.perf_counter() - wall0, os.times()
    info = {"steal_pct": steal_pct(ticks0, cpu_ticks()), "loadavg_before": [round(x, 2) for x in load],
            "cores_used": round((c1.user + c1.system - c0.user - c0.system) / wall, 2)}
    return rows, info


def _stats(xs: list[float]) -> dict:
    return {"median_s": round(statistics.median(xs), 4), "min_s": round(min(xs), 4), "max_s": round(max(xs), 4)}


def main() -> None:
    model_dir = ARGS.model_dir or tempfile.mkdtemp(prefix="traitrl-grpo-bench-")
    write_peer_model(model_dir)

    learner = build_learner(model_dir)
    t0 = time.perf_counter()
    learner.train_step()  # traces and compiles the rollout, the reference forward and the update
    first_s = time.perf_counter() - t0
    for _ in range(ARGS.warmup):
        learner.train_step()
    # Compilations are counted over our timed steps only: the matmul-peak probe between rounds compiles too.
    recompiles = 0
    ours, trl, peaks, rounds = [], [], [], []
    for r in range(ARGS.rounds):
        if not ARGS.skip_trl:
            trl_run = run_trl(model_dir, ARGS.steps)
            trl.append(trl_run)
        compiles_before = getattr(_compiles, "n", 0)
        rows, info = run_ours(learner, ARGS.steps)
        recompiles += getattr(_compiles, "n", 0) - compiles_before
        ours += rows
        peaks.append(matmul_peak_gflops())
        rounds.append({"round": r, "ours": {**_stats([m["step_time"] for m in rows]), **info},
                       **({} if ARGS.skip_trl else {"trl": {"median_s": round(trl_run["median_s"], 4),
                                                             "min_s": round(trl_run["min_s"], 4),
                                                             "steal_pct": trl_run["steal_pct"],
                                                             "cores_used": trl_run["cores_used"]}}),
                       "matmul_peak_gflops": round(peaks[-1], 1)})
    our_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    step_s = [m["step_time"] for m in ours]
    med = statistics.median(step_s)
    phases = {k: _stats([m[f"time/{k}"] for m in ours]) for k in ("rollout", "rewards", "reference", "update")}
    fl = step_flops(learner.policy().config, P, G, LP, T)
    nominal = grpo_step_flops(learner.policy().config, P * G, LP, T, True)
    peak = max(peaks)
    total_gflop, nominal_gflop = sum(fl.values()) / 1e9, sum(nominal.values()) / 1e9
    res = {
        "workload": W["name"],
        "sequences": P * G, "prompt_len": LP, "new_tokens": T,
        "data_devices": ARGS.data, "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__,
        "traitrl": {**_stats(step_s), "steps": len(step_s), "phases": phases,
                    "peak_rss_mb": round(our_rss, 1), "first_step_s": round(first_s, 2),
                    "compile_s": round(first_s - med, 2), "recompiles_during_timed_steps": recompiles,
                    "step_gflop_nominal": round(nominal_gflop, 1),
                    "fraction_of_matmul_peak_nominal": round(nominal_gflop / med / peak, 3),
                    "step_gflop": round(total_gflop, 1),
                    "phase_gflop": {k: round(v / 1e9, 1) for k, v in fl.items()},
                    "gflops_per_s": round(total_gflop / med, 1),
                    "fraction_of_matmul_peak": round(total_gflop / med / peak, 3),
                    "phase_fraction_of_peak": {k: round(fl[k] / 1e9 / phases[k]["median_s"] / peak, 3)
                                               for k in fl}},
        "matmul_2048_peak_gflops": round(peak, 1),
        "rounds": rounds,
    }
    if trl:
        trl_steps = [s for run in trl for s in run["all_s"]]
        tmed = statistics.median(trl_steps)
        res["trl"] = {**_stats(trl_steps), "steps": len(trl_steps),
                      "phases": {k: _stats([s for run in trl for s in run[f"{k}_s"]["all_s"]])
                                 for k in ("generate", "score", "train")},
                      "peak_rss_mb": max(run["peak_rss_mb"] for run in trl),
                      "gflops_per_s_on_our_count": round(total_gflop / tmed, 1),
                      "versions": {k: trl[0][k] for k in ("torch", "transformers", "trl", "torch_threads")}}
        res["ratio_trl_over_traitrl"] = round(tmed / med, 2)
        res["ratio_min_trl_over_min_traitrl"] = round(min(trl_steps) / min(step_s), 2)

    o = res["traitrl"]
    print(f"traitrl  {o['median_s']:.3f} s/step (min {o['min_s']:.3f}, max {o['max_s']:.3f}, {o['steps']} steps)   "
          + "  ".join(f"{k} {v['median_s']:.3f}" for k, v in phases.items()))
    if trl:
        t = res["trl"]
        print(f"trl      {t['median_s']:.3f} s/step (min {t['min_s']:.3f}, max {t['max_s']:.3f}, {t['steps']} steps)   "
              + "  ".join(f"{k} {v['median_s']:.3f}" for k, v in t["phases"].items()))
        print(f"ratio TRL / traitrl: {res['ratio_trl_over_traitrl']}x (medians), "
              f"{res['ratio_min_trl_over_min_traitrl']}x (mins)   peak RSS: traitrl {o['peak_rss_mb']} MB, "
              f"TRL {t['peak_rss_mb']} MB")
    print(f"FLOP utilisation: {o['fraction_of_matmul_peak_nominal']:.0%} of the {peak:.0f} GFLOP/s matmul peak on the "
          f"nominal {o['step_gflop_nominal']} GFLOP, {o['fraction_of_matmul_peak']:.0%} on the needed "
          f"{o['step_gflop']} GFLOP ({o['gflops_per_s']} GFLOP/s); per phase (needed) {o['phase_fraction_of_peak']}")
    print(f"compile {o['compile_s']} s (first step {o['first_step_s']} s), recompiles in timed steps: {recompiles}; "
          f"rounds: " + "; ".join(f"{x['round']}: ours {x['ours']['median_s']} (steal {x['ours']['steal_pct']}%)"
                                  + (f" trl {x['trl']['median_s']} (steal {x['trl']['steal_pct']}%)" if "trl" in x
                                     else "") for x in rounds))
    if ARGS.json_out:
        with open(ARGS.json_out, "w") as fh:
            json.dump(res, fh, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
