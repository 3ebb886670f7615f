"""Bad input -> one clear line naming the file and the problem; the CLI exits 2 with no traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import models
from engine.errors import UserError
from models.safetensors_io import save_file


def _tiny_dir(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    return tmp_path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.commands", *args], capture_output=True, text=True, timeout=300)


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("traitrl: error:")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"config\.json"):
        models.load(tmp_path)
    _one_line_error(_cli("export", "--model", str(tmp_path), "--out", str(tmp_path / "o")), str(tmp_path), "config.json")


def test_unsupported_architecture(tmp_path):
    d = _tiny_dir(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"], cfg["model_type"] = ["GPT2LMHeadModel"], "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="unsupported architecture 'GPT2LMHeadModel'"):
        models.load(d)
    _one_line_error(_cli("export", "--model", str(d), "--out", str(tmp_path / "o")), "config.json", "GPT2LMHeadModel")


def test_wrong_tensor_shape(tmp_path):
    d = _tiny_dir(tmp_path)
    from models.safetensors_io import SafetensorsFile

    f = SafetensorsFile(d / "model.safetensors")
    tensors = [(n, np.array(f[n])) for n in f.keys()]
    tensors = [(n, a[:, :-1] if n == "model.layers.0.mlp.up_proj.weight" else a) for n, a in tensors]
    save_file(tensors, d / "model.safetensors")
    with pytest.raises(UserError, match=r"model\.safetensors: tensor model\.layers\.0\.mlp\.up_proj\.weight has shape \[48, 31\], expected \[48, 32\]"):
        models.load(d)
    _one_line_error(_cli("export", "--model", str(d), "--out", str(tmp_path / "o")), "up_proj", "shape")


def test_truncated_safetensors(tmp_path):
    d = _tiny_dir(tmp_path)
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="truncated"):
        models.load(d)


def test_missing_tensor(tmp_path):
    d = _tiny_dir(tmp_path)
    from models.safetensors_io import SafetensorsFile

    f = SafetensorsFile(d / "model.safetensors")
    save_file([(n, np.array(f[n])) for n in f.keys() if n != "model.norm.weight"], d / "model.safetensors")
    with pytest.raises(UserError, match=r"missing tensor model\.norm\.weight"):
        models.load(d)


def test_cli_unknown_option_exits_2():
    proc = _cli("export", "--no-such-flag", "1")
    assert proc.returncode == 2


def test_cli_unknown_model_name(tmp_path):
    _one_line_error(_cli("generate", "--model", "no-such-model", "--prompt", "hi"), "no-such-model", "known")


def test_cli_truncated_gguf(tmp_path):
    from models import hub

    gguf = hub.known_gguf(hub.KNOWN_MODELS["smollm2-135m-instruct"])
    bad = tmp_path / "cut.gguf"
    with open(gguf, "rb") as fh:
        bad.write_bytes(fh.read(5_000_000))
    env_cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "engine.commands", "export", "--model", str(bad), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "TRAITRL_CACHE": str(env_cache)})
    _one_line_error(proc, "cut.gguf", "truncated")
