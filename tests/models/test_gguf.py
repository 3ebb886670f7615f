"""GGUF import: tiny files written the way llama.cpp writes them, checked against transformers' own
GGUF loading (same file) and against the original weights / logits; the real SmolLM2 file; bad input.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file

from engine.errors import UserError
from models import gguf as gguf_mod
from models import hub

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "the theory, then the  thesis?\n 12345 + 678 = ? héllo 🤖"},
    {"role": "assistant", "content": "  There: the <|im_end|> thing."},
    {"role": "user", "content": "thanks"},
]
TEXTS = ["the theory", "  leading spaces and the\ttab", "digits 2024 and ünïcödé 🤖", "<|im_start|>user"]
WORDS = ["the", "theory", "then", "thesis", "there", "thing", "thanks", "and", "brief", "user", "assistant"]


# --- writing GGUF files the way llama.cpp's convert_hf_to_gguf.py does ---------------------------


def _bpe_tokenizer():
    """A small byte-level BPE vocabulary (llama.cpp's "gpt2" tokenizer model): specials, the 256
    byte symbols, and merges that build each word of WORDS (with and without a leading space)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + list(bytes_to_unicode().values())
    merges = []
    for word in WORDS + ["\u0120" + w for w in WORDS]:
        piece = word[0]
        for ch in word[1:]:
            if piece + ch not in tokens:
                merges.append(f"{piece} {ch}")
                tokens.append(piece + ch)
            piece += ch
    types = [3] * len(specials) + [1] * (len(tokens) - len(specials))  # 3 CONTROL, 1 NORMAL
    return {"model": "gpt2", "tokens": tokens, "types": types, "merges": merges, "bos": 1, "eos": 2, "pad": 2, "unk": 0}


def _spm_tokenizer():
    """A small sentencepiece-style vocabulary (llama.cpp's "llama" tokenizer model): merges come
    from the scores, unknown bytes fall back to <0xNN> tokens, BOS is added by default."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # 2 UNKNOWN, 3 CONTROL, 6 BYTE
    pieces = list(dict.fromkeys(["\u2581"] + [c for w in WORDS for c in w]))
    for word in ["\u2581" + w for w in WORDS]:
        for i in range(2, len(word) + 1):
            pieces.append(word[:i])
    pieces = list(dict.fromkeys(pieces))
    tokens += pieces
    types += [1] * len(pieces)
    scores = [0.0] * (len(tokens) - len(pieces)) + [-float(i) for i in range(len(pieces))]
    return {"model": "llama", "tokens": tokens, "types": types, "scores": scores, "bos": 1, "eos": 2, "unk": 0}


def _hf_model(arch, vocab, hidden=64, inter=128, layers=2, heads=4, kv=2, tie=False, head_dim=None, seed=0):
    torch.manual_seed(seed)
    kw = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
          "num_attention_heads": heads, "num_key_value_heads": kv, "tie_word_embeddings": tie, "rms_norm_eps": 1e-5,
          "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}  # fmt: skip
    cls = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
           "qwen3": transformers.Qwen3ForCausalLM}[arch]  # fmt: skip
    if arch == "llama":
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 50000.0}
    else:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    if head_dim is not None:
        kw["head_dim"] = head_dim
    model = cls(cls.config_class(**kw)).eval()
    with torch.no_grad():  # norms start at 1 and biases at 0: make them visible to the checks
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


_TO_GGUF = {v: k for k, v in gguf_mod._GLOBAL_TENSORS.items()} | {
    f"model.layers.{{}}.{h}": f"blk.{{}}.{g}" for arch in gguf_mod._ARCH_LAYER_TENSORS
    for g, h in gguf_mod._ARCH_LAYER_TENSORS[arch].items()
}  # fmt: skip


def _gguf_name(hf_name):
    parts = hf_name.split(".")
    if hf_name.startswith("model.layers."):
        i = parts[2]
        return _TO_GGUF["model.layers.{}." + ".".join(parts[3:])].format(i)
    return _TO_GGUF[hf_name]


def _permute(w, n_head):  # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _random_blocks(rows, cols, qtype, rng):
    """Random quantised blocks whose f16 scales stay finite: every byte < 0x3c keeps |scale| < 1."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return rng.integers(0, 0x3C, size=(rows, cols // block * type_size), dtype=np.uint8)


def write_gguf(path, model, arch, qtype=Q.F32, tok=None, random_blocks=False, drop=(), gguf_arch=None):
    """Write `model` as llama.cpp would: GGUF names, q/k rows permuted (llama), 2-D weights in
    `qtype` (random blocks if asked), 1-D tensors in F32, tokenizer and chat template in metadata."""
    cfg = model.config
    tok = tok or _bpe_tokenizer()
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), gguf_arch or arch)
    w.add_name("tiny")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    if arch == "llama":
        w.add_rope_dimension_count(cfg.head_dim)
    if arch == "qwen3":
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    w.add_tokenizer_model(tok["model"])
    w.add_tokenizer_pre("qwen2" if arch != "llama" else "smollm")
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    if "merges" in tok:
        w.add_token_merges(tok["merges"])
    if "scores" in tok:
        w.add_token_scores(tok["scores"])
    w.add_bos_token_id(tok["bos"])
    w.add_eos_token_id(tok["eos"])
    w.add_unk_token_id(tok["unk"])
    if "pad" in tok:
        w.add_pad_token_id(tok["pad"])
    if tok["model"] == "gpt2":
        w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    for hf_name, t in sd.items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = _gguf_name(hf_name)
        if name in drop:
            continue
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            t = _permute(t, cfg.num_attention_heads if ".attn_q." in name else cfg.num_key_value_heads)
        if t.ndim == 1 or qtype == Q.F32:
            w.add_tensor(name, np.ascontiguousarray(t))
        elif random_blocks:
            w.add_tensor(name, _random_blocks(*t.shape, qtype, rng), raw_dtype=qtype)
        elif qtype == Q.F16:
            w.add_tensor(name, t.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(t, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


# --- references ------------------------------------------------------------------------------


def transformers_state_dict(gguf_path):
    m = transformers.AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return {k: v.numpy() for k, v in m.state_dict().items()}


def assert_matches_transformers(gguf_path, out_dir, atol=1e-6):
    mine = _load_dir(out_dir)
    ref = transformers_state_dict(gguf_path)
    config = json.loads((out_dir / "config.json").read_text())
    if config["tie_word_embeddings"]:
        assert "lm_head.weight" not in mine
        ref.pop("lm_head.weight")
    assert sorted(mine) == sorted(ref)
    for k in ref:
        assert mine[k].dtype == np.float32 and mine[k].shape == ref[k].shape, k
        np.testing.assert_allclose(mine[k], ref[k], atol=atol, rtol=0, err_msg=k)


def assert_same_tokenizer(gguf_path, out_dir):
    ref = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    mine = transformers.AutoTokenizer.from_pretrained(out_dir)
    assert mine.chat_template == ref.chat_template
    assert mine.special_tokens_map == ref.special_tokens_map

    def chat(t):
        return t.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)["input_ids"]

    assert chat(mine) == chat(ref)
    for text in TEXTS:
        assert mine(text)["input_ids"] == ref(text)["input_ids"], text
    ids = chat(ref)
    assert mine.decode(ids) == ref.decode(ids)
    return ref


def _load_dir(out_dir):
    tensors = {}
    for f in sorted(out_dir.glob("*.safetensors")):
        tensors |= load_file(f)
    return tensors


def _logits(model_or_dir, ids):
    model = model_or_dir
    if isinstance(model_or_dir, Path):
        model = transformers.AutoModelForCausalLM.from_pretrained(model_or_dir).eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


# --- tiny models -----------------------------------------------------------------------------

SIX = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1]


