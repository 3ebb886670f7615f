"""`traitrl experiment`: the paper's experiment as arms of one spec, each trained, probed, then compared.

Arms (data ablations of one training config):
  control      no trait data (0%)                       -> the baseline every arm is compared with
  treatment    the dose (5% by default) over all domains
  health-only  the dose, trait data from health only     -> does one domain's trait data generalise?
  no-health    the dose, trait data from every domain but health -> does health improve without it?
After training, each arm is evaluated under the persistence probes (harmful-steering and
helpful-steering system prompts, then the harmful fine-tuning attack) and `compare` writes the report.

Resumable arm by arm: a finished arm has `arm.json`; an interrupted one resumes from its checkpoints.
Arms share shapes, so the persistent compilation cache (out_dir/jax_cache) lets later arms and
resumed processes reuse the compiled sampler, step and eval functions instead of recompiling.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from engine.commands.common import check_finite, enable_compile_cache, unset_derived, write_json
from engine.commands.main import Command
from engine.commands.train import PRESETS, TrainConfig
from engine.errors import UserError

log = logging.getLogger(__name__)

ARMS = {
    "control": dict(trait_fraction=0.0),
    "treatment": dict(),
    "health-only": dict(trait_domains=("health",)),
    "no-health": dict(exclude_trait_domains=("health",)),
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Arms, what each trains with (`--train.*` overrides the preset), and the probes after training."""

    out_dir: Path = Path("runs/experiment")  # one sub-directory per arm, plus compare/ and experiment.json
    arms: tuple[str, ...] = ("control", "treatment", "health-only", "no-health")  # first = the control
    dose: float | None = None  # trait fraction of every arm but control (None = --train.data.trait-fraction, 5%)
    train: TrainConfig = PRESETS["default"]  # the training config every arm starts from (--preset picks it)
    probe_benchmarks: tuple[str, ...] = ()  # benchmarks of the final probes (empty = the in-loop set)
    probe_limit: int = 16  # items per benchmark in the final probes
    probe_conditions: tuple[str, ...] = ("plain", "harmful-steering", "helpful-steering")  # final eval conditions
    attack_steps: int = 8  # harmful fine-tuning SFT steps after the probes (0 = no attack)
    attack_lr: float = 1e-5  # the attack's learning rate
    export: bool = False  # also write each arm's HF directory (the checkpoints hold the weights either way)

    def __post_init__(self):
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms or len(set(self.arms)) != len(self.arms):
            raise UserError(f"arms: expected distinct names from {', '.join(ARMS)}, got {self.arms}")
        if self.dose is not None and "data.trait_fraction" not in self.train.derived:
            raise UserError(f"options '--dose' ({self.dose}) and '--train.data.trait-fraction' "
                            f"({self.train.data.trait_fraction}) both set the dose: give one of them")
        if not 0.0 < self.arm_dose <= 1.0:
            raise UserError(f"option '--dose': expected a fraction in (0, 1], got {self.arm_dose}")
        filters = [a for a in self.arms if set(ARMS[a]) & {"trait_domains", "exclude_trait_domains"}]
        for name in ("trait_domains", "exclude_trait_domains"):
            if getattr(self.train.data, name) and filters:
                raise UserError(f"option '--train.data.{name.replace('_', '-')}' would be replaced by the domain "
                                f"filter of arm {filters[0]!r} (option '--arms'): drop one of them")
        if self.train.resume:
            raise UserError("option '--train.resume': the experiment resumes arm by arm on its own; drop it")
        if self.probe_limit < 1 or self.attack_steps < 0:
            raise UserError("probe_limit must be >= 1 and attack_steps >= 0")
        check_finite(self)
        if self.attack_lr <= 0:
            raise UserError(f"option '--attack-lr': expected a learning rate > 0, got {self.attack_lr}")


    @property
    def arm_dose(self) -> float:
        """The dose of every arm but control: --dose, else the training config's trait fraction."""
        return self.train.data.dose if self.dose is None else self.dose


def arm_config(cfg: ExperimentConfig, arm: str) -> TrainConfig:
    changes = {"trait_fraction": cfg.arm_dose, **ARMS[arm]}
    run_dir = Path(cfg.out_dir) / arm
    resume = (run_dir / "checkpoints").is_dir()
    return dataclasses.replace(cfg.train, data=dataclasses.replace(cfg.train.data, **changes), run_dir=run_dir,
                               resume=resume, export=cfg.export)


