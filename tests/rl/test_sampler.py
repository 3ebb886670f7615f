"""The rollout sampler: greedy parity with transformers, sampling statistics, filters, logprobs,
sharding, compilation count, stopping, determinism and steering.

Tiny random models are built by transformers (larger init std so logits are peaked and greedy has
no near-ties); the parity test uses the real SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import models
from engine.errors import UserError
from engine.sharding import make_mesh
from models.transformer import Steer
from rl import token_choice
from rl.sampler import Sampler, SamplingConfig, generate_records, generate_text
from models.tokenizer import encode_prompts, left_pad
from rl.token_choice import TokenChoice

VOCAB, EOS, PAD = 96, 5, 0
TINY = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 112,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "eos_token_id": EOS,
    "pad_token_id": PAD,
    "bos_token_id": None,
    "tie_word_embeddings": True,
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random Llama saved by transformers; init std 0.2 gives peaked next-token distributions."""
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY, initializer_range=0.2)).eval()
    d = tmp_path_factory.mktemp("tiny")
    hf.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return models.load(tiny_dir)


def _prompts(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(EOS + 1, VOCAB, n).tolist() for n in lengths]


# Most tests share these shapes and configs, so they share compiled programs (compiles dominate).
PROMPTS = _prompts((3, 9, 14, 6))
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=12, prompt_buckets=(16,))
SAMPLE = SamplingConfig(temperature=1.0, max_new_tokens=12, prompt_buckets=(16,), stop_token_ids=())
FILTERED = SamplingConfig(temperature=0.7, top_k=20, top_p=0.9, min_p=0.02, max_new_tokens=12, prompt_buckets=(16,))


@functools.cache
def _sampler(cfg: SamplingConfig) -> Sampler:
    return Sampler(cfg)


@functools.partial(jax.jit, static_argnames=("graphdef", "steer_layer"))
def _forward_logits(graphdef, state, ids, mask, steer_D=None, alpha=None, steer_layer=None):
    steer = None if steer_layer is None else Steer(steer_layer, steer_D, alpha)
    return nnx.merge(graphdef, state).apply(ids, mask, steer=steer).logits


def _teacher_forced_logits(policy, r, steer=None):
    """Logits predicting every completion token, from one full forward over prompt + completion."""
    ids = np.concatenate([r.prompt_ids_BxL, r.completion_ids_BxT], axis=1)
    mask = np.concatenate([r.prompt_mask_BxL, r.completion_mask_BxT], axis=1)
    graphdef, state = nnx.split(policy.model)
    sargs = (
        {}
        if steer is None
        else {"steer_D": steer.vector_D, "alpha": jnp.asarray(steer.alpha), "steer_layer": steer.layer}
    )
    logits = _forward_logits(graphdef, state, ids, mask, **sargs)
    L, T = r.prompt_ids_BxL.shape[1], r.completion_ids_BxT.shape[1]
    return np.asarray(logits[:, L - 1 : L + T - 1])


# ---------------------------------------------------------------------------------------------
# Config and padding


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", -1.0),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("max_new_tokens", 0),
        ("prompt_buckets", (64, 32)),
        ("prompt_buckets", ()),
        ("stop_token_ids", (-1,)),
    ],
)
def test_config_rejects_bad_values_naming_the_option(field, value):
    with pytest.raises(UserError, match=field):
        SamplingConfig(**{field: value})


def test_config_is_hashable_with_list_inputs():
    cfg = SamplingConfig(prompt_buckets=[8, 16], stop_token_ids=[1, 2])
    assert cfg.prompt_buckets == (8, 16) and cfg.stop_token_ids == (1, 2) and hash(cfg)


def test_pad_prompts_left_pads_to_the_smallest_fitting_bucket():
    ids, mask = left_pad([[7, 8, 9], [4]], (2, 4, 8), pad=0)
    np.testing.assert_array_equal(ids, [[0, 7, 8, 9], [0, 0, 0, 4]])
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
    with pytest.raises(UserError, match="prompt_buckets"):
        left_pad([[1] * 9], (2, 4, 8), pad=0)
    with pytest.raises(UserError, match="empty"):
        left_pad([[1], []], (4,), pad=0)


