"""Model FLOPs of the decoder: what the FLOP-utilisation figure counts as useful work.

Model FLOPs count matmuls only (2 per multiply-add): the decoder's projections and MLP, the lm head,
and the attention scores and mix over the real context; a backward pass costs twice its forward.
"""

from __future__ import annotations

from models.config import ModelConfig
from models.transformer import kv_blocks

# HBM bandwidth per chip, bytes/s, by device-kind substring (vendors' figures): the decode roofline's denominator.
BANDWIDTH: dict[str, float] = {
    "H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L4": 0.3e12,
    "TPU v4": 1.2e12, "TPU v5 lite": 0.819e12, "TPU v5e": 0.819e12, "TPU v5p": 2.76e12, "TPU v6": 1.64e12,
}


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in a matmul per token: attention and MLP projections plus the lm head."""
    D, F, H, K, E = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_size
    per_layer = D * H * E + 2 * D * K * E + H * E * D + 3 * D * F
    return cfg.num_hidden_layers * per_layer + D * cfg.vocab_size


def forward_flops(cfg: ModelConfig, tokens: int, context: float) -> float:
    """FLOPs of a forward over `tokens` tokens that each attend to `context` positions on average."""
    attention = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_size * context
    return tokens * (2 * matmul_params(cfg) + attention)


def grpo_step_flops(cfg: ModelConfig, B: int, prompt_len: int, completion_len: int, reference: bool,
                    iterations: int = 1) -> dict[str, float]:
    """Model FLOPs of one GRPO step on B sequences of prompt_len + completion_len tokens, by phase."""
    L = prompt_len + completion_len
    rollout = forward_flops(cfg, B * prompt_len, prompt_len / 2) + forward_flops(cfg, B * completion_len,
                                                                                 prompt_len + completion_len / 2)
    full = forward_flops(cfg, B * L, L / 2)
    return {"rollout": rollout, "reference": full if reference else 0.0, "update": 3 * full * iterations}


def decode_bytes(cfg: ModelConfig, prompts: int, generations: int, prompt_len: int, new_tokens: int,
                 kv_block: int = 0, weight_bytes: int | None = None) -> dict[str, float]:
    """Bytes a rollout's decode steps must read from device memory, as `rl.sampler` lays the cache out.

    Each of the T - 1 decode steps reads every weight once (compute dtype) and the KV it attends to: the
    prompts' KV once per prompt (shared by the G generations), and the completion blocks filled so far in
    full (the current block's empty slots included: that is what the block-wise loop reads). Prefill and the
    sampling math are not counted. `weight_bytes` defaults to the matmul weights plus the embedding in the
    compute dtype.
    """
    c = 2 if cfg.dtype == "bfloat16" else 4
    kv_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_size * c
    weights = weight_bytes if weight_bytes is not None else cfg.num_params() * c
    B, steps = prompts * generations, max(new_tokens - 1, 0)
    kv = 0.0
    for start, size in kv_blocks(steps, kv_block):
        for t in range(start + 1, start + size + 1):  # step t reads blocks 0 .. j in full
            kv += prompts * prompt_len * kv_token + B * (start + size) * kv_token
    return {"weights": weights * steps, "kv": kv, "total": weights * steps + kv, "steps": steps}
