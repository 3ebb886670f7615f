"""Real weights: SmolLM2-135M-Instruct from its GGUF, traitrl vs transformers' own GGUF loading."""

import jax.numpy as jnp
import numpy as np
import torch
import transformers

import models
from models import hub

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a careful medical assistant."},
     {"role": "user", "content": "Can antibiotics cure a common cold? Answer briefly."}],
    [{"role": "user", "content": "A beam spans 4 m and carries 2 kN/m. What is the maximum bending moment?"}],
]


def test_smollm2_logits_match_transformers_gguf_loading():
    policy = models.load("smollm2-135m-instruct")
    gguf = hub.known_gguf(hub.KNOWN_MODELS["smollm2-135m-instruct"])
    ref_tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ref = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                            dtype=torch.float32).eval()
    rows = [policy.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True)["input_ids"]
            for c in CHATS]
    assert rows == [ref_tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True)["input_ids"]
                    for c in CHATS]
    L = max(map(len, rows))
    ids = np.full((len(rows), L), policy.config.pad_token_id, np.int64)
    mask = np.zeros((len(rows), L), bool)
    for i, r in enumerate(rows):
        ids[i, L - len(r):], mask[i, L - len(r):] = r, True
    ours = np.asarray(policy.model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
                     position_ids=torch.tensor(np.maximum(mask.cumsum(1) - 1, 0))).logits.numpy()
    assert np.abs(ours - theirs)[mask].max() <= 1e-3
    assert (ours.argmax(-1) == theirs.argmax(-1))[mask].all()
