"""`traitrl persona ...` end to end on a tiny saved model: data -> capture -> direction -> sae -> diff, and errors."""

import json

import numpy as np
import pytest

import models
from engine.commands.main import main
from evals.persona.directions import Direction
from evals.persona.sae import SAE
from evals.persona.store import ActivationStore


def test_persona_cli_pipeline(tiny_policy, tmp_path, capsys):
    model_dir = models.save_hf(tiny_policy, tmp_path / "tiny")
    for kind in ("persona-misaligned", "persona-aligned"):
        main(["persona", "data", "--kind", kind, "--out", str(tmp_path / f"{kind}.jsonl"), "--n", "16"])
    assert len((tmp_path / "persona-aligned.jsonl").read_text().splitlines()) == 16
    for kind in ("persona-misaligned", "persona-aligned"):
        main(["persona", "capture", "--model", str(model_dir), "--data", str(tmp_path / f"{kind}.jsonl"),
              "--out", str(tmp_path / kind), "--layers", "1", "--batch-size", "8", "--chunk-rows", "200"])
    mis, ali = ActivationStore(tmp_path / "persona-misaligned"), ActivationStore(tmp_path / "persona-aligned")
    assert mis.num_chunks > 1 and mis.layers == (1,) and mis.meta["data"].endswith("persona-misaligned.jsonl")
    assert mis.num_examples == ali.num_examples == 16 and ali.rows > 0
    main(["persona", "direction", "--positive", str(tmp_path / "persona-misaligned"), "--negative",
          str(tmp_path / "persona-aligned"), "--layer", "1", "--out", str(tmp_path / "dir.npz"), "--name", "persona",
          "--probe-steps", "30"])
    d = Direction.load(tmp_path / "dir.npz")
    assert d.name == "persona" and d.layer == 1 and "probe_heldout_accuracy" in d.meta
    main(["persona", "sae", "--acts", str(tmp_path / "persona-misaligned"), "--layer", "1", "--out",
          str(tmp_path / "sae"), "--width", "64", "--k", "4", "--aux-k", "8", "--steps", "20", "--batch-size", "64"])
    assert SAE.load(tmp_path / "sae").width == 64
    capsys.readouterr()
    main(["persona", "diff", "--sae", str(tmp_path / "sae"), "--before", str(tmp_path / "persona-aligned"),
          "--after", str(tmp_path / "persona-misaligned"), "--top", "3", "--directions", str(tmp_path / "dir.npz"),
          "--model", str(model_dir), "--out", str(tmp_path / "diff.json")])
    printed = capsys.readouterr().out
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert len(diff["latents"]) == 3 and diff["directions"][0]["name"] == "persona" and "latent" in printed
    deltas = [c["delta"] for c in diff["latents"]]
    assert deltas == sorted(deltas, reverse=True) and diff["latents"][0]["top_examples"]
    # The persona direction separates the very sets it came from: the diff ranks it with a positive effect.
    assert diff["directions"][0]["effect"] > 0
    assert np.isfinite(diff["directions"][0]["mean_after"])


def test_persona_cli_user_errors(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"prompt": 3}\n')
    with pytest.raises(SystemExit) as e:
        main(["persona", "capture", "--model", "unused", "--data", str(bad), "--out", str(tmp_path / "s")])
    assert e.value.code == 2 and f"{bad}:2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["persona", "diff", "--sae", str(tmp_path), "--before", str(tmp_path), "--after", str(tmp_path)])
    assert e.value.code == 2 and "not an SAE directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["persona", "direction", "--positive", str(tmp_path), "--negative", str(tmp_path), "--layer", "1",
              "--out", str(tmp_path / "d.npz")])
    assert e.value.code == 2 and "not an activation store" in capsys.readouterr().err
