"""The public entry points: `load`, `init`, `save_hf` and the `Policy` they pass around."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from engine.errors import UserError
from engine.sharding import sharding_for
from models.config import ModelConfig
from models.hf_io import load_params, save_params
from models.transformer import Decoder

log = logging.getLogger(__name__)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclasses.dataclass
class Policy:
    """A model with its tokenizer and config: what every other package receives."""

    model: Decoder  # the NNX module: model(ids_BxL, attention_mask=mask_BxL) -> f32 logits [B, L, V]
    tokenizer: Any  # transformers fast tokenizer with the chat template (None for bare weights)
    config: ModelConfig
    source: str = ""  # where it was loaded from (directory), for logs and export
    mesh: Mesh | None = None


def param_shardings(model: nnx.Module, mesh: Mesh) -> dict[tuple, NamedSharding]:
    """Our parameter path -> NamedSharding, from each parameter's `logical_axes` and the rules."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {path: sharding_for(v.get_value().shape, v.get_metadata()["logical_axes"], mesh) for path, v in flat}


def _abstract(cfg: ModelConfig, mesh: Mesh | None) -> Decoder:
    return nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0), mesh))


def init(cfg: ModelConfig, mesh: Mesh | None = None, seed: int = 0) -> Decoder:
    """A randomly initialised model; with a mesh every parameter is created already sharded."""
    if mesh is None:
        return Decoder(cfg, nnx.Rngs(seed))
    shardings = param_shardings(_abstract(cfg, mesh), mesh)

    @jax.jit
    def make():
        model = Decoder(cfg, nnx.Rngs(seed), mesh)
        state = nnx.state(model, nnx.Param)
        for path, var in nnx.to_flat_state(state):
            var.set_value(jax.lax.with_sharding_constraint(var.get_value(), shardings[path]))
        nnx.update(model, state)
        return nnx.split(model)[1]

    graphdef = nnx.split(_abstract(cfg, mesh))[0]
    return nnx.merge(graphdef, make())


def _load_tokenizer(directory: Path):
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        return None
    # The fast-tokenizer class directly: `transformers.AutoTokenizer` imports torch when it is installed,
    # and the engine never does.
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    try:
        return TokenizersBackend.from_pretrained(str(directory))
    except Exception as e:  # transformers raises many types for a broken tokenizer directory
        raise UserError(f"{directory}: cannot load the tokenizer ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def load_config(name_or_path: str | Path, dtype: str = "float32", param_dtype: str = "float32",
                remat: bool | str = False, **options) -> ModelConfig:
    """The `ModelConfig` `load` would build, without reading any weights (a .gguf or known name is converted into
    the cache first, as `load` does): what a memory plan needs before the model is loaded."""
    directory = Path(name_or_path)
    if not directory.is_dir():
        from models.hub import resolve

        directory = resolve(str(name_or_path))
    return ModelConfig.from_file(directory / "config.json", dtype=dtype, param_dtype=param_dtype, remat=remat,
                                 **options)


def load(name_or_path: str | Path, mesh: Mesh | None = None, dtype: str = "float32",
         param_dtype: str = "float32", remat: bool | str = False, **options) -> Policy:
    """Loads an HF directory, a .gguf file, or a known name (e.g. "smollm2-135m-instruct").

    With a mesh, parameters are created sharded from the abstract model and each device shard is
    read from the file directly: no unsharded copy on any device. `remat` is a level of
    `models.config.REMAT_LEVELS` (a bool: True = "full"); `options` are further `ModelConfig` switches
    that do not come from config.json (`attention`, `attention_chunk`, `scan_layers`).
    """
    directory = Path(name_or_path)
    if not directory.is_dir():  # a .gguf file, a known name or a hub id: converted / cached by the hub
        from models.hub import resolve

        directory = resolve(str(name_or_path))
    cfg = ModelConfig.from_file(directory / "config.json", dtype=dtype, param_dtype=param_dtype, remat=remat,
                                **options)
    model = _abstract(cfg, mesh)
    load_params(model, cfg, directory, param_shardings(model, mesh) if mesh is not None else None)
    return Policy(model, _load_tokenizer(directory), cfg, str(directory), mesh)


def save_hf(policy: Policy, out_dir: str | Path, max_shard_bytes: int = 2 << 30) -> Path:
    """Writes an HF directory (safetensors, config, generation config, tokenizer + chat template).

    Written into a temporary sibling and renamed into place, so `out_dir` is never half-written.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        cfg = policy.config
        save_params(policy.model, cfg, tmp, max_shard_bytes)
        if jax.process_index() == 0:
            (tmp / "config.json").write_text(json.dumps(cfg.to_hf(), indent=2))
            gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
                   "pad_token_id": cfg.pad_token_id}
            src_gen = Path(policy.source) / "generation_config.json" if policy.source else None
            if src_gen is not None and src_gen.is_file():
                gen = {**json.loads(src_gen.read_text()), **{k: v for k, v in gen.items() if v is not None}}
            (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
            if policy.tokenizer is not None:
                policy.tokenizer.save_pretrained(str(tmp))
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("exported %s", out)
    return out