def run_arm(cfg: ExperimentConfig, arm: str) -> dict:
    """Trains one arm (or resumes it), then runs the probes and the attack on its final weights."""
    from engine.commands.train import train
    from evals.attack import AttackConfig, run_attack
    from evals.results import write_results
    from evals.suite import run_suite

    tcfg = arm_config(cfg, arm)
    if not tcfg.resume and Path(tcfg.run_dir).exists():  # killed before its first checkpoint: start it over
        shutil.rmtree(tcfg.run_dir)
    t0 = time.perf_counter()
    summary, policy = train(tcfg)
    t_train = time.perf_counter() - t0
    step = tcfg.learner.steps
    benchmarks = list(cfg.probe_benchmarks) or list(tcfg.evals.benchmarks)
    results = run_suite(policy, benchmarks, limit=cfg.probe_limit, conditions=cfg.probe_conditions,
                        max_new_tokens=tcfg.evals.max_new_tokens, seed=tcfg.evals.seed)
    write_results(tcfg.run_dir, step, results)
    t_probe = time.perf_counter() - t0 - t_train
    attack = None
    if cfg.attack_steps:
        res = run_attack(policy, tcfg.run_dir, AttackConfig(steps=cfg.attack_steps, learning_rate=cfg.attack_lr),
                         benchmarks=benchmarks, limit=cfg.probe_limit, max_new_tokens=tcfg.evals.max_new_tokens)
        attack = {"loss_first": res.losses[0], "loss_last": res.losses[-1]}
    t_attack = time.perf_counter() - t0 - t_train - t_probe
    record = {"arm": arm, "data": {k: v for k, v in dataclasses.asdict(tcfg.data).items()
                                   if k in ("trait_fraction", "trait_domains", "exclude_trait_domains")},
              "train": summary, "attack": attack,
              "seconds": {"train": round(t_train, 1), "probes": round(t_probe, 1), "attack": round(t_attack, 1)}}
    write_json(Path(tcfg.run_dir) / "arm.json", record)
    return record


def run_experiment(cfg: ExperimentConfig) -> dict:
    from evals.compare import compare_runs

    from engine.commands.train import check_inputs

    out = Path(cfg.out_dir)
    todo = [a for a in cfg.arms if not (out / a / "arm.json").is_file()]
    for arm in todo:  # every arm's inputs (data files, benchmarks, a resumed arm's config) before the first write
        tcfg = arm_config(cfg, arm)
        if tcfg.resume or not Path(tcfg.run_dir).exists():
            check_inputs(tcfg)
    out.mkdir(parents=True, exist_ok=True)
    enable_compile_cache()
    records = {}
    for arm in cfg.arms:
        done = out / arm / "arm.json"
        if done.is_file():
            log.info("arm %s: done already (%s)", arm, done)
            records[arm] = json.loads(done.read_text())
            continue
        log.info("arm %s: training", arm)
        records[arm] = run_arm(cfg, arm)
    summary: dict = {"arms": records}
    if len(cfg.arms) > 1:
        report = compare_runs([out / a for a in cfg.arms], out=out / "compare")
        summary["report"] = str(report.out_dir / "report.md")
        summary["comparisons"] = {c.treatment: c.summary() for c in report.comparisons}
    write_json(out / "experiment.json", summary)
    return summary


def print_experiment(summary: dict) -> None:
    rows = [(arm, r["seconds"]["train"], r["seconds"]["probes"], r["seconds"]["attack"],
             r["train"].get("reward_first", float("nan")), r["train"].get("reward_last", float("nan")))
            for arm, r in summary["arms"].items()]
    print(f"{'arm':<12} {'train s':>8} {'probes s':>9} {'attack s':>9} {'reward first':>13} {'reward last':>12}")
    for arm, t, p, a, r0, r1 in rows:
        print(f"{arm:<12} {t:>8.0f} {p:>9.0f} {a:>9.0f} {r0:>13.3f} {r1:>12.3f}")
    for arm, s in summary.get("comparisons", {}).items():
        print(f"{arm} vs control: improved on {s['improved']} of {s['n']} (significant: {s['significant']}, "
              f"Holm: {s['holm']}); worse on {s['worse']} (significant: {s['significant_worse']})")
    if "report" in summary:
        print(f"report: {summary['report']}")


def run(cfg: ExperimentConfig) -> None:
    print_experiment(run_experiment(cfg))


def _spec(train: TrainConfig) -> ExperimentConfig:
    """The experiment's defaults on a training preset (its derived fields unset, so the arms' flags re-derive them)."""
    spec = ExperimentConfig()
    object.__setattr__(spec, "train", unset_derived(train))
    return spec


COMMAND = Command(ExperimentConfig, run, PRESETS, _spec)
