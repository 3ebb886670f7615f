"""GGUF (llama.cpp) file -> Hugging Face model directory.

`convert_gguf(path, out_dir)` reads a llama.cpp GGUF file of a Llama, Qwen2 or Qwen3 decoder and
writes a standard HF directory (`config.json`, `generation_config.json`, float32 safetensors,
`tokenizer.json` / `tokenizer_config.json` with the chat template) that both our loader and
`transformers` read. Nothing here imports torch: weights are dequantised with the `gguf` package in
NumPy, and the tokenizer is built with transformers' own GGUF tokenizer builder (the torch-free part
of it), so the result tokenises exactly as `AutoTokenizer.from_pretrained(dir, gguf_file=...)`.

Three things differ between a GGUF and an HF checkpoint:

1. Dimension order. ggml lists a tensor's dimensions fastest-moving first (`ne[0]` is the row
   length), NumPy/torch slowest first. The `gguf` reader already hands the data back in NumPy
   order; we reshape to `reversed(tensor.shape)` anyway, so a quantised tensor's
   `(rows, bytes_per_row)` view and a plain one come out the same.
2. Quantisation: blocks of 32 (or 256 for k-quants) values with shared scales;
   `gguf.quants.dequantize` turns them back into float32.
3. Rope layout (llama only). HF's Llama rotates dimension i with i + d/2 of each head
   (`rotate_half`); ggml's "normal" rope rotates adjacent pairs (2i, 2i+1). llama.cpp's
   `convert_hf_to_gguf.py` therefore permutes the rows of q_proj and k_proj within each head,
   `W.reshape(n_head, 2, d/2, D).swapaxes(1, 2)`: GGUF row order is r0, r_{d/2}, r1, r_{d/2+1}, ...
   We undo it. Qwen2/Qwen3 use ggml's NEOX rope, which is HF's layout, so they are not permuted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from engine.errors import UserError

log = logging.getLogger(__name__)

# Architectures we convert, GGUF name -> (HF architecture class, HF model_type).
ARCHITECTURES = {
    "llama": ("LlamaForCausalLM", "llama"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "qwen3": ("Qwen3ForCausalLM", "qwen3"),
}

# ggml tensor types we dequantise. The first six are tested against transformers; the k-quants and
# Q5_x go through the same `gguf.quants.dequantize` and are tested on random blocks.
SUPPORTED_TYPES = (
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
)  # fmt: skip

# Bytes of float32 weights per safetensors file; larger models are sharded with an index, so
# conversion holds at most one shard of dequantised weights in memory.
MAX_SHARD_BYTES = 2 * 1024**3

_GGUF_MAGIC = b"GGUF"

# GGUF tensor name (after `blk.{i}.`) -> HF name (after `model.layers.{i}.`), per architecture.
_LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_QKV_BIASES = {
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
}
_QK_NORMS = {"attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight"}
_ARCH_LAYER_TENSORS = {
    "llama": _LAYER_TENSORS,
    "qwen2": _LAYER_TENSORS | _QKV_BIASES,
    "qwen3": _LAYER_TENSORS | _QK_NORMS,
}
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",  # absent when the output projection is tied to the embedding
}


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a llama.cpp GGUF file into an HF model directory at `out_dir`; returns `out_dir`.

    The directory is built in a hidden temporary sibling and renamed into place, so an interrupted
    conversion never leaves a half-written `out_dir`. `out_dir` must not exist (or be empty); if
    another process finished converting into it first, its result is kept and ours discarded.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir}: output directory already exists and is not empty")
    reader = _open(gguf_path)
    name = gguf_path.name
    arch = _field(reader, "general.architecture", name)
    if arch not in ARCHITECTURES:
        raise UserError(f"{name}: unsupported GGUF architecture {arch!r} (supported: {', '.join(ARCHITECTURES)})")
    tensors = {t.name: t for t in reader.tensors}
    config = _hf_config(reader, arch, tensors, name)
    plan = _tensor_plan(arch, tensors, config["num_hidden_layers"], name)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _write_weights(tmp, plan, tensors, config, arch, name)
        tokenizer = _build_tokenizer(reader, arch, name)
        _write_tokenizer(tmp, tokenizer)
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "generation_config.json", _generation_config(reader, config))
        _write_json(tmp / "gguf_source.json", _provenance(gguf_path, reader))
        _chmod_like_umask(tmp)  # mkdtemp made it 0700; a cache should be as readable as any new dir
        if out_dir.exists():  # empty (checked above); rename() needs it gone
            out_dir.rmdir()
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / "config.json").is_file():
                raise
            log.info("%s was converted concurrently by another process; keeping that copy", out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# --- reading ---------------------------------------------------------------------------------


def _open(path: Path):
    """A `gguf.GGUFReader` for `path`, with every way a file can be bad turned into a UserError."""
    import gguf

    name = path  # the full path: a user with several copies of a model must know which one is cut
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 4 and _GGUF_MAGIC.startswith(head):
        raise UserError(f"{name}: truncated GGUF file (file ends at byte {size}, inside the magic bytes)")
    if head[:4] != _GGUF_MAGIC:
        raise UserError(f"{name}: not a GGUF file (starts with {head[:4]!r}, expected {_GGUF_MAGIC!r})")
    if len(head) < 24:
        raise UserError(f"{name}: truncated GGUF file (file ends at byte {size}, inside the 24-byte header)")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3):
        raise UserError(f"{name}: unsupported GGUF version {version} (supported: 2, 3)")
    try:
        reader = gguf.GGUFReader(path)
    except Exception:  # noqa: BLE001 - the reader fails in many shapes on a cut file: reshape, view, struct
        raise UserError(
            f"{name}: truncated or corrupt GGUF file (header says {n_tensors} tensors and {n_kv} "
            f"metadata entries, file ends at byte {size}); download or convert it again"
        ) from None
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)  # absolute offsets
    if len(reader.tensors) != n_tensors or end > size:
        raise UserError(
            f"{name}: truncated GGUF file (header says {n_tensors} tensors ending at byte {end}, "
            f"file ends at byte {size})"
        )
    return reader


def _field(reader, key: str, name: str, default=None, required: bool = True):
    """Metadata value `key` as a Python value; UserError if required and absent."""
    field = reader.fields.get(key)
    if field is None:
        if required and default is None:
            raise UserError(f"{name}: GGUF metadata has no {key!r}")
        return default
    return field.contents()


def _hf_config(reader, arch: str, tensors: dict, name: str) -> dict:
    """The HF `config.json` dict for this file (float32, tied embeddings if there is no output.weight)."""

    def key(k, **kw):
        return _field(reader, f"{arch}.{k}", name, **kw)

    hidden = key("embedding_length")
    n_heads = key("attention.head_count")
    n_kv = key("attention.head_count_kv", default=n_heads)
    for k, v in (("attention.head_count", n_heads), ("attention.head_count_kv", n_kv)):
        if not isinstance(v, int):
            raise UserError(f"{name}: per-layer {arch}.{k} is not supported (got {v!r:.80})")
    head_dim = key("attention.key_length", default=hidden // n_heads)
    if "token_embd.weight" not in tensors:
        raise UserError(f"{name}: GGUF has no token_embd.weight tensor")
    vocab = int(tensors["token_embd.weight"].shape[1])  # ggml order: (hidden, vocab)
    rope_dims = key("rope.dimension_count", default=head_dim)
    if rope_dims != head_dim:
        raise UserError(f"{name}: partial rotary embeddings are not supported ({rope_dims} of {head_dim} dims)")
    scaling = key("rope.scaling.type", required=False)
    if scaling not in (None, "none") or "rope_freqs.weight" in tensors:
        what = f"rope scaling {scaling!r}" if scaling not in (None, "none") else "rope_freqs.weight (llama3 rope)"
        raise UserError(f"{name}: unsupported {what}; only unscaled rope is supported")

    bos = _field(reader, "tokenizer.ggml.bos_token_id", name, required=False)
    eos = _field(reader, "tokenizer.ggml.eos_token_id", name, required=False)
    pad = _field(reader, "tokenizer.ggml.padding_token_id", name, required=False)
    hf_arch, model_type = ARCHITECTURES[arch]
    rope_theta = float(key("rope.freq_base", default=10000.0))  # llama.cpp's default
    config = {
        "architectures": [hf_arch],
        "model_type": model_type,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": key("feed_forward_length"),
        "num_hidden_layers": key("block_count"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": key("context_length"),
        "rms_norm_eps": key("attention.layer_norm_rms_epsilon"),
        "rope_theta": rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "tie_word_embeddings": "output.weight" not in tensors,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
        "dtype": "float32",
        "use_cache": True,
    }
    if arch == "llama":
        config |= {"attention_bias": False, "mlp_bias": False}
    elif arch == "qwen3":
        config |= {"attention_bias": False}
    if arch in ("qwen2", "qwen3"):
        config |= {"use_sliding_window": False, "sliding_window": None}
    return config


def _generation_config(reader, config: dict) -> dict:
    """`generation_config.json`: the special ids, with end-of-turn as a second stop token if distinct."""
    eos = config["eos_token_id"]
    eot = _field(reader, "tokenizer.ggml.eot_token_id", "", required=False)
    stop = eos if eot is None or eot == eos else eot if eos is None else [eos, eot]
    gen = {"bos_token_id": config["bos_token_id"], "eos_token_id": stop, "pad_token_id": config["pad_token_id"]}
    return {k: v for k, v in gen.items() if v is not None}


def _provenance(path: Path, reader) -> dict:
    """What the directory was made from, for humans: the file and its tensor types."""
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {"gguf_file": str(path.resolve()), "size": path.stat().st_size, "tensor_types": dict(types)}


# --- weights ---------------------------------------------------------------------------------


def _tensor_plan(arch: str, tensors: dict, n_layers: int, name: str) -> list[tuple[str, str]]:
    """[(gguf name, hf name)] in file order; UserError on a missing or unexpected tensor."""
    expected = {g: h for g, h in _GLOBAL_TENSORS.items()}
    for i in range(n_layers):
        expected |= {f"blk.{i}.{g}": f"model.layers.{i}.{h}" for g, h in _ARCH_LAYER_TENSORS[arch].items()}
    for gname in tensors:
        if gname not in expected:
            hint = " (llama3-style rope scaling)" if gname == "rope_freqs.weight" else ""
            raise UserError(f"{name}: unexpected tensor {gname} for architecture {arch}{hint}")
    missing = [g for g in expected if g not in tensors and g != "output.weight"]
    if missing:
        raise UserError(f"{name}: missing tensor {missing[0]} ({len(missing)} missing in all)")
    for gname, t in tensors.items():
        if t.tensor_type.name not in SUPPORTED_TYPES:
            raise UserError(
                f"{name}: unsupported GGUF tensor type {t.tensor_type.name} for {gname} "
                f"(supported: {', '.join(SUPPORTED_TYPES)})"
            )
    return [(g, expected[g]) for g in tensors]


def _dequantize(t) -> np.ndarray:
    """A tensor as float32 in NumPy (HF) dimension order."""
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # ggml ne order -> NumPy order
    return np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)


def _unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (see module docstring); works on weights and biases."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_tensor(t, gname: str, arch: str, config: dict) -> np.ndarray:
    w = _dequantize(t)
    if arch == "llama" and (".attn_q." in gname or ".attn_k." in gname):
        heads = config["num_attention_heads"] if ".attn_q." in gname else config["num_key_value_heads"]
        w = _unpermute_rope_rows(w, heads)
    return w


def _write_weights(out: Path, plan: list, tensors: dict, config: dict, arch: str, name: str) -> None:
    """Dequantise and write `model.safetensors`, or shards plus an index when over MAX_SHARD_BYTES."""
    from safetensors.numpy import save_file

    sizes = {g: 4 * math.prod(int(d) for d in tensors[g].shape.tolist()) for g, _ in plan}
    shards, current, current_bytes = [], [], 0
    for g, h in plan:
        if current and current_bytes + sizes[g] > MAX_SHARD_BYTES:
            shards.append(current)
            current, current_bytes = [], 0
        current.append((g, h))
        current_bytes += sizes[g]
    shards.append(current)

    meta = {"format": "pt"}  # transformers refuses safetensors without it
    if len(shards) == 1:
        save_file({h: _hf_tensor(tensors[g], g, arch, config) for g, h in plan}, out / "model.safetensors", meta)
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({h: _hf_tensor(tensors[g], g, arch, config) for g, h in shard}, out / fname, meta)
        weight_map |= {h: fname for _, h in shard}
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
    _write_json(out / "model.safetensors.index.json", index)


# --- tokenizer -------------------------------------------------------------------------------


def _build_tokenizer(reader, arch: str, name: str):
    """The fast tokenizer transformers builds for this GGUF, built without importing torch.

    `AutoTokenizer.from_pretrained(dir, gguf_file=...)` reads the metadata with transformers' own
    GGUF reader, which imports torch at module level. We read the same keys with `gguf` instead and
    hand them to the same builder (`convert_gguf_tokenizer`) and the same class
    (`TokenizersBackend`) with the same arguments, mirroring
    `transformers.integrations.gguf.gguf_tokenizer_mapping.get_gguf_tokenizer`.
    """
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
            convert_gguf_tokenizer,
        )
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError as e:  # pragma: no cover - depends on the installed transformers
        raise UserError(f"{name}: this transformers version cannot build GGUF tokenizers ({e})") from None

    fields = reader.fields
    if "tokenizer.ggml.tokens" not in fields:
        raise UserError(f"{name}: GGUF metadata has no tokenizer (tokenizer.ggml.tokens)")
    grouped = {
        group: {hf: fields[f"tokenizer.{k}"].contents() for k, hf in renames.items() if f"tokenizer.{k}" in fields}
        for group, renames in GGUF_TOKENIZER_MAPPING.items()
    }
    tokenizer_dict, tokenizer_config = grouped["tokenizer"], grouped["tokenizer_config"]
    tokenizer_type = tokenizer_dict.get("tokenizer_type")
    if tokenizer_type == "llama":  # llama.cpp adds BOS to a sentencepiece vocab unless told otherwise
        tokenizer_config.setdefault("add_bos_token", True)
    elif tokenizer_type == "gemma4":
        tokenizer_config["add_bos_token"] = False
    tokens = tokenizer_dict["tokens"]
    for special, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        token_id = _field(reader, f"tokenizer.ggml.{key}_token_id", name, required=False)
        tokenizer_config[f"{special}_token"] = tokens[token_id] if token_id is not None else None
    try:
        backend, extra = convert_gguf_tokenizer(arch, tokenizer_dict)
    except (ValueError, KeyError) as e:
        raise UserError(f"{name}: cannot build the tokenizer: {_one_line(e)}") from None
    return TokenizersBackend(tokenizer_object=backend, **tokenizer_config, **extra)


def _write_tokenizer(out: Path, tokenizer) -> None:
    # The chat template goes into tokenizer_config.json, which every transformers version reads.
    tokenizer.save_pretrained(out, save_jinja_files=False)
    names = ("bos_token", "eos_token", "unk_token", "pad_token")  # legacy file, for older readers
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if k in names}
    _write_json(out / "special_tokens_map.json", specials)


# --- helpers ---------------------------------------------------------------------------------


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _chmod_like_umask(directory: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~umask)


def _one_line(e: BaseException) -> str:
    return re.sub(r"\s+", " ", str(e)).strip()[:300]
