"""SFT on the shared step machinery: what gets loss, that it learns, exact resume, and the CLI."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import models
from data.toy_tokenizer import build_toy_tokenizer
from engine.checkpoint import CheckpointConfig, Checkpointer
from rl.sft import SFTConfig, SFTTrainer, batch_indices, encode_examples
from models.tokenizer import encode_example
from engine.train_state import OptimConfig


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer(vocab_size=1024)


def _policy(tok, seed=0):
    cfg = models.ModelConfig(family="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return models.Policy(models.init(cfg, seed=seed), tok, cfg, "", None)


CHATS = [{"messages": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": f"What is {i} plus {i}?"},
                       {"role": "assistant", "content": f"Earlier answer {i}."},
                       {"role": "user", "content": "Again?"},
                       {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(12)]
SMALL = SFTConfig(steps=4, batch_size=4, max_prompt_len=96, max_response_len=12, progress=False)


def test_only_the_final_assistant_message_gets_loss(tok):
    context, answer = encode_example(tok, CHATS[3]["messages"])
    assert tok.decode(answer) == "It is 6.<|im_end|>"
    assert "Earlier answer 3." in tok.decode(context) and tok.decode(context).endswith("<|im_start|>assistant\n")
    ids, mask, loss = encode_examples(tok, CHATS[3:4], SMALL, pad_id=tok.pad_token_id)
    assert tok.decode(ids[0, 96:][loss[0] > 0].tolist()) == "It is 6.<|im_end|>"
    assert len(context) < 96 and mask[0, 96 - len(context):96 + len(answer)].all() and not mask[0, :96 - len(context)].any()


def test_batch_order_is_a_function_of_seed_and_step():
    seen = np.concatenate([batch_indices(10, 4, 0, s) for s in range(5)])  # two full epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:20].tolist()) == list(range(10))
    assert (batch_indices(10, 4, 0, 3) == batch_indices(10, 4, 0, 3)).all()
    assert not (batch_indices(10, 4, 1, 0) == batch_indices(10, 4, 0, 0)).all()


def test_sft_memorises_and_resumes_exactly(tok, tmp_path):
    learn = SFTTrainer(_policy(tok), SFTConfig(steps=25, batch_size=4, max_prompt_len=96, max_response_len=12,
                                               progress=False), OptimConfig(learning_rate=3e-3, schedule="constant"))
    losses = [m["loss"] for m in learn.run(CHATS)]
    assert losses[-1] < 0.5 * losses[0], losses

    optim = OptimConfig(learning_rate=1e-3, schedule="constant")
    straight = SFTTrainer(_policy(tok), SMALL, optim)
    straight.run(CHATS)
    ck = CheckpointConfig(save_every=2, keep=2, async_save=False)
    SFTTrainer(_policy(tok), SFTConfig(**{**SMALL.__dict__, "steps": 2}), optim,
               checkpointer=Checkpointer(tmp_path / "ck", ck)).run(CHATS)
    resumed = SFTTrainer(_policy(tok, seed=1), SMALL, optim, checkpointer=Checkpointer(tmp_path / "ck", ck))
    resumed.run(CHATS, resume=True)
    assert int(resumed.state.step) == 4
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(straight.state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sft_cli(tok, tmp_path):
    models.save_hf(_policy(tok), tmp_path / "tiny")
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps(c) for c in CHATS) + "\n")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "engine.commands", "sft", "--model", str(tmp_path / "tiny"), "--data", str(data),
           "--run-dir", str(run), "--sft.steps", "3", "--sft.batch-size", "4", "--sft.max-prompt-len", "96",
           "--sft.max-response-len", "12", "--optim.learning-rate", "1e-3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert (run / "hf" / "model.safetensors").is_file()
    assert json.loads((run / "summary.json").read_text())["steps_run"] == 3

    data.write_text(json.dumps(CHATS[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    bad = subprocess.run([*cmd[:-2], "--run-dir", str(tmp_path / "run2")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{data}:2: field 'messages[-1]'" in bad.stderr
