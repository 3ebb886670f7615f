"""`traitrl persona ...`: data, capture, direction, sae, diff, steer, experiment (the persona-features toolkit).

Typical flow:

    traitrl persona data --kind persona-misaligned --out mis.jsonl      (and --kind persona-aligned)
    traitrl persona capture --model M --data mis.jsonl --out acts/mis --layers 15 --positions response_mean
    traitrl persona direction --positive acts/mis --negative acts/ali --layer 15 --out persona.npz
    traitrl persona sae --acts acts/mix --layer 15 --out sae/ --width 4096 --k 32
    traitrl persona diff --sae sae/ --before acts/base --after acts/tuned --directions persona.npz
    traitrl persona steer --model M --direction persona.npz --alphas -4 0 4
    traitrl persona experiment --out runs/persona
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Literal

import tyro

from engine.commands.common import check_mesh
from engine.commands.main import Command
from evals.persona.capture import CaptureConfig
from evals.persona.config import EMExperimentConfig
from evals.persona.sae import SAEConfig
from evals.persona.steering import SteerConfig

DataKind = Literal["narrow-misaligned", "narrow-aligned", "realign", "persona-misaligned", "persona-aligned",
                   "sycophancy-agrees", "sycophancy-corrects"]
Mesh = tuple[int, int, int] | None


def _read_examples(path: Path) -> list[dict]:
    from data.readers import read_json_objects

    def check(item):
        if isinstance(item, dict) and (isinstance(item.get("messages"), list) or isinstance(item.get("text"), str)):
            return None
        return 'expected {"messages": [...]} or {"text": "..."}'

    return read_json_objects(path, check, "examples")


@dataclasses.dataclass(frozen=True)
class DataCommand:
    """Write a bundled persona data set as chat JSONL (one {"messages": [...]} per line)."""

    kind: DataKind  # narrow-(mis)aligned finance advice, realign chats, the persona contrast, sycophancy contrast
    out: Path  # output JSONL
    n: int = 256  # examples (the persona contrast has 36 at most)
    seed: int = 0  # data seed


def run_data(cfg: DataCommand) -> None:
    from data import persona_sets as ps

    make = {"narrow-misaligned": lambda: ps.narrow_misaligned(cfg.n, cfg.seed),
            "narrow-aligned": lambda: ps.narrow_aligned(cfg.n, cfg.seed),
            "realign": lambda: ps.realignment_examples(cfg.n, cfg.seed),
            "persona-misaligned": lambda: [c["misaligned"] for c in ps.persona_contrast(cfg.n)],
            "persona-aligned": lambda: [c["aligned"] for c in ps.persona_contrast(cfg.n)],
            "sycophancy-agrees": lambda: [c["agrees"] for c in ps.sycophancy_contrast(cfg.n, cfg.seed)],
            "sycophancy-corrects": lambda: [c["corrects"] for c in ps.sycophancy_contrast(cfg.n, cfg.seed)]}
    rows = make[cfg.kind]()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} {cfg.kind} chats to {cfg.out}")


@dataclasses.dataclass(frozen=True)
class CaptureCommand:
    """Capture residual-stream activations of a JSONL data set into a chunked store."""

    model: str  # an HF directory, a .gguf file, or a known name
    data: Path  # JSONL of {"messages": [...]} (a final assistant turn is the response) or {"text": "..."}
    out: Path  # new store directory (index.json + .npy chunks)
    capture: Annotated[CaptureConfig, tyro.conf.arg(name="")] = CaptureConfig()  # layers, positions, batching
    mesh: Mesh = None  # (data, fsdp, tensor) sizes; default one device

    def __post_init__(self):
        check_mesh(self.mesh)


def run_capture(cfg: CaptureCommand) -> None:
    import models
    from engine.commands.common import on_mesh
    from evals.persona.capture import capture

    examples = _read_examples(cfg.data)
    with on_mesh(cfg.mesh) as mesh:
        store = capture(models.load(cfg.model, mesh=mesh), examples, cfg.out, cfg.capture, {"data": str(cfg.data)})
    print(f"captured {store.rows} rows x {store.d_model} at layers {list(store.layers)} in {store.num_chunks} chunks "
          f"-> {cfg.out}")


@dataclasses.dataclass(frozen=True)
class DirectionCommand:
    """Difference of means (positive - negative) at a layer, plus a logistic probe's held-out accuracy."""

    positive: Path  # store of the positive set (e.g. misaligned answers)
    negative: Path  # store of the negative set (e.g. aligned answers to the same prompts)
    layer: int  # layer to use (must be in both stores)
    out: Path  # direction file (.npz)
    name: str = "direction"  # the direction's name
    probe_steps: int = 300  # probe optimizer steps (0 = no probe)


