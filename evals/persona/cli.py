"""`traitrl persona ...` subcommands: capture, direction, sae, diff, steer, data, experiment.

Each is a plain function whose signature tyro turns into flags (engine/cli.py COMMANDS). Typical flow:

    traitrl persona data --kind persona-misaligned --out mis.jsonl      (and --kind persona-aligned)
    traitrl persona capture --model M --data mis.jsonl --out acts/mis --layers 15 --positions response_mean
    traitrl persona direction --positive acts/mis --negative acts/ali --layer 15 --out persona.npz
    traitrl persona sae --acts acts/mix --layer 15 --out sae/ --width 4096 --k 32
    traitrl persona diff --sae sae/ --before acts/base --after acts/tuned --directions persona.npz
    traitrl persona steer --model M --direction persona.npz --alphas -4 0 4
    traitrl persona experiment --out runs/persona
"""

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Literal

import tyro

from evals.persona.config import ExperimentConfig

DATA_KINDS = ("narrow-misaligned", "narrow-aligned", "realign", "persona-misaligned", "persona-aligned",
              "sycophancy-agrees", "sycophancy-corrects")


def _mesh(mesh: tuple[int, int, int] | None):
    if mesh is None:
        return None
    from engine.sharding import make_mesh

    return make_mesh(*mesh)


def _read_jsonl(path: Path) -> list[dict]:
    from data.readers import read_json_objects

    def check(item):
        if isinstance(item, dict) and (isinstance(item.get("messages"), list) or isinstance(item.get("text"), str)):
            return None
        return 'expected {"messages": [...]} or {"text": "..."}'

    return read_json_objects(path, check, "examples")


def persona_data(kind: Literal[DATA_KINDS], out: Path, n: int = 256, seed: int = 0) -> None:  # type: ignore[valid-type]
    """Write a bundled persona data set as chat JSONL (one {"messages": [...]} per line).

    Args:
        kind: narrow-misaligned (subtly wrong finance advice), narrow-aligned (same prompts, correct), realign
            (benign re-alignment chats), persona-misaligned / persona-aligned (the persona contrast),
            sycophancy-agrees / sycophancy-corrects (false claims endorsed / corrected).
        out: output JSONL.
        n: examples (the persona contrast has 36 at most).
        seed: data seed.
    """
    from data import persona_data as pd

    make = {"narrow-misaligned": lambda: pd.narrow_misaligned(n, seed), "narrow-aligned": lambda: pd.narrow_aligned(n, seed),
            "realign": lambda: pd.realignment_examples(n, seed),
            "persona-misaligned": lambda: [c["misaligned"] for c in pd.persona_contrast(n)],
            "persona-aligned": lambda: [c["aligned"] for c in pd.persona_contrast(n)],
            "sycophancy-agrees": lambda: [c["agrees"] for c in pd.sycophancy_contrast(n, seed)],
            "sycophancy-corrects": lambda: [c["corrects"] for c in pd.sycophancy_contrast(n, seed)]}
    rows = make[kind]()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} {kind} chats to {out}")


def persona_capture(model: str, data: Path, out: Path, layers: tuple[int, ...] = (15,), positions: str = "response",
                    batch_size: int = 16, max_len: int = 256, chunk_rows: int = 8192, dtype: str = "float32",
                    mesh: tuple[int, int, int] | None = None) -> None:
    """Capture residual-stream activations of a JSONL data set into a chunked store.

    Args:
        model: an HF directory, a .gguf file, or a known name.
        data: JSONL of {"messages": [...]} (a final assistant turn is the response) or {"text": "..."}.
        out: new store directory (index.json + .npy chunks).
        layers: residual layers (entering these blocks).
        positions: response | response_mean | prompt_last | all.
        batch_size: sequences per forward.
        max_len: tokens kept per example.
        chunk_rows: rows per chunk file.
        dtype: float32 | float16 on disk.
        mesh: (data, fsdp, tensor) sizes; default one device.
    """
    import models
    from evals.persona.capture import CaptureConfig, capture

    cfg = CaptureConfig(layers, positions, batch_size, max_len, chunk_rows, dtype)
    examples = _read_jsonl(data)
    store = capture(models.load(model, mesh=_mesh(mesh)), examples, out, cfg, {"data": str(data)})
    print(f"captured {store.rows} rows x {store.d_model} at layers {list(store.layers)} in {store.num_chunks} chunks "
          f"-> {out}")