# ---------------------------------------------------------------------------------------------
# Token-choice math (no model)


def _reference_filter(logits, t, k, p, mp):
    """NumPy reference of temperature -> top-k -> top-p -> min-p, as transformers' warpers do it."""
    x = logits.astype(np.float64) / t
    keep = np.ones_like(x, bool)
    if k:
        keep &= x >= np.sort(x)[-k]
    probs = np.where(keep, np.exp(x - x[keep].max()), 0)
    probs /= probs.sum()
    if p < 1:
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]
        cut = probs[order][before < p].min()
        keep &= probs >= cut
        probs = np.where(keep, probs, 0)
        probs /= probs.sum()
    if mp:
        keep &= probs >= mp * probs.max()
    z = np.where(keep, x, -np.inf)
    return z - np.log(np.exp(z - z.max()).sum()) - z.max()


@pytest.mark.parametrize(
    "t,k,p,mp",
    [
        (1.0, 0, 1.0, 0.0),
        (0.7, 10, 1.0, 0.0),
        (1.0, 0, 0.8, 0.0),
        (1.3, 20, 0.9, 0.0),
        (1.0, 0, 1.0, 0.1),
        (0.8, 30, 0.95, 0.05),
    ],
)
def test_filtered_logprobs_match_numpy_reference(t, k, p, mp):
    logits = np.random.default_rng(1).normal(0, 3, (6, 200)).astype(np.float32)
    choice = TokenChoice(t, k, p, mp)
    ref = np.stack([_reference_filter(row, t, k, p, mp) for row in logits])
    toks = np.broadcast_to(np.arange(200), (6, 200))
    ours = np.asarray(
        token_choice.token_logprobs(jnp.asarray(np.repeat(logits[:, None], 200, 1)), jnp.asarray(toks), choice)
    )
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    np.testing.assert_allclose(ours[~np.isinf(ref)], ref[~np.isinf(ref)], atol=1e-5)