def run_direction(cfg: DirectionCommand) -> None:
    from evals.persona.directions import ProbeConfig, mean_difference, train_probe
    from evals.persona.store import ActivationStore

    pos, neg = ActivationStore(cfg.positive), ActivationStore(cfg.negative)
    d = mean_difference(pos, neg, cfg.layer, cfg.name)
    if cfg.probe_steps:
        probe = train_probe(pos, neg, cfg.layer, ProbeConfig(steps=cfg.probe_steps))
        d = dataclasses.replace(d, meta={**d.meta, "probe_heldout_accuracy": probe.heldout_accuracy,
                                         "probe_train_accuracy": probe.train_accuracy})
    path = d.save(cfg.out)
    print(json.dumps({"direction": str(path), **{k: v for k, v in d.meta.items() if k != "source"}}))


@dataclasses.dataclass(frozen=True)
class SAECommand:
    """Train a TopK sparse autoencoder on a store; prints held-out FVU and writes sae.npz + sae.json."""

    acts: Path  # activation store
    layer: int  # layer to train on
    out: Path  # output directory
    sae: Annotated[SAEConfig, tyro.conf.arg(name="")] = SAEConfig()  # width, k, steps, batch, lr, AuxK, split, seed
    mesh: Mesh = None  # (data, fsdp, tensor) sizes; latents are split over tensor

    def __post_init__(self):
        check_mesh(self.mesh)


def run_sae(cfg: SAECommand) -> None:
    from engine.commands.common import on_mesh
    from evals.persona.sae import evaluate, train_sae
    from evals.persona.store import ActivationStore

    store = ActivationStore(cfg.acts)
    with on_mesh(cfg.mesh) as mesh:
        sae, hist = train_sae(store, cfg.layer, cfg.sae, mesh=mesh, progress=True)
    sae.save(cfg.out)
    print(json.dumps({"sae": str(cfg.out), "heldout": evaluate(sae, store, cfg.layer), "final": hist[-1]}))


@dataclasses.dataclass(frozen=True)
class DiffCommand:
    """Rank SAE latents (and directions) by their activation change between two stores of the same data."""

    sae: Path  # SAE directory (its layer is used)
    before: Path  # store captured with the earlier checkpoint
    after: Path  # store of the same examples captured with the later checkpoint
    top: int = 20  # latents shown (largest increase first)
    directions: tuple[Path, ...] = ()  # direction files to rank too
    model: str | None = None  # tokenizer source: prints each top latent's top-activating contexts
    out: Path | None = None  # optional JSON with the full ranking


