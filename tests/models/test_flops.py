"""Model FLOP counts: the numerator of the `mfu` metric and of the benchmarks' utilisation."""

import models
from models import flops

# The peers' canonical workload model (../shared/peers/workload.json: tiny-qwen2-grpo-v1).
CANON = models.ModelConfig(family="qwen2", vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                           num_attention_heads=8, num_key_value_heads=2, head_dim=32, attention_bias=True)


def test_matmul_params_by_hand():
    per_layer = 256 * 8 * 32 + 2 * 256 * 2 * 32 + 8 * 32 * 256 + 3 * 256 * 704
    assert flops.matmul_params(CANON) == 4 * per_layer + 256 * 4096


def test_canonical_grpo_step_is_about_240_gflop():
    # 64 sequences of 32 prompt + 64 new tokens, a reference forward, one update (fwd + 2x bwd).
    f = flops.grpo_step_flops(CANON, B=64, prompt_len=32, completion_len=64, reference=True)
    assert f["update"] == 3 * f["reference"]
    assert 230e9 < sum(f.values()) < 250e9  # the estimate: ~237 GFLOP
    assert flops.grpo_step_flops(CANON, 64, 32, 64, reference=False)["reference"] == 0.0