@pytest.mark.parametrize(
    "choice",
    [TokenChoice(1.0, 12, 0.9, 0.0), TokenChoice(0.8, 0, 0.95, 0.0), TokenChoice(1.0, 0, 1.0, 0.01)],
    ids=["topk-topp", "topp", "minp"],
)
def test_choose_frequencies_match_filtered_softmax(choice):
    """Chi-square over 100k draws from one row's filtered distribution; removed tokens never drawn.

    V = 300 spans three blocks of the two-level inverse CDF, with zero-probability gaps in each.
    """
    logits = jnp.asarray(np.random.default_rng(2).normal(0, 1.5, (1, 300)), jnp.float32)
    n = 100_000
    keys = jax.random.split(jax.random.key(0), n)
    toks, lps = jax.jit(lambda k: token_choice.choose(k, jnp.broadcast_to(logits, (n, 300)), choice))(keys)
    logp = np.asarray(token_choice.token_logprobs(logits[0], jnp.arange(300), choice))
    counts = np.bincount(np.asarray(toks), minlength=300)
    assert counts[np.isinf(logp)].sum() == 0
    expected = n * np.exp(logp[~np.isinf(logp)])
    chi2 = ((counts[~np.isinf(logp)] - expected) ** 2 / expected).sum()
    dof = (~np.isinf(logp)).sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)  # ~5 sigma
    np.testing.assert_allclose(np.asarray(lps), logp[np.asarray(toks)], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The sampler on a tiny model


def test_greedy_matches_transformers_generate_on_tiny_llama(tiny, tiny_dir):
    r = _sampler(GREEDY)(tiny, PROMPTS)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    out = hf.generate(
        torch.tensor(r.prompt_ids_BxL.astype(np.int64)),
        attention_mask=torch.tensor(r.prompt_mask_BxL.astype(np.int64)),
        do_sample=False,
        max_new_tokens=12,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )[:, 16:].numpy()
    out = np.pad(out, ((0, 0), (0, 12 - out.shape[1])), constant_values=PAD)
    np.testing.assert_array_equal(r.completion_ids_BxT, out)


def test_temperature_one_frequencies_match_softmax(tiny):
    """2048 sequences of one prompt: first and second tokens against the model's own softmax."""
    prompt = _prompts((5,))[0]
    n = 2048
    r = Sampler(SamplingConfig(temperature=1.0, max_new_tokens=2, prompt_buckets=(8,), stop_token_ids=()))(
        tiny, [prompt], num_generations=n, seed=3
    )
    first = r.completion_ids_BxT[:, 0]
    top = np.bincount(first, minlength=VOCAB).argmax()  # second token: condition on the likeliest first
    graphdef, state = nnx.split(tiny.model)
    ids = np.asarray([prompt + [prompt[-1]], prompt + [int(top)]])  # one batch: both next-token distributions
    logits = _forward_logits(graphdef, state, ids, np.ones_like(ids, bool))
    p_first, p_second = np.asarray(jax.nn.softmax(logits[:, -2:], axis=-1), np.float64)[[0, 1], [0, 1]]
    for p, toks in ((p_first, first), (p_second, r.completion_ids_BxT[first == top, 1])):
        counts = np.bincount(toks, minlength=VOCAB)
        expected = len(toks) * p
        big = expected >= 5  # chi-square needs expected counts >= 5: pool the rest into one cell
        obs = np.append(counts[big], counts[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        chi2 = ((obs - exp) ** 2 / exp).sum()
        dof = len(obs) - 1
        assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)


@pytest.mark.parametrize("kw", [{"top_k": 3}, {"top_p": 0.5}, {"min_p": 0.3}])
def test_filters_never_emit_a_token_outside_the_allowed_set(tiny, kw):
    cfg = dataclasses.replace(SAMPLE, **kw)
    r = _sampler(cfg)(tiny, PROMPTS, num_generations=8, seed=1)
    logits = _teacher_forced_logits(tiny, r)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    tok = r.completion_ids_BxT
    p_tok = np.take_along_axis(probs, tok[..., None], -1)[..., 0]
    above = probs > p_tok[..., None] * (1 + 1e-5)  # tokens strictly more likely than the one drawn
    if "top_k" in kw:  # fewer than k of them
        assert (above.sum(-1) < kw["top_k"]).all()
    if "top_p" in kw:  # their mass is < top_p
        assert (np.where(above, probs, 0).sum(-1) < kw["top_p"] + 1e-5).all()
    if "min_p" in kw:
        assert (p_tok >= kw["min_p"] * probs.max(-1) * (1 - 1e-5)).all()
    lp = np.asarray(token_choice.token_logprobs(jnp.asarray(logits), jnp.asarray(tok), cfg.choice))
    assert np.isfinite(lp).all()  # every sampled token is inside the filtered set


@pytest.mark.parametrize("cfg,G", [(SAMPLE, 2), (FILTERED, 2), (GREEDY, 1)], ids=["t1", "filtered", "greedy"])
def test_logprobs_equal_teacher_forced_forward(tiny, cfg, G):
    r = _sampler(cfg)(tiny, PROMPTS, num_generations=G, seed=4)
    logits = _teacher_forced_logits(tiny, r)
    ref = np.asarray(token_choice.token_logprobs(jnp.asarray(logits), jnp.asarray(r.completion_ids_BxT), cfg.choice))
    m = r.completion_mask_BxT
    assert r.logprobs_BxT.dtype == np.float32 and (r.logprobs_BxT[~m] == 0).all()
    np.testing.assert_allclose(r.logprobs_BxT[m], ref[m], atol=1e-4)


def test_stop_tokens_lengths_truncation_and_padding(tiny):
    stops = tuple(range(6, 40))  # a third of the vocabulary: most rows stop early, some may not
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=6, prompt_buckets=(16,), stop_token_ids=stops)
    r = Sampler(cfg)(tiny, _prompts((3, 8)), num_generations=16, seed=0)
    ids, m = r.completion_ids_BxT, r.completion_mask_BxT
    assert r.truncated_B.any() and not r.truncated_B.all()
    is_stop = np.isin(ids, stops) & m
    for b in range(len(ids)):
        n = r.lengths_B[b]
        assert m[b].sum() == n and m[b, :n].all()
        assert (ids[b, n:] == PAD).all()
        assert r.truncated_B[b] == (not is_stop[b].any())
        if not r.truncated_B[b]:
            assert is_stop[b, n - 1] and not is_stop[b, : n - 1].any()
    assert r.prompt_ids_BxL.shape == (32, 16) and r.num_generations == 16


def test_deterministic_and_independent_of_batch_composition(tiny):
    s, prompts = _sampler(SAMPLE), PROMPTS
    a, b = s(tiny, prompts, 2, seed=7), s(tiny, prompts, 2, seed=7)
    np.testing.assert_array_equal(a.completion_ids_BxT, b.completion_ids_BxT)
    assert not (s(tiny, prompts, 2, seed=8).completion_ids_BxT == a.completion_ids_BxT).all()
    # Prompt 1 alone, with the sequence ids it had in the batch (2, 3): the same completions.
    alone = s(tiny, [prompts[1]], 2, seed=7, sequence_ids=[2, 3])
    np.testing.assert_array_equal(alone.completion_ids_BxT, a.completion_ids_BxT[2:4])
    np.testing.assert_allclose(alone.logprobs_BxT, a.logprobs_BxT[2:4], atol=1e-5)


def test_one_compilation_per_bucket_and_none_for_new_weights(tiny_dir):
    policy = models.load(tiny_dir)
    s = Sampler(SamplingConfig(temperature=1.0, max_new_tokens=4, prompt_buckets=(8, 16)))
    for n in (3, 5, 8):
        s(policy, _prompts((n, 2)))
    assert s.compilations == 1
    # Training updates the weights in place: same shapes and shardings, no recompilation.
    state = nnx.state(policy.model, nnx.Param)
    nnx.update(policy.model, jax.tree.map(lambda x: x * 1.01, state))
    s(policy, _prompts((6, 2)), seed=5)
    assert s.compilations == 1
    s(policy, _prompts((12, 2)))  # next bucket
    assert s.compilations == 2


def test_steering_hook(tiny):
    cfg, prompts = GREEDY, PROMPTS
    s = _sampler(cfg)
    plain = s(tiny, prompts)
    before = s.compilations
    v = jnp.asarray(np.random.default_rng(0).normal(0, 1, 64), jnp.float32)
    zero = s(tiny, prompts, steer=Steer(1, v, 0.0))
    np.testing.assert_array_equal(zero.completion_ids_BxT, plain.completion_ids_BxT)
    steered = s(tiny, prompts, steer=Steer(1, v, 8.0))
    assert (steered.completion_ids_BxT != plain.completion_ids_BxT).any()
    assert s.compilations == before + 1  # steering compiles once; a new alpha / vector reuses it
    logits = _teacher_forced_logits(tiny, steered, steer=Steer(1, v, 8.0))
    ref = np.asarray(token_choice.token_logprobs(jnp.asarray(logits), jnp.asarray(steered.completion_ids_BxT), cfg.choice))
    m = steered.completion_mask_BxT
    np.testing.assert_allclose(steered.logprobs_BxT[m], ref[m], atol=1e-4)


@pytest.mark.parametrize("shape", [{"data": 2, "fsdp": 2, "tensor": 2}, {"fsdp": 2, "tensor": 4}])
def test_sharded_greedy_matches_one_device(tiny_dir, tiny, shape):
    prompts = PROMPTS + _prompts((12, 7, 2, 10), seed=1)  # 8 rows: 2 per (data, fsdp) shard
    ref = _sampler(GREEDY)(tiny, prompts)
    sharded = models.load(tiny_dir, mesh=make_mesh(**shape))
    r = Sampler(GREEDY)(sharded, prompts)
    np.testing.assert_array_equal(r.completion_ids_BxT, ref.completion_ids_BxT)
    np.testing.assert_allclose(r.logprobs_BxT, ref.logprobs_BxT, atol=1e-5)
    # Groups under the mesh too (P = 4 prompts x G = 2), sampled: the same draws.
    g = Sampler(SAMPLE)(sharded, PROMPTS, 2, seed=1)
    g1 = _sampler(SAMPLE)(tiny, PROMPTS, 2, seed=1)
    np.testing.assert_array_equal(g.completion_ids_BxT, g1.completion_ids_BxT)
    np.testing.assert_allclose(g.logprobs_BxT, g1.logprobs_BxT, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The real model

CHATS = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "How do I boil an egg? Give step by step instructions, please, with times.",
    "Hi!",
    "Translate 'good morning' into Spanish and German.",
    "Why is the sky blue? Answer like a physicist speaking to a curious ten year old child.",
]


@pytest.fixture(scope="module")
def smollm2():
    return models.load("smollm2-135m-instruct")


def test_greedy_parity_with_transformers_on_smollm2(smollm2):
    """8 real chat prompts of different lengths, one left-padded batch, 32 new tokens: identical ids."""
    prompts = encode_prompts(smollm2.tokenizer, [[{"role": "user", "content": c}] for c in CHATS])
    assert len({len(p) for p in prompts}) == len(prompts)
    r = Sampler(SamplingConfig(temperature=0.0, max_new_tokens=32, prompt_buckets=(64,)))(smollm2, prompts)
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2.source, dtype=torch.float32).eval()
    pad = smollm2.tokenizer.pad_token_id
    with torch.no_grad():
        out = hf.generate(
            torch.tensor(r.prompt_ids_BxL.astype(np.int64)),
            attention_mask=torch.tensor(r.prompt_mask_BxL.astype(np.int64)),
            do_sample=False,
            max_new_tokens=32,
            pad_token_id=pad,
        )[:, 64:].numpy()
    out = np.pad(out, ((0, 0), (0, 32 - out.shape[1])), constant_values=pad)
    np.testing.assert_array_equal(r.completion_ids_BxT, out)
    assert r.texts[0].startswith("The capital of France is Paris")