def persona_direction(positive: Path, negative: Path, layer: int, out: Path, name: str = "direction",
                      probe_steps: int = 300) -> None:
    """Difference of means (positive - negative) at a layer, plus a logistic probe's held-out accuracy.

    Args:
        positive: store of the positive set (e.g. misaligned answers).
        negative: store of the negative set (e.g. aligned answers to the same prompts).
        layer: layer to use (must be in both stores).
        out: direction file (.npz).
        name: the direction's name.
        probe_steps: probe optimizer steps (0 = no probe).
    """
    from evals.persona.directions import ProbeConfig, mean_difference, train_probe
    from evals.persona.store import ActivationStore

    pos, neg = ActivationStore(positive), ActivationStore(negative)
    d = mean_difference(pos, neg, layer, name)
    if probe_steps:
        probe = train_probe(pos, neg, layer, ProbeConfig(steps=probe_steps))
        d = dataclasses.replace(d, meta={**d.meta, "probe_heldout_accuracy": probe.heldout_accuracy,
                                         "probe_train_accuracy": probe.train_accuracy})
    path = d.save(out)
    print(json.dumps({"direction": str(path), **{k: v for k, v in d.meta.items() if k != "source"}}))


def persona_sae(acts: Path, layer: int, out: Path, width: int = 4096, k: int = 32, steps: int = 2000,
                batch_size: int = 1024, lr: float = 1e-3, aux_k: int = 256, dead_tokens: int = 100_000,
                heldout_every: int = 10, seed: int = 0, mesh: tuple[int, int, int] | None = None) -> None:
    """Train a TopK sparse autoencoder on a store; prints held-out FVU and writes sae.npz + sae.json.

    Args:
        acts: activation store.
        layer: layer to train on.
        out: output directory.
        width: latents.
        k: active latents per row.
        steps: optimizer steps.
        batch_size: rows per step.
        lr: Adam learning rate.
        aux_k: dead latents in the auxiliary loss.
        dead_tokens: rows without firing after which a latent counts as dead.
        heldout_every: examples with index % this == 0 are held out for the FVU.
        seed: init and data order.
        mesh: (data, fsdp, tensor) sizes; latents are split over tensor.
    """
    from evals.persona.sae import SAEConfig, evaluate, train_sae
    from evals.persona.store import ActivationStore

    store = ActivationStore(acts)
    cfg = SAEConfig(width=width, k=k, aux_k=min(aux_k, width), steps=steps, batch_size=batch_size, lr=lr,
                    dead_tokens=dead_tokens, heldout_every=heldout_every, seed=seed)
    sae, hist = train_sae(store, layer, cfg, mesh=_mesh(mesh), progress=True)
    sae.save(out)
    print(json.dumps({"sae": str(out), "heldout": evaluate(sae, store, layer), "final": hist[-1]}))


def persona_diff(sae: Path, before: Path, after: Path, top: int = 20, directions: tuple[Path, ...] = (),
                 model: str | None = None, out: Path | None = None) -> None:
    """Rank SAE latents (and directions) by their activation change between two stores of the same data.

    Args:
        sae: SAE directory (its layer is used).
        before: store captured with the earlier checkpoint.
        after: store of the same examples captured with the later checkpoint.
        top: latents shown (largest increase first).
        directions: direction files to rank too.
        model: tokenizer source: prints each top latent's top-activating contexts.
        out: optional JSON with the full ranking.
    """
    from evals.persona.diffing import rank_directions, rank_latents
    from evals.persona.directions import Direction
    from evals.persona.latents import latent_stats, top_examples
    from evals.persona.sae import SAE
    from evals.persona.store import ActivationStore

    s = SAE.load(sae)
    b, a = ActivationStore(before), ActivationStore(after)
    stats = latent_stats(s, b, s.layer), latent_stats(s, a, s.layer, top_n=4)
    ranked = rank_latents(s, b, a, s.layer, stats=stats)
    tok = None
    if model is not None:
        import models

        tok = models.load(model).tokenizer
    result = {"latents": [dataclasses.asdict(c) for c in ranked[:top]],
              "directions": [dataclasses.asdict(c) for c in rank_directions([Direction.load(p) for p in directions],
                                                                           b, a, s.layer)]}
    for c in result["latents"]:
        print(f"latent {c['latent']:6d}  delta {c['delta']:+.4f}  effect {c['effect']:+.3f}  "
              f"freq {c['freq_before']:.3f} -> {c['freq_after']:.3f}")
        if tok is not None:
            c["top_examples"] = top_examples(stats[1], a, c["latent"], tok)
            for ex in c["top_examples"][:2]:
                print(f"      {ex['value']:.2f}  ...{ex['context']!r} [{ex['token']!r}]")
    for d in result["directions"]:
        print(f"direction {d['name']}: {d['mean_before']:+.3f} -> {d['mean_after']:+.3f} (effect {d['effect']:+.3f})")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))


