"""Fail-safe pieces of the runtime floor, in process: the skipped non-finite update, the finite checks before a
checkpoint or an export, resume past each kind of checkpoint damage, logs truncated to one row per step, and the
resumed-config comparison."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.checkpoint import CheckpointConfig, Checkpointer, fault
from engine.commands.common import check_resume_config
from engine.errors import UserError
from engine.metrics import MetricsWriter
from engine.train_state import OptimConfig, TrainState, apply_gradients, jit_step, nonfinite_paths


def _state(optim: OptimConfig, seed: int = 0) -> TrainState:
    # w large enough (32 KiB) to be stored out of line, in a data file of its own that damage can cut
    params = {"w": jax.random.normal(jax.random.key(seed), (128, 64)), "b": jnp.arange(64.0)}
    return TrainState(jnp.zeros((), jnp.int32), params, optim.optimizer().init(params),
                      jax.random.key_data(jax.random.key(seed)))


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# ---- the step: a non-finite loss or gradient norm changes nothing ---------------------------------------------


@pytest.mark.parametrize("poison", ["grad", "loss", "inf-grad"])
def test_non_finite_update_is_skipped_inside_jit(poison):
    optim = OptimConfig(learning_rate=0.1, warmup_steps=0, total_steps=10)
    tx = optim.optimizer()

    def step(state, grads, loss):
        return apply_gradients(tx, state, grads, {"loss": loss})

    fn = jit_step(step, None)  # donated state, as the trainers build it
    before = _state(optim)
    kept = jax.tree.map(jnp.copy, before)  # `before` is donated by the first call
    grads = jax.tree.map(jnp.ones_like, before.params)
    good_state, good = fn(before, grads, jnp.float32(1.0))
    assert float(good["train/skipped"]) == 0.0 and not _same(good_state.params, kept.params)

    bad_grads = grads
    loss = jnp.float32(1.0)
    if poison == "grad":
        bad_grads = {**grads, "w": grads["w"].at[1, 2].set(jnp.nan)}
    elif poison == "inf-grad":
        bad_grads = {**grads, "b": grads["b"].at[0].set(jnp.inf)}
    else:
        loss = jnp.float32(jnp.nan)
    snapshot = jax.tree.map(jnp.copy, good_state)
    skipped_state, m = fn(good_state, bad_grads, loss)
    assert float(m["train/skipped"]) == 1.0
    assert int(skipped_state.step) == int(snapshot.step) + 1  # the batch is counted (data and seeds move on)
    assert _same(skipped_state.params, snapshot.params)  # bitwise unchanged
    assert _same(skipped_state.opt_state, snapshot.opt_state)  # moments and schedule count unchanged
    assert not nonfinite_paths(skipped_state)


def test_nonfinite_paths_names_the_tensor():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, jnp.inf])}, "n": jnp.arange(3)}
    assert nonfinite_paths(tree) == ["['b']['c']"]
    assert nonfinite_paths({"a": jnp.ones(2)}) == []


def test_export_refuses_non_finite_parameters(tiny_policy):
    import dataclasses

    from flax import nnx

    from engine.commands.train import check_finite_params

    check_finite_params(tiny_policy, "export x")  # finite: fine
    graphdef, params = nnx.split(tiny_policy.model, nnx.Param)
    poisoned = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan) if x.ndim else x, params)
    bad = dataclasses.replace(tiny_policy, model=nnx.merge(graphdef, poisoned))
    with pytest.raises(UserError, match="export x: refusing to write non-finite parameters"):
        check_finite_params(bad, "export x")


# ---- checkpoints: refuse NaN on save, fall back past damage on restore -----------------------------------------


@pytest.fixture
def saved(tmp_path):
    """Checkpoints 1, 2, 3 of a small train state (synchronous saves), and the states saved."""
    optim = OptimConfig(learning_rate=0.1, warmup_steps=0, total_steps=10)
    ckpt = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(save_every=1, keep=3, async_save=False))
    states = {}
    for s in (1, 2, 3):
        st = _state(optim, seed=s)
        st = TrainState(jnp.int32(s), st.params, st.opt_state, st.rng)
        assert ckpt.save(s, st, {"step": s, "data": {"next_index": 4 * s}})
        states[s] = st
    ckpt.close()
    return tmp_path / "checkpoints", states, _state(optim)


def damage(step_dir, mode: str) -> None:
    """The three kinds of damage of issue 16: a truncated file under state/, a deleted state/_METADATA, an emptied
    extra/metadata."""
    if mode == "truncated":
        files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
        os.truncate(max(files, key=lambda p: p.stat().st_size), 100)  # the largest: a data file
    elif mode == "no-metadata":
        (step_dir / "state" / "_METADATA").unlink()
    elif mode == "empty-extra":
        (step_dir / "extra" / "metadata").write_text("")
    else:
        raise ValueError(mode)


@pytest.mark.parametrize("mode", ["truncated", "no-metadata", "empty-extra"])
def test_restore_falls_back_past_a_damaged_checkpoint(saved, mode, caplog):
    directory, states, template = saved
    damage(directory / "3", mode)
    ckpt = Checkpointer(directory, CheckpointConfig(keep=3))
    with caplog.at_level(logging.WARNING, logger="engine.checkpoint"):
        state, extra, step = ckpt.restore(template)
    assert step == 2 and extra["data"] == {"next_index": 8}
    # Orbax's other reads of the damaged step fail in asyncio tasks nobody awaits; restore collects them itself.
    # Left to a later garbage collection they log a page of TensorStore spec from whatever code allocates next
    # (in CPython 3.11, from inside an `ast.parse`, which then fails with "AST constructor recursion depth mismatch")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]
    assert _same(state, states[2])
    lines = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
    assert len(lines) == 1 and "resuming from checkpoint 2" in lines[0] and "\n" not in lines[0]
    # the damaged step is kept aside, out of Orbax's way: the run can save step 3 again
    assert (directory.parent / "checkpoints.damaged" / "3").is_dir() and ckpt.all_steps() == [1, 2]
    assert ckpt.save(3, states[3], {"step": 3}, force=True)
    ckpt.close()


def test_restore_with_nothing_restorable_is_one_line(saved):
    directory, _, template = saved
    for s, mode in ((3, "truncated"), (2, "no-metadata"), (1, "empty-extra")):
        damage(directory / str(s), mode)
    ckpt = Checkpointer(directory, read_only=True)
    with pytest.raises(UserError) as e:
        ckpt.restore(template)
    msg = str(e.value)
    assert "no checkpoint restores" in msg and "3: " in msg and "1: " in msg and "\n" not in msg
    with pytest.raises(UserError, match="checkpoint 2 in .* does not restore"):
        ckpt.restore(template, step=2)  # an explicit step does not fall back
    assert sorted(p.name for p in directory.iterdir()) == ["1", "2", "3"]  # nothing moved when nothing restores
    ckpt.close()


def test_save_refuses_non_finite_state(tmp_path):
    optim = OptimConfig(learning_rate=0.1, warmup_steps=0, total_steps=10)
    st = _state(optim)
    st = TrainState(st.step, {**st.params, "b": st.params["b"].at[1].set(jnp.nan)}, st.opt_state, st.rng)
    ckpt = Checkpointer(tmp_path / "c", CheckpointConfig(save_every=1, async_save=False))
    with pytest.raises(UserError, match=r"checkpoint 1: refusing to save non-finite values .*\['b'\]"):
        ckpt.save(1, st, {"step": 1})
    assert ckpt.all_steps() == []
    ckpt.close()


def test_fault_points(monkeypatch):
    monkeypatch.setenv("TRAITRL_FAULTS", "kill-step@3, nan-loss@2")
    assert fault("kill-step", 3) and fault("nan-loss", 2) and not fault("kill-step", 2) and not fault("kill-eval", 3)
    monkeypatch.delenv("TRAITRL_FAULTS")
    monkeypatch.setenv("TRAITRL_KILL_IN_SAVE", "4")  # the older spelling
    assert fault("kill-save", 4) and not fault("kill-save", 3)


# ---- logs: one row per step --------------------------------------------------------------------------------------


def test_truncate_keeps_one_row_per_step_and_drops_a_torn_row(tmp_path):
    w = MetricsWriter(tmp_path)
    for s in range(4):
        w.write(s, {"loss": float(s)})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')  # a kill in the middle of a write
    (tmp_path / "evals.jsonl").write_text("".join(json.dumps({"step": s, "score": 0.5}) + "\n" for s in (0, 2)))
    w.truncate(1)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert [json.loads(x)["step"] for x in (tmp_path / "evals.jsonl").read_text().splitlines()] == [0]
    w.truncate(-1)  # a restart with no checkpoint: nothing of the killed attempt stays
    assert (tmp_path / "metrics.jsonl").read_text() == "" and (tmp_path / "evals.jsonl").read_text() == ""


# ---- --resume keeps the run's config -----------------------------------------------------------------------------


def _cfg(**over):
    from engine.commands.main import parse
    from engine.commands.train import PRESETS, TrainConfig
    from engine.commands.common import unset_derived

    args = [x for k, v in over.items() for x in (f"--{k}", str(v))]
    return parse(TrainConfig, unset_derived(PRESETS["tiny"]), args, "traitrl train")


def _saved_run(tmp_path, cfg) -> None:
    from engine.commands.train import config_dict

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config_dict(cfg)))


@pytest.mark.parametrize("over, field", [
    ({"grpo.beta": 0.1}, "--grpo.beta"),
    ({"optim.learning-rate": 2e-3}, "--optim.learning-rate"),
    ({"model": "smollm2-135m-instruct"}, "--model"),
    ({"optim.total-steps": 50}, "--optim.total-steps"),  # explicit now, derived (6) in the run
])
def test_resume_with_another_config_names_the_field(tmp_path, over, field):
    from engine.commands.train import RESUME_MAY_DIFFER, config_dict

    _saved_run(tmp_path, _cfg())
    cfg = _cfg(**over)
    with pytest.raises(UserError) as e:
        check_resume_config(tmp_path, config_dict(cfg), cfg.derived, "learner.steps", RESUME_MAY_DIFFER)
    assert f"'{field}'" in str(e.value) and "\n" not in str(e.value)


def test_resume_allows_more_steps_and_what_cannot_change_results(tmp_path, caplog):
    from engine.commands.train import RESUME_MAY_DIFFER, config_dict

    _saved_run(tmp_path, _cfg())
    for over in ({}, {"run-dir": "/elsewhere"}, {"optim.total-steps": 6}):  # 6 = what the run derived
        cfg = _cfg(**over)
        check_resume_config(tmp_path, config_dict(cfg), cfg.derived, "learner.steps", RESUME_MAY_DIFFER)
    longer = _cfg(**{"learner.steps": 10})  # the schedule, warmup and cadences derived from it follow
    assert longer.optim.total_steps == 10
    with caplog.at_level(logging.INFO, logger="traitrl"):
        check_resume_config(tmp_path, config_dict(longer), longer.derived, "learner.steps", RESUME_MAY_DIFFER)
    assert any("extending the run from 6 to 10 steps" in r.getMessage() for r in caplog.records)
    shorter = _cfg(**{"learner.steps": 3})
    with pytest.raises(UserError, match="'--learner.steps': 3 is fewer than the 6 steps"):
        check_resume_config(tmp_path, config_dict(shorter), shorter.derived, "learner.steps", RESUME_MAY_DIFFER)


def test_sft_stops_after_too_many_non_finite_steps(tiny_policy, monkeypatch, tmp_path):
    """SFT shares the step: a NaN loss is skipped and counted, and more than K in a row stop with the step."""
    import dataclasses

    from flax import nnx

    from rl.sft import SFTConfig, SFTTrainer

    graphdef, params = nnx.split(tiny_policy.model, nnx.Param)  # a private copy: the trainer updates in place
    policy = dataclasses.replace(tiny_policy, model=nnx.merge(graphdef, jax.tree.map(jnp.copy, params)))
    chats = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
             for i in range(4)]
    cfg = SFTConfig(steps=3, batch_size=2, max_prompt_len=16, max_response_len=8, progress=False,
                    max_consecutive_skips=1)
    monkeypatch.setenv("TRAITRL_FAULTS", "nan-loss@2,nan-loss@3")
    writer = MetricsWriter(tmp_path)
    with pytest.raises(UserError, match=r"^step 3: 2 steps in a row had a non-finite loss"):
        SFTTrainer(policy, cfg, writer=writer).run(chats)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/skipped_steps"] for r in rows] == [0.0, 1.0, 2.0]  # the stopping step's row is logged
    assert np.isfinite(rows[0]["loss"]) and np.isnan(rows[1]["loss"]) and np.isnan(rows[2]["loss"])
    shutil.rmtree(tmp_path)
