"""The memory plan: peak device memory of each phase of a GRPO step, and the micro-batches / remat that fit.

`plan(cfg, work, ...)` estimates, per device, what each phase holds:

  resident   the parameters (param dtype, sharded by the rules table), AdamW's two moments, the frozen
             reference copy (compute dtype): alive for the whole run
  rollout    + the rollout's weights (compute dtype, replicated over fsdp when the sampler gathers them),
             the prompts' KV (once per prompt), the completions' KV, the prefill's transient (one layer)
             and the sampling temporaries over the vocabulary
  reference  + one micro-batch's forward (a layer's activations at a time, then the chunked lm head)
  update     + the gradient accumulator, one micro-batch's saved activations (by remat level), one layer's
             backward transient, a logits chunk forward and backward; the optimizer's transient at the end

`choose(...)` picks the smallest micro-batch count M (a divisor of the batch whose micro-batches still split
evenly over the batch axes of the mesh) and the lightest remat level (none < block < full) that fit, or
raises a one-line `UserError` naming what to change. `Plan.table()` prints the phases.

Numbers are bytes per device. How many copies of each activation XLA keeps is backend-specific; the CPU
constants are fitted to XLA:CPU's own `compiled.memory_analysis()` of the real programs
(tests/models/test_memory.py holds them within 25%); GPU / TPU use the same tensor inventory with the fused
kernels' figures (cuDNN / splash keep no [L, S] score tensor). `benchmarks/device.py` compares the plan with a
GPU's measured peak.

Legend: P prompts, G generations, B = P * G sequences, M micro-batches, b rows per device per micro-batch,
L prompt length, T completion length, Lf = L + T, N layers, D width, F ffn width, V vocab, H / K heads,
E head dim, c compute-dtype bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

from engine.errors import UserError
from engine.sharding import spec_for
from models import attention as attention_lib
from models.config import REMAT_LEVELS, ModelConfig

GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Workload:
    """The shapes of one GRPO step (what the plan needs of the run's config)."""

    prompts: int  # P prompts per step
    generations: int  # G completions per prompt
    prompt_len: int  # L: the (largest) prompt bucket
    completion_len: int  # T: max new tokens
    reference: bool = True  # beta > 0: a frozen reference and its forward
    old_logps: bool = False  # num_iterations > 1: the sampler's log-probs ride along in the batch
    logps_chunk: int = 64  # positions per chunk of the lm head + log-softmax
    kv_block: int = 0  # the sampler's completion KV block (0 = auto)
    gather_weights: bool = True  # the sampler replicates its compute-dtype weights over fsdp

    @property
    def sequences(self) -> int:
        return self.prompts * self.generations

    @property
    def length(self) -> int:
        return self.prompt_len + self.completion_len


@dataclasses.dataclass(frozen=True)
class Device:
    """One accelerator as the plan sees it."""

    bytes: int  # memory of one device
    backend: str = "gpu"  # cpu | gpu | tpu: picks the attention kernel of "auto" and XLA's activation figures
    usable: float = 0.92  # the share the run may fill (GPU: XLA_PYTHON_CLIENT_MEM_FRACTION; headroom elsewhere)
    name: str = ""

    @property
    def budget(self) -> float:
        return self.bytes * self.usable


H200 = Device(141 * 10**9, "gpu", 0.92, "H200 141 GB")
H100 = Device(80 * 10**9, "gpu", 0.92, "H100 / A100 80 GB")
TPU_V5E = Device(16 * GiB, "tpu", 0.92, "TPU v5e 16 GiB")


# How many bytes XLA keeps per activation element, by backend. A phase's peak is what persists through it
# (parameters, gradients, the activations saved for the backward pass) plus the largest of its transient
# moments, which never overlap: one layer's attention, one layer's MLP, one logits chunk, the optimizer update.
# The CPU constants are fitted to XLA:CPU's `memory_analysis()` of the real programs; GPU / TPU take the same
# inventory (their fused softmax keeps fewer score copies; cuDNN / splash keep no score tensor at all).
@dataclasses.dataclass(frozen=True)
class _Keep:
    saved_d: float  # remat none: activation copies per D element per token per layer kept for the backward
    saved_f: float  # ... per F element (gate, up, their product)
    saved_heads: float  # ... per (H + 2K) * E element (q, k, v after RoPE)
    score_saved: float  # remat none, dense kernels: bytes per [b, H, Lf, S] score element kept per layer
    score_bwd: float  # bytes per score element alive in one layer's backward (dense kernels)
    layer_bwd: float  # one layer's backward transient besides its scores, in multiples of its "saved" bytes
    layer_bwd_block: float  # ... under remat block (its matmul outputs are saved: little else is rebuilt)
    layer_bwd_remat: float  # ... under remat full, which recomputes the whole layer's forward first
    score_fwd: float  # bytes per score element alive in a forward-only layer (reference, prefill)
    mlp_fwd: float  # activation copies per F element per token alive in a forward-only layer's MLP
    logits_bwd: float  # float32 copies of a [b, C, V] logits chunk alive in its forward + backward
    logits_fwd: float  # ... in a forward-only chunk
    opt: float  # the optimizer update's transient, in multiples of the parameters' bytes
    upcast: bool = False  # XLA:CPU computes bf16 activations in float32 (float normalisation): 4 bytes each
    upcast_weights: float = 0.0  # ... and converts bf16 weights to float32 for its dots: this share of a copy


_KEEP = {
    # Fitted over 36 programs (benchmarks/memory_plan.py --check): worst 32%, most within 15%.
    "cpu": _Keep(saved_d=6.7, saved_f=3.86, saved_heads=1.0, score_saved=6.5, score_bwd=16.9, layer_bwd=1.0,
                 layer_bwd_block=0.3, layer_bwd_remat=1.8, score_fwd=9.0, mlp_fwd=3.55, logits_bwd=2.6,
                 logits_fwd=2.0, opt=1.5,
                 upcast=True, upcast_weights=1.0),
    # The same inventory with GPU XLA's fused softmax (two score copies fewer) and bf16 activations as stored.
    "gpu": _Keep(saved_d=6.0, saved_f=3.5, saved_heads=1.0, score_saved=6.0, score_bwd=12.0, layer_bwd=1.0,
                 layer_bwd_block=0.3, layer_bwd_remat=1.8, score_fwd=8.0, mlp_fwd=3.0, logits_bwd=2.6,
                 logits_fwd=2.0, opt=1.5),
}
_KEEP["tpu"] = _KEEP["gpu"]


class _MeshShape:
    """What `engine.sharding.spec_for` reads of a mesh: its axis sizes."""

    def __init__(self, data: int, fsdp: int, tensor: int):
        self.shape = {"data": data, "fsdp": fsdp, "tensor": tensor}


@functools.lru_cache(maxsize=256)
def _param_shapes(cfg: ModelConfig) -> tuple[tuple[tuple[int, ...], tuple], ...]:
    """(shape, logical axes) of every parameter, from the abstract model (nothing is allocated)."""
    from flax import nnx

    from models.transformer import Decoder

    model = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0)))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return tuple((tuple(v.get_value().shape), tuple(v.get_metadata()["logical_axes"])) for _, v in flat)


def param_elements(cfg: ModelConfig, mesh: tuple[int, int, int] = (1, 1, 1), gather_fsdp: bool = False,
                   only_head: bool = False) -> float:
    """Parameter elements one device holds under the rules table (`gather_fsdp`: replicated over fsdp;
    `only_head`: just the embedding, final norm and lm head)."""
    m = _MeshShape(*mesh)
    total = 0.0
    for shape, axes in _param_shapes(cfg):
        if only_head and "vocab" not in axes and axes != ("norm",):
            continue
        spec = spec_for(shape, axes, m)
        div = 1
        for entry in spec:
            for a in (entry,) if isinstance(entry, str) else (entry or ()):
                if not (gather_fsdp and a == "fsdp"):
                    div *= m.shape[a]
        total += math.prod(shape) / div
    return total


def _layer_elements(cfg: ModelConfig, tensor: int) -> float:
    """One block's parameter elements on a device of a (1, 1, tensor) mesh (the fsdp-gathered share)."""
    one = dataclasses.replace(cfg, num_hidden_layers=1, scan_layers=False)
    return param_elements(one, (1, 1, tensor)) - param_elements(one, (1, 1, tensor), only_head=True)


def _nbytes(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else 4


def _shard(n: int, ways: int) -> float:
    """A dimension of size n over `ways` devices (replicated when it does not divide, as the rules do)."""
    return n / ways if ways > 1 and n % ways == 0 else float(n)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Bytes per device of each phase's parts; `fits` when the largest phase is within the device's budget."""

    cfg: ModelConfig
    work: Workload
    mesh: tuple[int, int, int]
    micro_batches: int
    remat: str
    device: Device
    attention: str  # the self-attention kernel the plan assumed
    phases: dict[str, dict[str, float]]  # phase -> part -> bytes (each phase includes the resident parts)
    programs: dict[str, dict[str, float]]  # phase -> the compiled program's own bytes (arguments, temps, outputs)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # phase -> what its largest transient is

    @property
    def peaks(self) -> dict[str, float]:
        return {k: sum(v.values()) for k, v in self.phases.items()}

    @property
    def peak(self) -> float:
        return max(self.peaks.values())

    @property
    def peak_phase(self) -> str:
        return max(self.peaks, key=self.peaks.get)

    @property
    def fits(self) -> bool:
        return self.peak <= self.device.budget

    def summary(self) -> str:
        p = self.peaks
        return (f"{self.cfg.num_params() / 1e9:.2f}B params, B={self.work.sequences} x {self.work.length} tokens, "
                f"mesh {self.mesh}, M={self.micro_batches}, remat={self.remat}, attention={self.attention}: "
                f"peak {self.peak / GiB:.1f} GiB ({self.peak_phase}) of {self.device.budget / GiB:.1f} GiB usable"
                f" on {self.device.name or self.device.backend} -- rollout {p['rollout'] / GiB:.1f}, reference "
                f"{p['reference'] / GiB:.1f}, update {p['update'] / GiB:.1f} GiB"
                + ("" if self.fits else " -- DOES NOT FIT"))

    def table(self) -> str:
        """Parts x phases in GiB, one row per part."""
        parts: list[str] = []
        for ph in self.phases.values():
            parts += [k for k in ph if k not in parts]
        head = f"{'GiB per device':<34}" + "".join(f"{ph:>11}" for ph in self.phases)
        rows = [head]
        for part in parts:
            rows.append(f"{part:<34}" + "".join(f"{self.phases[ph].get(part, 0.0) / GiB:>11.2f}"
                                                  for ph in self.phases))
        rows.append(f"{'total':<34}" + "".join(f"{v / GiB:>11.2f}" for v in self.peaks.values()))
        rows.append("largest transient: " + "; ".join(f"{k}: {v}" for k, v in self.notes.items() if v))
        return "\n".join(rows)


def plan(cfg: ModelConfig, work: Workload, mesh: tuple[int, int, int] = (1, 1, 1), micro_batches: int = 1,
         remat: str | None = None, device: Device = H100, reference_micro_batches: int | None = None) -> Plan:
    """The memory plan of one configuration. `remat` None = the config's; the reference forward runs in
    `reference_micro_batches` (default: the update's M) micro-batches."""
    remat = cfg.remat if remat is None else remat
    if remat not in REMAT_LEVELS:
        raise UserError(f"remat: expected one of {REMAT_LEVELS}, got '{remat}'")
    keep = _KEEP.get(device.backend, _KEEP["gpu"])
    data, fsdp, tensor = mesh
    nb = data * fsdp
    B, Lf, T, L = work.sequences, work.length, work.completion_len, work.prompt_len
    N, D, F, V, E = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_size
    H, K = _shard(cfg.num_attention_heads, tensor), _shard(cfg.num_key_value_heads, tensor)
    if cfg.num_attention_heads % tensor or cfg.num_key_value_heads % tensor:  # the rules replicate both then
        H, K = float(cfg.num_attention_heads), float(cfg.num_key_value_heads)
    Fd, Vd = _shard(F, tensor), _shard(V, tensor)
    c, pb = _nbytes(cfg.dtype), _nbytes(cfg.param_dtype)
    ca = 4 if keep.upcast else c  # bytes of an activation element (stored tensors -- weights, KV -- use c)
    Mr = reference_micro_batches or micro_batches

    params = param_elements(cfg, mesh)
    resident = {"parameters": params * pb, "optimizer (AdamW moments)": 2 * params * pb}
    if work.reference:
        resident["reference copy"] = params * c

    def rows(m: int) -> float:  # rows of one micro-batch on one device
        return B / m / nb if (B // m) % nb == 0 else B / m

    impl = attention_lib.resolve(cfg, Lf, device.backend)
    dense = impl in ("reference", "xla")
    chunk_rows = min(cfg.attention_chunk, Lf) if impl == "chunked" else Lf

    def saved_per_token() -> float:  # one layer, remat none
        return ca * (keep.saved_d * D + keep.saved_heads * (H + 2 * K) * E + keep.saved_f * Fd)

    def scores(b: float, q_rows: float, keys: float) -> float:  # elements of one layer's score tensor
        return b * H * q_rows * keys

    dense_scores = impl in ("reference", "xla", "chunked")  # cuDNN / splash keep no score tensor
    q_rows = lambda n: min(chunk_rows, n)  # query rows of one score block (the chunked kernel: its chunk)
    C = min(work.logps_chunk, T)
    upcast_w = keep.upcast_weights if (keep.upcast and c == 2) else 0.0  # XLA:CPU's float32 copies of bf16 weights
    # Under fsdp each device all-gathers the weights it computes with: one layer at a time inside a scan, all
    # of them in a Python loop of layers (XLA hoists the gathers), plus the embedding / lm head; the backward
    # also holds a layer's unsharded gradient before its reduce-scatter.
    gathered = per_layer = head = 0.0
    if fsdp > 1:
        full = param_elements(cfg, mesh, gather_fsdp=True)
        per_layer = _layer_elements(cfg, tensor)
        head = full - N * per_layer
        gathered = (per_layer if cfg.scan else N * per_layer) + head

    # ---- update: one micro-batch's forward + backward, then the optimizer
    b = rows(micro_batches)
    tok = b * Lf
    if remat == "none":
        saved = N * tok * saved_per_token() + (N * scores(b, Lf, Lf) * keep.score_saved if dense else 0.0)
    elif remat == "block":  # the block input and the matmul outputs: x, q/k/v, o, gate, up, down
        saved = N * tok * ca * (D + (H + 2 * K) * E + 2 * D + 2 * Fd)
    else:  # full: the block input only
        saved = N * tok * ca * D
    rebuild = {"none": keep.layer_bwd, "block": keep.layer_bwd_block, "full": keep.layer_bwd_remat}[remat]
    layer_bwd = rebuild * tok * saved_per_token() + (
        scores(b, q_rows(Lf), Lf) * keep.score_bwd if dense_scores else 0.0)
    logits_bwd = keep.logits_bwd * b * C * Vd * 4 + 2 * b * T * D * ca  # a chunk + the completion's hidden
    opt = keep.opt * params * pb
    moments = {"one layer's backward": layer_bwd, "logits chunk (fwd + bwd)": logits_bwd, "optimizer update": opt}
    top = max(moments, key=moments.get)
    batch_bytes = B / nb * (Lf * 5 + T * 4 * (2 + work.reference + work.old_logps))
    update = {**resident, "gradient accumulator": params * pb, "saved activations": saved,
              "largest transient": moments[top], "batch": batch_bytes}
    wb = 4 * upcast_w if upcast_w else c  # bytes of a gathered weight element (XLA:CPU holds bf16 ones in fp32)
    if gathered:
        update["all-gathered weights + a layer's gradient"] = gathered * wb + (per_layer + head) * pb
    elif upcast_w:
        update["float32 weights (XLA:CPU)"] = params * 4 * upcast_w

    # ---- reference forward: one micro-batch at a time
    br = rows(Mr)
    tok_r = br * Lf
    ref_moments = {"attention": scores(br, q_rows(Lf), Lf) * keep.score_fwd if dense_scores else 0.0,
                   "MLP": keep.mlp_fwd * tok_r * Fd * ca, "logits chunk": keep.logits_fwd * br * C * Vd * 4}
    rtop = max(ref_moments, key=ref_moments.get)
    reference = {**resident}
    if work.reference:
        reference.update({"trunk activations": 2 * tok_r * D * ca, "largest transient": ref_moments[rtop],
                          "log-probs": B / nb * T * 4, "batch": B / nb * Lf * 5})
        if gathered:
            reference["all-gathered weights"] = gathered * wb
        elif upcast_w:
            reference["float32 weights (XLA:CPU)"] = params * 4 * upcast_w

    # ---- rollout
    gather = work.gather_weights and fsdp > 1
    copy = param_elements(cfg, mesh, gather_fsdp=gather) * c if (c != pb or gather) else 0.0
    Pd = work.prompts / nb if work.prompts % nb == 0 else float(work.prompts)
    Bd = B / nb if B % nb == 0 else float(B)
    kv_token = 2 * N * K * E * c
    prompt_kv = Pd * L * kv_token
    completion_kv = Bd * max(T - 1, 0) * kv_token
    roll_moments = {"prefill attention": scores(Pd, q_rows(L), L) * keep.score_fwd if dense_scores else 0.0,
                    "prefill MLP": keep.mlp_fwd * Pd * L * Fd * ca + 2 * Pd * L * D * ca,
                    "sampling over the vocabulary": 6 * Bd * Vd * 4}
    otop = max(roll_moments, key=roll_moments.get)
    rollout = {**resident, "rollout weights (compute dtype)": copy, "prompt KV (once per prompt)": prompt_kv,
               "completion KV": completion_kv, "largest transient": roll_moments[otop],
               "ids, log-probs": Bd * T * 16}
    if gathered and not gather:
        rollout["all-gathered weights"] = gathered * c
    if upcast_w:
        rollout["float32 weights (XLA:CPU)"] = (copy / c if copy else params) * 4 * upcast_w
    notes = {"rollout": otop, "reference": rtop if work.reference else "", "update": top}

    phases = {"rollout": rollout, "reference": reference, "update": update}
    res_sum = sum(resident.values())
    programs = {  # what each compiled program itself holds (its arguments, temps and outputs)
        "update": sum(update.values()) - resident.get("reference copy", 0.0),
        "reference": (sum(reference.values()) - res_sum + params * c) if work.reference else 0.0,
        "rollout": sum(rollout.values()) - res_sum + (0.0 if copy else params * pb),  # its weights argument
    }
    return Plan(cfg, work, tuple(mesh), micro_batches, remat, device, impl, phases,
                {k: {"total": v} for k, v in programs.items()}, notes)


def micro_batch_options(work: Workload, mesh: tuple[int, int, int]) -> list[int]:
    """Divisors M of the batch whose micro-batches split evenly over the mesh's batch axes, increasing."""
    B, nb = work.sequences, mesh[0] * mesh[1]
    return [m for m in range(1, B + 1) if B % m == 0 and (B // m) % nb == 0]


def choose(cfg: ModelConfig, work: Workload, mesh: tuple[int, int, int] = (1, 1, 1), device: Device = H100,
           micro_batches: int | str = "auto", remat: str = "auto", min_rows: int = 4) -> Plan:
    """The plan with the least recompute that fits: for remat none, then block, then full, the smallest M.

    A remat level is taken only with an M that leaves at least `min_rows` rows per device per micro-batch
    (fewer make the matmuls too thin to use the device), unless no level fits that way. A fixed
    `micro_batches` or `remat` narrows the search. Raises a one-line UserError naming what to change.
    """
    options = micro_batch_options(work, mesh)
    if not options:
        raise UserError(f"the batch ({work.sequences} sequences) does not split over the mesh's batch axes "
                        f"(data x fsdp = {mesh[0] * mesh[1]}): change data.batch_size or grpo.num_generations")
    if micro_batches != "auto":
        if int(micro_batches) not in options:
            raise UserError(f"optim.micro_batches={micro_batches} must divide the batch ({work.sequences}) into "
                            f"micro-batches that split over data x fsdp = {mesh[0] * mesh[1]}; options: {options}")
        options = [int(micro_batches)]
    levels = list(REMAT_LEVELS) if remat == "auto" else [remat]
    nb = mesh[0] * mesh[1]
    fallback = None
    for level in levels:
        for m in options:
            p = plan(cfg, work, mesh, m, level, device)
            if p.fits:
                if work.sequences / m / nb >= min_rows or len(options) == 1:
                    return p
                fallback = fallback or p
                break
    if fallback is not None:
        return fallback
    best = plan(cfg, work, mesh, options[-1], levels[-1], device)
    worst = max(best.peaks, key=best.peaks.get)
    resident = sum(v for k, v in best.phases[worst].items() if k in ("parameters", "optimizer (AdamW moments)",
                                                                     "reference copy"))
    if resident > device.budget:
        hint = "shard the parameters over more devices (--mesh with a larger fsdp axis) or pick a smaller model"
    elif worst == "rollout":
        hint = "lower sampling.max_new_tokens or data.batch_size (the KV cache), or add devices"
    else:
        hint = "lower sampling.max_new_tokens, the prompt buckets or data.batch_size, or add devices"
    raise UserError(f"memory plan: nothing fits -- even M={options[-1]} with remat={levels[-1]} needs "
                    f"{best.peak / GiB:.1f} GiB in the {worst} phase on a {device.budget / GiB:.1f} GiB device "
                    f"budget: {hint}")


# ---------------------------------------------------------------------------------------------
# The device at hand


def device_of(jax_device=None, usable: float | None = None) -> Device:
    """The plan's view of a JAX device: its memory (`memory_stats()['bytes_limit']` where the runtime reports
    it; a CPU reports none: the host's physical memory) and its backend."""
    import jax

    d = jax_device or jax.devices()[0]
    stats = {}
    try:
        stats = d.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = {}
    limit = stats.get("bytes_limit")
    backend = d.platform if d.platform in ("cpu", "gpu", "tpu") else ("gpu" if d.platform == "cuda" else "gpu")
    if limit is None:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # On a GPU bytes_limit is already the client's share (XLA_PYTHON_CLIENT_MEM_FRACTION): the plan may use
    # nearly all of it; elsewhere keep some headroom for the runtime and fragmentation.
    return Device(int(limit), backend, usable if usable is not None else (0.97 if backend == "gpu" else 0.9),
                  d.device_kind)


def set_gpu_memory_fraction(fraction: float) -> None:
    """Lets JAX's GPU allocator take `fraction` of the card (default 0.75) instead of its default.

    Must run before JAX initialises its GPU backend (the first device query or array): it sets
    XLA_PYTHON_CLIENT_MEM_FRACTION, which the backend reads once. An explicit environment value wins.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"gpu memory fraction: expected in (0, 1], got {fraction}")
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{fraction:.2f}")


# ---------------------------------------------------------------------------------------------
# The shipped presets' models (their config.json shapes: the plan needs no download)

SMOLLM2_1_7B = dict(architectures=["LlamaForCausalLM"], vocab_size=49152, hidden_size=2048,
                    intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                    rms_norm_eps=1e-5, rope_theta=130000, max_position_embeddings=8192, tie_word_embeddings=True,
                    bos_token_id=1, eos_token_id=2, pad_token_id=2)
QWEN2_5_1_5B = dict(architectures=["Qwen2ForCausalLM"], vocab_size=151936, hidden_size=1536,
                    intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                    rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
                    tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, sliding_window=131072)
SMOLLM2_135M = dict(architectures=["LlamaForCausalLM"], vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5,
                    rope_theta=100000, max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=1,
                    eos_token_id=2, pad_token_id=2)
KNOWN_SHAPES = {"HuggingFaceTB/SmolLM2-1.7B-Instruct": SMOLLM2_1_7B, "Qwen/Qwen2.5-1.5B-Instruct": QWEN2_5_1_5B,
                "smollm2-135m-instruct": SMOLLM2_135M}


def preset_plans() -> list[tuple[str, Plan]]:
    """The shipped presets' plans as `traitrl train` would choose them: gpu-1b on 80 GB and 141 GB cards,
    tpu-v5e-8 on 16 GiB chips (mesh (1, 8, 1)), the CPU default (SmolLM2-135M) on a 16 GiB host."""
    gpu = ModelConfig.from_hf(SMOLLM2_1_7B, dtype="bfloat16")
    tpu = ModelConfig.from_hf(QWEN2_5_1_5B, dtype="bfloat16")
    cpu = ModelConfig.from_hf(SMOLLM2_135M)
    gpu_work = Workload(prompts=16, generations=8, prompt_len=512, completion_len=512)
    tpu_work = Workload(prompts=64, generations=8, prompt_len=512, completion_len=1024)
    cpu_work = Workload(prompts=2, generations=4, prompt_len=512, completion_len=48)
    return [("gpu-1b on 80 GB", choose(gpu, gpu_work, (1, 1, 1), H100)),
            ("gpu-1b on 141 GB", choose(gpu, gpu_work, (1, 1, 1), H200)),
            ("tpu-v5e-8 on 16 GiB chips", choose(tpu, tpu_work, (1, 8, 1), TPU_V5E)),
            ("default (CPU) on a 16 GiB host", choose(cpu, cpu_work, (1, 1, 1), Device(16 * GiB, "cpu", 0.9,
                                                                                         "16 GiB host")))]