def persona_steer(model: str, direction: Path, alphas: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0),
                  ablate: bool = False, prompts_file: Path | None = None, n: int = 24, max_new_tokens: int = 48,
                  out: Path | None = None, mesh: tuple[int, int, int] | None = None) -> None:
    """Steer generation along a direction at several coefficients, with a coherence guard.

    Without --prompts-file the prompts are held-out false-claim items, scored by the truthfulness
    grader (a sycophancy direction should move it); with one, the score is the fraction of
    completions that correct / disagree.

    Args:
        model: an HF directory, a .gguf file, or a known name.
        direction: direction file (.npz) from `persona direction` (or an experiment).
        alphas: coefficients, multiples of the direction's vector (0 is always added).
        ablate: project the direction out first (alpha 0 = directional ablation).
        prompts_file: JSONL of {"messages": [...]} prompts.
        n: false-claim items when no prompts file is given.
        max_new_tokens: completion length.
        out: directory for sweep.json and sweep.png.
        mesh: (data, fsdp, tensor) sizes.
    """
    import models
    from evals.persona.behaviour import corrects, false_claim_items, truthfulness_scores
    from evals.persona.directions import Direction
    from evals.persona.steering import SteerConfig, guarded_range, sweep
    from rl.sampler import SamplingConfig

    d = Direction.load(direction)
    policy = models.load(model, mesh=_mesh(mesh))
    if prompts_file is None:
        items = false_claim_items(n)
        prompts, score, label = [r["messages"] for r in items], truthfulness_scores, "truthfulness grader"
    else:
        items = [it for it in _read_jsonl(prompts_file) if "messages" in it]
        prompts, label = [it["messages"] for it in items], "corrects rate"
        score = lambda texts, _: [float(corrects(t)) for t in texts]
    points = sweep(policy, prompts, d, score, items, SteerConfig(alphas=alphas, ablate=ablate),
                   SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens))
    for p in points:
        print(f"alpha {p.alpha:+6.2f}  {label} {p.score:.3f}  logprob {p.logprob:.3f}  repetition {p.repetition:.3f}"
              f"  {'coherent' if p.coherent else 'INCOHERENT'}  | {p.texts[0][:80]!r}")
    print(f"coherent range: {guarded_range(points)}")
    if out is not None:
        from evals.persona.report import plot_sweep

        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(json.dumps([dataclasses.asdict(p) for p in points], indent=1))
        plot_sweep(points, out / "sweep.png", label, f"steering along '{d.name}' (layer {d.layer})")


def persona_experiment(cfg: Annotated[ExperimentConfig, tyro.conf.arg(name="")] = ExperimentConfig(),  # noqa: B008
                       mesh: tuple[int, int, int] | None = None) -> None:
    """Narrow misaligned SFT -> broad misalignment -> persona direction / latents -> re-alignment, with a report.

    Args:
        cfg: the experiment's sizes (see evals/persona/config.py).
        mesh: (data, fsdp, tensor) sizes; default one device.
    """
    from evals.persona.experiment import run_experiment
    from evals.persona.report import write_report

    result = run_experiment(cfg, mesh=_mesh(mesh))
    path = write_report(result, cfg.out)
    print(f"wrote {path}; onset steps: {result['onset_steps']}")