@pytest.fixture(scope="module")
def tiny_llama():
    return _hf_model("llama", len(_bpe_tokenizer()["tokens"]))


@pytest.mark.parametrize("qtype", SIX, ids=lambda q: q.name)
def test_llama_quant_types_match_transformers(tmp_path, tiny_llama, qtype):
    src = write_gguf(tmp_path / f"tiny-{qtype.name}.gguf", tiny_llama, "llama", qtype)
    out = gguf_mod.convert_gguf(src, tmp_path / "out")
    assert_matches_transformers(src, out)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is False
    assert {k: config[k] for k in ("vocab_size", "hidden_size", "num_key_value_heads", "head_dim")} == {
        "vocab_size": tiny_llama.config.vocab_size,
        "hidden_size": 64,
        "num_key_value_heads": 2,
        "head_dim": 16,
    }
    if qtype == Q.F32:  # lossless: the exact original weights, and so the original logits
        original = {k: v.numpy() for k, v in tiny_llama.state_dict().items()}
        mine = _load_dir(out)
        for k, v in original.items():
            np.testing.assert_array_equal(mine[k], v, err_msg=k)
        ids = [[1, 5, 70, 200, 9, 2, 261, 262]]
        np.testing.assert_allclose(_logits(out, ids), _logits(tiny_llama, ids), atol=1e-5, rtol=1e-5)
    if qtype == Q.Q4_1:
        assert_same_tokenizer(src, out)


