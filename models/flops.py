"""Model FLOPs of the decoder: what the FLOP-utilisation figure counts as useful work.

Model FLOPs count matmuls only (2 per multiply-add): the decoder's projections and MLP, the lm head,
and the attention scores and mix over the real context; a backward pass costs twice its forward.
"""

from __future__ import annotations

from models.config import ModelConfig


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
