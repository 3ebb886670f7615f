"""`traitrl experiment`: the arms' configs, and a tiny experiment end to end (seeds, the helpfulness control)."""

import json

import pytest

from engine.commands.experiment import DEFAULT_ARMS, ExperimentConfig, arm_config
from engine.commands.main import main
from engine.commands.train import PRESETS
from engine.errors import UserError


def test_each_arm_changes_only_what_it_names(tmp_path):
    cfg = ExperimentConfig(out_dir=tmp_path, train=PRESETS["tiny"], seeds=3)
    got = {a: arm_config(cfg, a, 2) for a in DEFAULT_ARMS}
    assert got["control"].data.dose == 0.0
    assert {got[a].data.dose for a in ("treatment", "helpfulness-control", "health-only", "no-health")} == {0.05}
    assert got["positive-control"].data.dose == 0.5
    assert got["helpfulness-control"].rewards.trait == "helpfulness"
    assert {got[a].rewards.trait for a in DEFAULT_ARMS if a != "helpfulness-control"} == {"programmatic"}
    assert got["health-only"].data.trait_domains == ("health",)
    assert got["no-health"].data.exclude_trait_domains == ("health",)
    base = PRESETS["tiny"]
    for a, t in got.items():  # seed 2: the data order and the rollouts move, the eval items do not
        assert t.data.seed == base.data.seed + 2 and t.learner.seed == base.learner.seed + 2
        assert t.evals.seed == base.evals.seed and t.run_dir == tmp_path / a / "seed_2"
    with pytest.raises(UserError, match="--seeds"):
        ExperimentConfig(train=PRESETS["tiny"], seeds=0)
    with pytest.raises(UserError, match="--positive-dose"):
        ExperimentConfig(train=PRESETS["tiny"], positive_dose=0.0)


def test_tiny_experiment_with_seeds_and_the_helpfulness_control(tmp_path):
    out = tmp_path / "exp"
    main(["experiment", "--preset", "tiny", "--out-dir", str(out), "--arms", "control", "helpfulness-control",
          "--seeds", "2", "--train.learner.steps", "1", "--probe-limit", "2", "--attack-steps", "0",
          "--probe-conditions", "plain", "--train.learner.no-progress"])
    for arm, reward in (("control", "programmatic"), ("helpfulness-control", "helpfulness")):
        for k in range(2):
            rec = json.loads((out / arm / f"seed_{k}" / "arm.json").read_text())
            assert rec["reward"] == reward and rec["seed"] == k and rec["train"]["steps_run"] == 1
    summary = json.loads((out / "experiment.json").read_text())
    assert summary["seeds"] == 2 and set(summary["comparisons"]) == {"helpfulness-control"}
    report = (out / "compare" / "report.md").read_text()
    assert "## helpfulness-control vs control" in report and "| 2/2 |" in report