def test_generate_helpers_on_smollm2(smollm2):
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=8, prompt_buckets=(64,))
    texts = generate_text(smollm2, [[{"role": "user", "content": CHATS[0]}], "The capital of France is"], cfg)
    assert texts[0].startswith("The capital of France is Paris") and isinstance(texts[1], str)
    recs = generate_records(smollm2, [{"prompt": CHATS[0]}, {"messages": [{"role": "user", "content": "Hi!"}]}], cfg)
    assert recs[0]["text"] == texts[0] and all(isinstance(t, int) for t in recs[0]["completion_ids"])


# ---------------------------------------------------------------------------------------------
# The paged KV layout: block-wise decode, scanned layers, weights cast once


def test_block_wise_decode_equals_one_block(tiny):
    """Completion KV in blocks of 3 slots (4 decode loops) draws exactly what one block does."""
    one = _sampler(SAMPLE)(tiny, PROMPTS, num_generations=2, seed=4)
    blocks = Sampler(dataclasses.replace(SAMPLE, kv_block=3))(tiny, PROMPTS, num_generations=2, seed=4)
    np.testing.assert_array_equal(blocks.completion_ids_BxT, one.completion_ids_BxT)
    np.testing.assert_allclose(blocks.logprobs_BxT, one.logprobs_BxT, atol=1e-5)
    stopped = Sampler(dataclasses.replace(GREEDY, kv_block=5))(tiny, PROMPTS)  # early exit across blocks
    np.testing.assert_array_equal(stopped.completion_ids_BxT, _sampler(GREEDY)(tiny, PROMPTS).completion_ids_BxT)