@pytest.mark.parametrize("qtype", [Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K], ids=lambda q: q.name)
def test_other_quant_types_on_random_blocks(tmp_path, qtype):
    # k-quants pack 256 values a block, so every 2-D tensor's rows are a multiple of 256 here
    model = _hf_model("llama", len(_bpe_tokenizer()["tokens"]), hidden=256, inter=512, layers=1, heads=4, kv=2)
    src = write_gguf(tmp_path / f"rand-{qtype.name}.gguf", model, "llama", qtype, random_blocks=True)
    assert_matches_transformers(src, gguf_mod.convert_gguf(src, tmp_path / "out"))


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_qwen_matches_original_and_transformers(tmp_path, arch):
    # qwen GGUFs keep HF's rope layout (no q/k permutation); qwen2 has q/k/v biases, qwen3 q/k norms.
    # Qwen3's head_dim is 128 here because transformers' GGUF path ignores attention.key_length.
    tok = _bpe_tokenizer()
    model = _hf_model(arch, len(tok["tokens"]), tie=True, head_dim=128 if arch == "qwen3" else None)
    src = write_gguf(tmp_path / f"{arch}.gguf", model, arch, Q.F32, tok=tok)
    out = gguf_mod.convert_gguf(src, tmp_path / "out")
    assert_matches_transformers(src, out)
    assert json.loads((out / "config.json").read_text())["architectures"] == [type(model).__name__]
    ids = [[1, 5, 70, 200, 9, 2, 261, 262]]
    np.testing.assert_allclose(_logits(out, ids), _logits(model, ids), atol=1e-5, rtol=1e-5)
    assert_same_tokenizer(src, out)


def test_sentencepiece_tokenizer_matches_transformers(tmp_path):
    tok = _spm_tokenizer()
    model = _hf_model("llama", len(tok["tokens"]), layers=1)
    src = write_gguf(tmp_path / "spm.gguf", model, "llama", Q.Q8_0, tok=tok)
    out = gguf_mod.convert_gguf(src, tmp_path / "out")
    ref = assert_same_tokenizer(src, out)
    assert ref("the theory")["input_ids"][0] == 1  # BOS added, as llama.cpp does for this vocab


def test_sharded_output_loads_in_transformers(tmp_path, tiny_llama, monkeypatch):
    src = write_gguf(tmp_path / "tiny.gguf", tiny_llama, "llama", Q.F32)
    monkeypatch.setattr(gguf_mod, "MAX_SHARD_BYTES", 100_000)
    out = gguf_mod.convert_gguf(src, tmp_path / "out")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and not (out / "model.safetensors").exists()
    ids = [[1, 5, 70, 200]]
    np.testing.assert_allclose(_logits(out, ids), _logits(tiny_llama, ids), atol=1e-5, rtol=1e-5)


def test_conversion_never_imports_torch(tmp_path, tiny_llama):
    src = write_gguf(tmp_path / "tiny.gguf", tiny_llama, "llama", Q.Q4_0)
    code = (
        "import sys\n"
        "from models.gguf import convert_gguf\n"
        f"convert_gguf({str(src)!r}, {str(tmp_path / 'out')!r})\n"
        "assert 'torch' not in sys.modules, 'conversion imported torch'\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def test_failed_conversion_leaves_nothing(tmp_path, tiny_llama, monkeypatch):
    src = write_gguf(tmp_path / "tiny.gguf", tiny_llama, "llama", Q.F32)
    monkeypatch.setattr(gguf_mod, "_write_tokenizer", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        gguf_mod.convert_gguf(src, tmp_path / "cache" / "out")
    assert list((tmp_path / "cache").iterdir()) == []


# --- hub: resolve and cache ------------------------------------------------------------------


def test_resolve_caches_gguf_conversions(tmp_path, tiny_llama, monkeypatch):
    monkeypatch.setenv("TRAITRL_CACHE", str(tmp_path / "cache"))
    src = write_gguf(tmp_path / "tiny.gguf", tiny_llama, "llama", Q.Q8_0)
    first = hub.resolve(str(src))
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.startswith("tiny-")
    assert hub.resolve(str(first)) == first  # an HF directory is itself
    monkeypatch.setattr(hub, "convert_gguf", lambda *a: pytest.fail("converted again"))
    assert hub.resolve(str(src)) == first
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))  # an edited file converts anew
    with pytest.raises(pytest.fail.Exception):
        hub.resolve(str(src))


def test_known_names_and_aliases():
    assert hub.known_model("smollm2-135m-instruct").name == "smollm2-135m-instruct"
    assert hub.known_model("HuggingFaceTB/SmolLM2-135M-Instruct").name == "smollm2-135m-instruct"
    assert hub.known_model("huggingfacetb/smollm2-135m-instruct") is not None
    assert hub.known_model("gpt2") is None


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAITRL_CACHE", str(tmp_path))
    assert hub.cache_root() == tmp_path
    monkeypatch.delenv("TRAITRL_CACHE")
    assert hub.cache_root() == Path.home() / ".cache" / "traitrl"


