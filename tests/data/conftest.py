"""Shared fixtures: a real fast tokenizer trained offline (no network, ~1 s)."""

import pytest

from data.toy_tokenizer import build_toy_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_toy_tokenizer(vocab_size=2048, n_records=1500)
