"""Model configuration: one frozen dataclass for the Llama / Qwen2 / Qwen3 / Mistral family.

`ModelConfig.from_hf(dict)` reads a transformers `config.json`; `to_hf()` writes one back so an
exported directory loads in `transformers.AutoModelForCausalLM`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from engine.errors import UserError

# HF architecture name -> our family tag. The family decides the few structural switches.
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
_MODEL_TYPES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3"}
DTYPES = ("float32", "bfloat16")
# Rematerialisation in the backward pass, least to most recompute (see `models.transformer`):
#   none  - keep every activation the backward needs;
#   block - each decoder block under jax.checkpoint saving only its matmul outputs (q/k/v/o, gate/up/down):
#           the attention scores / probabilities and the elementwise ops are recomputed (a few % more FLOPs);
#   full  - each block under jax.checkpoint saving nothing but its input: the block's forward runs twice
#           (about +33% update FLOPs), activation memory is one [B, L, D] residual per layer.
REMAT_LEVELS = ("none", "block", "full")
# Attention kernels for the full forward and prefill (`models.attention`); decode always uses the grouped einsum.
ATTENTION = ("auto", "reference", "xla", "chunked", "cudnn", "splash")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama-3 style frequency scaling (`rope_type: llama3`) or linear position interpolation."""

    rope_type: str = "llama3"  # "llama3" | "linear"
    factor: float = 8.0  # how much longer the context is than the original training context
    low_freq_factor: float = 1.0  # llama3: wavelengths above orig/low_freq_factor are divided by factor
    high_freq_factor: float = 4.0  # llama3: wavelengths below orig/high_freq_factor are kept
    original_max_position_embeddings: int = 8192  # llama3: the pre-extension context length

    def __post_init__(self):
        if self.rope_type not in ("llama3", "linear"):
            raise UserError(f"rope_scaling.rope_type: unsupported '{self.rope_type}' (expected llama3 or linear)")
        if self.factor <= 0:
            raise UserError(f"rope_scaling.factor: expected > 0, got {self.factor}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and switches of a decoder-only transformer (field names follow transformers)."""

    family: str = "llama"  # llama | mistral | qwen2 | qwen3: q/k/v bias, q/k norm, naming
    vocab_size: int = 32000  # V
    hidden_size: int = 576  # D
    intermediate_size: int = 1536  # F, SwiGLU inner width
    num_hidden_layers: int = 30  # number of decoder blocks
    num_attention_heads: int = 9  # H query heads
    num_key_value_heads: int = 3  # K kv heads (GQA: H % K == 0)
    head_dim: int = 0  # per-head width; 0 means hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-5  # epsilon inside every RMSNorm
    rope_theta: float = 10000.0  # RoPE base frequency
    rope_scaling: RopeScaling | None = None  # Llama-3 / linear scaling, None for plain RoPE
    max_position_embeddings: int = 2048  # longest position the checkpoint was trained for
    tie_word_embeddings: bool = True  # lm_head shares the embedding matrix
    attention_bias: bool = False  # bias on q/k/v projections (Qwen2: True; o_proj never has one)
    qk_norm: bool = False  # per-head RMSNorm on q and k before RoPE (Qwen3)
    sliding_window: int | None = None  # Mistral-style local attention window, None = full causal
    bos_token_id: int | None = None  # written back to config.json on export
    eos_token_id: int | list[int] | None = None  # generation stops on any of these
    pad_token_id: int | None = None  # used for padding in batches, if the tokenizer has none
    param_dtype: str = "float32"  # storage dtype of the parameters
    dtype: str = "float32"  # compute dtype of matmuls (norms, softmax and logits stay float32)
    remat: str = "none"  # none | block | full (REMAT_LEVELS); a bool is accepted: True = full, False = none
    attention: str = "auto"  # auto (by backend) | reference (einsum) | xla | chunked | cudnn | splash (ATTENTION)
    attention_chunk: int = 256  # query rows per chunk of the "chunked" kernel (bounds its score tensor)
    # Stack the blocks' parameters and lax.scan over them (one traced block: a ~N times smaller program). None =
    # auto: on exactly when remat is on -- XLA:CPU schedules the recomputation of a Python loop of checkpointed
    # blocks early and keeps every layer's activations anyway (measured: -4% memory), while the scan's backward
    # loop recomputes one block at a time (-70%). The parameter tree (and so a checkpoint) is laid out either way.
    scan_layers: bool | None = None

    def __post_init__(self):
        if self.family not in _MODEL_TYPES:
            raise UserError(f"family: unsupported '{self.family}' (expected one of {sorted(_MODEL_TYPES)})")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim == 0 and self.hidden_size % self.num_attention_heads:
            raise UserError(f"hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                            f"({self.num_attention_heads}) and no head_dim is given")
        if isinstance(self.remat, bool):  # the old switch: True was "checkpoint each block, save its input"
            object.__setattr__(self, "remat", "full" if self.remat else "none")
        if self.remat not in REMAT_LEVELS:
            raise UserError(f"remat: expected one of {REMAT_LEVELS}, got '{self.remat}'")
        if self.attention not in ATTENTION:
            raise UserError(f"attention: expected one of {ATTENTION}, got '{self.attention}'")
        if self.attention_chunk < 1:
            raise UserError(f"attention_chunk: expected >= 1, got {self.attention_chunk}")
        if self.param_dtype not in DTYPES or self.dtype not in DTYPES:
            raise UserError(f"dtype / param_dtype: expected one of {DTYPES}, got {self.dtype} / {self.param_dtype}")

    @property
    def scan(self) -> bool:
        """Whether the blocks are stacked and scanned (`scan_layers`, auto = remat is on)."""
        return self.remat != "none" if self.scan_layers is None else self.scan_layers

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def eos_ids(self) -> tuple[int, ...]:
        e = self.eos_token_id
        return () if e is None else (e,) if isinstance(e, int) else tuple(e)

    def num_params(self, include_embedding: bool = True) -> int:
        D, F, Hd = self.hidden_size, self.intermediate_size, self.head_size
        H, K = self.num_attention_heads, self.num_key_value_heads
        attn = D * Hd * (2 * H + 2 * K) + (Hd * (H + 2 * K) if self.attention_bias else 0)
        block = attn + 3 * D * F + 2 * D + (2 * Hd if self.qk_norm else 0)
        emb = self.vocab_size * D * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * block + D + (emb if include_embedding else 0)

    # ---- transformers config.json <-> ModelConfig -------------------------------------------

    @classmethod
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json", **overrides) -> ModelConfig:
        """Reads a transformers config dict. `source` names the file in error messages."""
        archs = hf.get("architectures") or []
        family = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
        if family is None:
            family = _MODEL_TYPES.get(hf.get("model_type", ""))
        if family is None:
            got = ", ".join(archs) or hf.get("model_type") or "nothing"
            raise UserError(f"{source}: unsupported architecture '{got}' "
                            f"(supported: {', '.join(ARCHITECTURES)})")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads"):
            if key not in hf:
                raise UserError(f"{source}: missing field '{key}'")
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise UserError(f"{source}: hidden_act '{act}' is not supported (expected silu)")
        if hf.get("use_sliding_window"):
            raise UserError(f"{source}: use_sliding_window=true is not supported for {family}")
        rope = hf.get("rope_scaling") or None
        rope_params = hf.get("rope_parameters") or {}  # transformers >= 5 folds theta + scaling here
        if rope is None and rope_params.get("rope_type", "default") != "default":
            rope = rope_params
        scaling = None
        if rope is not None:
            kind = rope.get("rope_type", rope.get("type", "default"))
            if kind != "default":
                fields = {f.name for f in dataclasses.fields(RopeScaling)}
                scaling = RopeScaling(rope_type=kind, **{k: v for k, v in rope.items() if k in fields and k != "rope_type"})
        theta = hf.get("rope_theta", rope_params.get("rope_theta", 10000.0))
        kv = hf.get("num_key_value_heads") or hf["num_attention_heads"]
        bias = family == "qwen2" or hf.get("attention_bias", False)  # Qwen2 always has q/k/v bias
        window = hf.get("sliding_window") if family == "mistral" else None
        return cls(
            family=family, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"], num_hidden_layers=hf["num_hidden_layers"],
            num_attention_heads=hf["num_attention_heads"], num_key_value_heads=kv,
            head_dim=hf.get("head_dim") or 0, rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta), rope_scaling=scaling,
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            tie_word_embeddings=hf.get("tie_word_embeddings", family != "llama" and family != "mistral"),
            attention_bias=bool(bias), qk_norm=family == "qwen3", sliding_window=window,
            bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"), **overrides)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> ModelConfig:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: missing config.json (expected a Hugging Face model directory)")
        try:
            hf = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_hf(hf, source=str(path), **overrides)

    def to_hf(self) -> dict[str, Any]:
        arch = {v: k for k, v in ARCHITECTURES.items()}[self.family]
        hf: dict[str, Any] = {
            "architectures": [arch], "model_type": self.family, "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_size,
            "hidden_act": "silu", "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id, "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype, "use_cache": True,
        }
        if self.family in ("llama", "mistral", "qwen3"):
            hf["attention_bias"] = self.attention_bias
            hf["mlp_bias"] = False
        if self.family == "qwen2":
            hf["use_sliding_window"] = False
        if self.family == "mistral":
            hf["sliding_window"] = self.sliding_window
        if self.rope_scaling is not None:
            hf["rope_scaling"] = dataclasses.asdict(self.rope_scaling)
        return hf
