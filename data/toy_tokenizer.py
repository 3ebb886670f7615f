"""A real, offline `transformers` fast tokenizer for tests, benchmarks and previews.

The pipeline takes any HF fast tokenizer with a chat template. Tests and `benchmarks/data.py`
must not download one, so this trains a byte-level BPE in-process (a second or two) on text the
scenario generator produces, and wraps it in `PreTrainedTokenizerFast` with a ChatML template
(the SmolLM2 / Qwen2 format), so it exercises the same code paths as a pretrained tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus(n_records: int, seed: int) -> Iterable[str]:
    from data.generator import generate_records

    for r in generate_records(n_per_cell=max(1, n_records // 84), n_regular=n_records // 2, seed=seed):
        for m in r["messages"]:
            yield m["content"]


def build_toy_tokenizer(
    vocab_size: int = 2048, n_records: int = 2000, seed: int = 0, texts: Iterable[str] | None = None
):
    """Trains a byte-level BPE on generated chats; returns a `PreTrainedTokenizerFast` (left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts if texts is not None else _corpus(n_records, seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        padding_side="left",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast
