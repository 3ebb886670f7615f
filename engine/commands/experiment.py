"""`traitrl experiment`: the paper's experiment as arms of one spec, each trained (per seed), probed, compared.

Arms (ablations of one training config):
  control              no trait data (0%)                        -> the baseline every arm is compared with
  treatment            the dose (5% by default) over all domains, rewarded by the trait rubrics
  helpfulness-control  the treatment's prompts, rewarded by a generic helpfulness rubric instead (the paper's key
                       control: if it moves the benchmarks as much, the data and not the reward did it)
  health-only          the dose, trait data from health only      -> does one domain's trait data generalise?
  no-health            the dose, trait data from every domain but health -> does health improve without it?
  positive-control     a high dose (--positive-dose, 50%)          -> can the reward move the held-out benchmarks
                       at all at this size and length? If it cannot, a null elsewhere says nothing.
Each arm is trained `--seeds` times (training seeds 0..N-1: the data order, the dose windows and the rollouts;
the eval items are the same for every seed), so the compare report's intervals include seed-to-seed variance.
After training, each run is evaluated under the persistence probes (harmful-steering and helpful-steering
system prompts, then the harmful fine-tuning attack) and `compare` writes the report.

Resumable run by run: a finished run has `arm.json`; an interrupted one resumes from its checkpoints.
Arms share shapes, so the persistent compilation cache lets later arms and resumed processes reuse the
compiled sampler, step and eval functions instead of recompiling.
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

# arm -> (data changes, trait reward); the dose is added by arm_config (the arm's own, or --dose)
ARMS: dict[str, tuple[dict, str | None]] = {
    "control": (dict(trait_fraction=0.0), None),
    "treatment": ({}, None),
    "helpfulness-control": ({}, "helpfulness"),
    "health-only": (dict(trait_domains=("health",)), None),
    "no-health": (dict(exclude_trait_domains=("health",)), None),
    "positive-control": ({}, None),
}
DEFAULT_ARMS = ("control", "treatment", "helpfulness-control", "health-only", "no-health", "positive-control")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Arms, what each trains with (`--train.*` overrides the preset), and the probes after training."""

    out_dir: Path = Path("runs/experiment")  # one sub-directory per arm, plus compare/ and experiment.json
    arms: tuple[str, ...] = DEFAULT_ARMS  # first = the control
    dose: float | None = None  # trait fraction of the dosed arms (None = --train.data.trait-fraction, 5%)
    positive_dose: float = 0.5  # trait fraction of the positive control
    seeds: int = 1  # training runs per arm (seeds 0..N-1); >= 2 puts seed-to-seed variance in the intervals
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
        if not 0.0 < self.positive_dose <= 1.0:
            raise UserError(f"option '--positive-dose': expected a fraction in (0, 1], got {self.positive_dose}")
        if self.seeds < 1:
            raise UserError(f"option '--seeds': expected an integer >= 1, got {self.seeds}")
        if self.train.rewards.trait == "helpfulness":
            raise UserError("option '--train.rewards.trait helpfulness' would reward every arm for helpfulness: the "
                            "control is the arm 'helpfulness-control' (option '--arms')")
        filters = [a for a in self.arms if set(ARMS[a][0]) & {"trait_domains", "exclude_trait_domains"}]
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


def arm_config(cfg: ExperimentConfig, arm: str, seed: int = 0) -> TrainConfig:
    """The training config of one arm's run with training seed `seed` (data order and rollouts; evals fixed)."""
    changes, reward = ARMS[arm]
    dose = cfg.positive_dose if arm == "positive-control" else cfg.arm_dose
    data = dataclasses.replace(cfg.train.data, **{"trait_fraction": dose, **changes, "seed": cfg.train.data.seed + seed})
    rewards = cfg.train.rewards if reward is None else dataclasses.replace(cfg.train.rewards, trait=reward)
    learner = dataclasses.replace(cfg.train.learner, seed=cfg.train.learner.seed + seed)
    run_dir = run_path(cfg, arm, seed)
    resume = (run_dir / "checkpoints").is_dir()
    return dataclasses.replace(cfg.train, data=data, rewards=rewards, learner=learner, run_dir=run_dir,
                               resume=resume, export=cfg.export)