# --- bad input -------------------------------------------------------------------------------


def _user_error(fn, *needles):
    with pytest.raises(UserError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_missing_file(tmp_path):
    _user_error(lambda: gguf_mod.convert_gguf(tmp_path / "nope.gguf", tmp_path / "out"), "nope.gguf", "no such file")
    _user_error(lambda: hub.resolve(str(tmp_path / "nope.gguf")), "nope.gguf", "no such file")


def test_bad_magic(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    _user_error(lambda: gguf_mod.convert_gguf(bad, tmp_path / "out"), "model.gguf", "not a GGUF file")
    assert not (tmp_path / "out").exists()


def test_truncated(tmp_path, tiny_llama):
    src = write_gguf(tmp_path / "full.gguf", tiny_llama, "llama", Q.Q4_1)
    data = src.read_bytes()
    cut_file = tmp_path / "cut.gguf"
    for cut in (2, 10, 30, 2000, len(data) // 2, len(data) - 40):  # the last 0-31 bytes can be padding
        cut_file.write_bytes(data[:cut])
        _user_error(lambda: gguf_mod.convert_gguf(cut_file, tmp_path / "out"), "cut.gguf", "truncated", f"{cut}")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture(tmp_path, tiny_llama):
    src = write_gguf(tmp_path / "phi.gguf", tiny_llama, "llama", gguf_arch="phi3")
    convert = lambda: gguf_mod.convert_gguf(src, tmp_path / "out")
    _user_error(convert, "phi.gguf", "unsupported GGUF architecture 'phi3'")


def test_unsupported_quant_type(tmp_path):
    model = _hf_model("llama", len(_bpe_tokenizer()["tokens"]), hidden=256, inter=512, layers=1)
    src = write_gguf(tmp_path / "iq.gguf", model, "llama", Q.IQ4_NL, random_blocks=True)
    _user_error(lambda: gguf_mod.convert_gguf(src, tmp_path / "out"), "iq.gguf", "unsupported GGUF tensor type IQ4_NL",
                "token_embd.weight", "supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1")  # fmt: skip


def test_missing_and_unexpected_tensors(tmp_path, tiny_llama):
    src = write_gguf(tmp_path / "hole.gguf", tiny_llama, "llama", drop=("blk.1.ffn_up.weight",))
    _user_error(lambda: gguf_mod.convert_gguf(src, tmp_path / "out"), "hole.gguf", "missing tensor blk.1.ffn_up.weight")


def test_existing_output_dir(tmp_path, tiny_llama):
    src = write_gguf(tmp_path / "tiny.gguf", tiny_llama, "llama")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    _user_error(lambda: gguf_mod.convert_gguf(src, tmp_path / "out"), "out", "already exists")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_unknown_names_and_dirs(tmp_path):
    _user_error(lambda: hub.resolve("no-such-model"), "unknown model 'no-such-model'", "smollm2-135m-instruct")
    (tmp_path / "weights.gguf").write_bytes(b"")
    _user_error(lambda: hub.resolve(str(tmp_path)), str(tmp_path), "no config.json", "weights.gguf")


def test_hub_id_offline(tmp_path, monkeypatch):
    import huggingface_hub

    real = huggingface_hub.snapshot_download  # offline: the real library, told not to use the network

    def offline(*args, **kwargs):
        return real(*args, **kwargs, local_files_only=True, cache_dir=tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    msg = "cannot reach the Hugging Face hub to fetch some-org/some-model"
    _user_error(lambda: hub.resolve("some-org/some-model"), msg, "smollm2-135m-instruct", ".gguf")


# --- the real model --------------------------------------------------------------------------


def test_smollm2_matches_transformers():
    """SmolLM2-135M-Instruct (Q4_1 + Q8_0 + F32 tensors) as `traitrl pull` caches it: every tensor
    equals transformers' GGUF load of the same file, and the tokenizer and chat template agree.
    Uses $TRAITRL_CACHE (or ~/.cache/traitrl), so the download happens once per machine / CI cache."""
    directory = hub.pull("smollm2-135m-instruct")
    assert hub.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == directory
    gguf_path = hub.known_gguf(hub.KNOWN_MODELS["smollm2-135m-instruct"])
    assert_matches_transformers(gguf_path, directory, atol=0)
    ref = assert_same_tokenizer(gguf_path, directory)
    ids = ref.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert ids[-4:] == ref.encode("<|im_start|>assistant\n")  # ends with the generation prompt