def run_diff(cfg: DiffCommand) -> None:
    from evals.persona.diffing import rank_directions, rank_latents
    from evals.persona.directions import Direction
    from evals.persona.latents import latent_stats, top_examples
    from evals.persona.sae import SAE
    from evals.persona.store import ActivationStore

    s = SAE.load(cfg.sae)
    b, a = ActivationStore(cfg.before), ActivationStore(cfg.after)
    stats = latent_stats(s, b, s.layer), latent_stats(s, a, s.layer, top_n=4)
    ranked = rank_latents(s, b, a, s.layer, stats=stats)
    tok = None
    if cfg.model is not None:
        import models

        tok = models.load(cfg.model).tokenizer
    result = {"latents": [dataclasses.asdict(c) for c in ranked[:cfg.top]],
              "directions": [dataclasses.asdict(c) for c in rank_directions([Direction.load(p) for p in cfg.directions],
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
    if cfg.out is not None:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_text(json.dumps(result, indent=1))


@dataclasses.dataclass(frozen=True)
class SteerCommand:
    """Steer generation along a direction at several coefficients, with a coherence guard.

    Without --prompts-file the prompts are held-out false-claim items, scored by the truthfulness grader (a
    sycophancy direction should move it); with one, the score is the fraction of completions that correct.
    """

    model: str  # an HF directory, a .gguf file, or a known name
    direction: Path  # direction file (.npz) from `persona direction` (or an experiment)
    steer: Annotated[SteerConfig, tyro.conf.arg(name="")] = SteerConfig()  # coefficients, ablation, coherence guard
    prompts_file: Path | None = None  # JSONL of {"messages": [...]} prompts
    n: int = 24  # false-claim items when no prompts file is given
    max_new_tokens: int = 48  # completion length
    out: Path | None = None  # directory for sweep.json and sweep.png
    mesh: Mesh = None  # (data, fsdp, tensor) sizes

    def __post_init__(self):
        check_mesh(self.mesh)


def run_steer(cfg: SteerCommand) -> None:
    import models
    from engine.commands.common import on_mesh
    from evals.persona.behaviour import corrects, false_claim_items, truthfulness_scores
    from evals.persona.directions import Direction
    from evals.persona.steering import guarded_range, sweep
    from rl.sampler import SamplingConfig

    d = Direction.load(cfg.direction)
    if cfg.prompts_file is None:
        items = false_claim_items(cfg.n)
        prompts, score, label = [r["messages"] for r in items], truthfulness_scores, "truthfulness grader"
    else:
        items = [it for it in _read_examples(cfg.prompts_file) if "messages" in it]
        prompts, label = [it["messages"] for it in items], "corrects rate"
        score = lambda texts, _: [float(corrects(t)) for t in texts]
    with on_mesh(cfg.mesh) as mesh:
        policy = models.load(cfg.model, mesh=mesh)
        points = sweep(policy, prompts, d, score, items, cfg.steer,
                       SamplingConfig(temperature=0.0, max_new_tokens=cfg.max_new_tokens))
    for p in points:
        print(f"alpha {p.alpha:+6.2f}  {label} {p.score:.3f}  logprob {p.logprob:.3f}  repetition {p.repetition:.3f}"
              f"  {'coherent' if p.coherent else 'INCOHERENT'}  | {p.texts[0][:80]!r}")
    print(f"coherent range: {guarded_range(points)}")
    if cfg.out is not None:
        from evals.persona.report import plot_sweep

        cfg.out.mkdir(parents=True, exist_ok=True)
        (cfg.out / "sweep.json").write_text(json.dumps([dataclasses.asdict(p) for p in points], indent=1))
        plot_sweep(points, cfg.out / "sweep.png", label, f"steering along '{d.name}' (layer {d.layer})")


@dataclasses.dataclass(frozen=True)
class EMExperimentCommand:
    """Narrow misaligned SFT -> broad misalignment -> persona direction / latents -> re-alignment, with a report."""

    experiment: Annotated[EMExperimentConfig, tyro.conf.arg(name="")] = EMExperimentConfig()  # the stages' sizes
    mesh: Mesh = None  # (data, fsdp, tensor) sizes; default one device

    def __post_init__(self):
        check_mesh(self.mesh)


def run_experiment(cfg: EMExperimentCommand) -> None:
    from engine.commands.common import on_mesh
    from evals.persona.em_experiment import run_em_experiment
    from evals.persona.report import write_report

    with on_mesh(cfg.mesh) as mesh:
        result = run_em_experiment(cfg.experiment, mesh=mesh)
    path = write_report(result, cfg.experiment.out)
    print(f"wrote {path}; onset steps: {result['onset_steps']}")


DATA = Command(DataCommand, run_data)
CAPTURE = Command(CaptureCommand, run_capture)
DIRECTION = Command(DirectionCommand, run_direction)
SAE = Command(SAECommand, run_sae)
DIFF = Command(DiffCommand, run_diff)
STEER = Command(SteerCommand, run_steer)
EXPERIMENT = Command(EMExperimentCommand, run_experiment)