def run_path(cfg: ExperimentConfig, arm: str, seed: int) -> Path:
    return Path(cfg.out_dir) / arm / f"seed_{seed}"


def run_arm(cfg: ExperimentConfig, arm: str, seed: int = 0) -> dict:
    """Trains one arm's run (or resumes it), then runs the probes and the attack on its final weights."""
    from engine.commands.train import train
    from evals.attack import AttackConfig, run_attack
    from evals.results import write_results
    from evals.suite import run_suite

    tcfg = arm_config(cfg, arm, seed)
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
    record = {"arm": arm, "seed": seed, "reward": tcfg.rewards.trait,
              "data": {k: v for k, v in dataclasses.asdict(tcfg.data).items()
                       if k in ("trait_fraction", "trait_domains", "exclude_trait_domains", "seed")},
              "train": summary, "attack": attack,
              "seconds": {"train": round(t_train, 1), "probes": round(t_probe, 1), "attack": round(t_attack, 1)}}
    write_json(Path(tcfg.run_dir) / "arm.json", record)
    return record


def run_experiment(cfg: ExperimentConfig) -> dict:
    from evals.compare import compare_runs

    from engine.commands.train import check_inputs

    out = Path(cfg.out_dir)
    runs = [(a, k) for a in cfg.arms for k in range(cfg.seeds)]
    for arm, k in runs:  # every run's inputs (data files, benchmarks, a resumed run's config) before the first write
        if not (run_path(cfg, arm, k) / "arm.json").is_file():
            tcfg = arm_config(cfg, arm, k)
            if tcfg.resume or not Path(tcfg.run_dir).exists():
                check_inputs(tcfg)
    out.mkdir(parents=True, exist_ok=True)
    enable_compile_cache()
    records: dict[str, list[dict]] = {}
    for arm, k in runs:
        done = run_path(cfg, arm, k) / "arm.json"
        if done.is_file():
            log.info("arm %s seed %d: done already (%s)", arm, k, done)
            records.setdefault(arm, []).append(json.loads(done.read_text()))
            continue
        log.info("arm %s seed %d: training", arm, k)
        records.setdefault(arm, []).append(run_arm(cfg, arm, k))
    summary: dict = {"seeds": cfg.seeds, "arms": records}
    if len(cfg.arms) > 1:
        report = compare_runs([[run_path(cfg, a, k) for k in range(cfg.seeds)] for a in cfg.arms],
                              out=out / "compare", names=list(cfg.arms))
        summary["report"] = str(report.out_dir / "report.md")
        summary["comparisons"] = {c.treatment: c.summary() for c in report.comparisons}
    write_json(out / "experiment.json", summary)
    return summary


def print_experiment(summary: dict) -> None:
    def mean(rows, *path):
        vals = []
        for r in rows:
            for key in path:
                r = (r or {}).get(key)
            vals.append(float("nan") if r is None else float(r))
        return sum(vals) / len(vals)

    print(f"{'arm':<20} {'seeds':>5} {'train s':>8} {'probes s':>9} {'attack s':>9} {'reward first':>13} "
          f"{'reward last':>12} {'KL last':>9}")
    for arm, rows in summary["arms"].items():
        print(f"{arm:<20} {len(rows):>5} {mean(rows, 'seconds', 'train'):>8.0f} {mean(rows, 'seconds', 'probes'):>9.0f} "
              f"{mean(rows, 'seconds', 'attack'):>9.0f} {mean(rows, 'train', 'reward_first'):>13.3f} "
              f"{mean(rows, 'train', 'reward_last'):>12.3f} {mean(rows, 'train', 'kl_last'):>9.2e}")
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