def test_kv_blocks_cover_the_completion():
    from models.transformer import kv_blocks

    assert kv_blocks(11) == [(0, 11)]
    assert kv_blocks(511) == [(0, 128), (128, 128), (256, 128), (384, 127)]
    assert kv_blocks(1023) == [(0, 256), (256, 256), (512, 256), (768, 255)]  # at most 4 blocks
    assert kv_blocks(10, 4) == [(0, 4), (4, 4), (8, 2)] and kv_blocks(0) == []


def test_scanned_layers_sample_what_the_loop_samples(tiny_dir, tiny):
    scanned = models.load(tiny_dir, scan_layers=True)
    for cfg, g in ((GREEDY, 1), (SAMPLE, 2)):
        a, b = _sampler(cfg)(tiny, PROMPTS, g, seed=6), Sampler(cfg)(scanned, PROMPTS, g, seed=6)
        np.testing.assert_array_equal(b.completion_ids_BxT, a.completion_ids_BxT)
        np.testing.assert_allclose(b.logprobs_BxT, a.logprobs_BxT, atol=1e-5)


def test_rollout_takes_compute_dtype_weights_cast_once(tiny_dir):
    """bf16 compute: the rollout program's weight operands are bf16 (cast once before it, not per token)."""
    from rl.sampler import rollout_weights

    policy = models.load(tiny_dir, dtype="bfloat16")
    graphdef, state = rollout_weights(policy)
    assert {x.dtype for x in jax.tree.leaves(state)} == {jnp.dtype(jnp.bfloat16)}
    lowered = Sampler(GREEDY).lower(graphdef, state, 4, 16, 1, stop_ids=(EOS,), pad=PAD)
    weights = [a for a in jax.tree.leaves(lowered.args_info) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert weights and all(w.dtype == jnp.bfloat16 for w in weights)
    r = Sampler(GREEDY)(policy, PROMPTS)  # and it runs: bf16 greedy mostly agrees with float32
    f32 = _sampler(GREEDY)(models.load(tiny_dir), PROMPTS)
    assert (r.completion_ids_BxT[:, :4] == f32.completion_ids_BxT[:, :4]).mean() > 0.7


def test_fsdp_rollout_gathers_the_weights_once(tiny_dir, tiny):
    from rl.sampler import rollout_weights

    mesh = make_mesh(fsdp=8)
    sharded = models.load(tiny_dir, mesh=mesh)
    _, state = rollout_weights(sharded)
    assert all("fsdp" not in str(x.sharding.spec) for x in jax.tree.leaves(state))
    prompts = PROMPTS + _prompts((12, 7, 2, 10), seed=1)
    r = Sampler(GREEDY)(sharded, prompts)
    np.testing.assert_array_equal(r.completion_ids_BxT, _sampler(GREEDY)(tiny, prompts).completion_ids_BxT)


def test_decode_bytes_by_hand():
    from models.flops import decode_bytes

    cfg = models.ModelConfig(family="llama", vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)
    kv_token = 2 * 2 * 2 * 16 * 4  # k and v x layers x kv heads x head dim x float32
    d = decode_bytes(cfg, prompts=2, generations=3, prompt_len=8, new_tokens=5, kv_block=2)
    # 4 steps; blocks of 2 slots: steps 1-2 read block 0 (2 slots), steps 3-4 read blocks 0-1 (4 slots).
    want_kv = 4 * 2 * 8 * kv_token + 6 * (2 + 2 + 4 + 4) * kv_token
    assert d["steps"] == 4 and d["kv"] == want_kv and d["weights"] == 4 * cfg.num_params() * 4
