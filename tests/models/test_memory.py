"""The memory plan against XLA's own `memory_analysis()` of the compiled programs, the chooser, the presets."""

import dataclasses
import os
import sys

import pytest

from engine.errors import UserError
from engine.sharding import make_mesh
from models import memory
from models.config import ModelConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from benchmarks.memory_plan import CANON, CHECKS, xla_memory  # noqa: E402

# A spread of the benchmark's checks (all of them run in `python benchmarks/memory_plan.py --check`): the loop
# layout without remat, scanned remat block / full with micro-batches, bf16 compute, and both mesh shapes.
SUBSET = ["remat none, loop", "remat full (scan), 4 micro-batches", "bf16 compute, remat block",
          "mesh (2, 2, 2), remat full", "mesh (1, 8, 1) fsdp, bf16, remat block"]


@pytest.mark.parametrize("name", SUBSET)
def test_plan_within_25_percent_of_xla_memory_analysis(name):
    _, change, work, M, mesh_shape = next(c for c in CHECKS if c[0] == name)
    cfg = dataclasses.replace(CANON, **change)
    mesh = None if mesh_shape == (1, 1, 1) else make_mesh(*mesh_shape)
    xla = xla_memory(cfg, work, M, mesh)
    plan = memory.plan(cfg, work, mesh_shape, M, cfg.remat, memory.Device(64 * memory.GiB, "cpu"))
    for phase, sizes in xla.items():
        est = plan.programs[phase]["total"]
        assert abs(est / sizes["total"] - 1) <= 0.25, (phase, est, sizes)


def test_presets_fit_with_what_they_chose():
    plans = dict(memory.preset_plans())
    gpu80, gpu141, tpu = plans["gpu-1b on 80 GB"], plans["gpu-1b on 141 GB"], plans["tpu-v5e-8 on 16 GiB chips"]
    for p in (gpu80, gpu141, tpu):
        assert p.fits, p.summary()
        assert p.peak <= p.device.budget
    assert gpu80.attention == "cudnn" and tpu.attention in ("splash", "chunked")
    assert gpu80.micro_batches > 1  # one micro-batch of 128 x 1024 tokens is hundreds of GB
    assert gpu141.micro_batches <= gpu80.micro_batches  # more memory never needs more micro-batches
    assert tpu.micro_batches > 1 and (64 * 8 // tpu.micro_batches) % 8 == 0  # rows still split over 8 chips
    # The plan without micro-batches or remat is what stopped the presets at their first update.
    naive = memory.plan(gpu80.cfg, gpu80.work, (1, 1, 1), 1, "none", gpu80.device)
    assert not naive.fits and naive.peak_phase == "update"


def test_chooser_prefers_no_remat_and_one_micro_batch_when_memory_is_plenty():
    cfg = dataclasses.replace(CANON, remat="none")
    p = memory.choose(cfg, memory.Workload(4, 4, 64, 64), (1, 1, 1), memory.Device(64 * memory.GiB, "cpu"))
    assert (p.micro_batches, p.remat) == (1, "none")


def test_chooser_walks_micro_batches_then_remat():
    cfg = ModelConfig.from_hf(memory.SMOLLM2_1_7B, dtype="bfloat16")
    work = memory.Workload(16, 8, 512, 512)
    tight = memory.choose(cfg, work, (1, 1, 1), memory.Device(48 * 10**9, "gpu", 0.92))
    assert tight.fits and (tight.remat != "none" or tight.micro_batches >= 16)
    fixed = memory.choose(cfg, work, (1, 1, 1), memory.H100, micro_batches=4)  # a fixed M narrows the search
    assert fixed.micro_batches == 4 and fixed.fits


def test_nothing_fits_says_what_to_change_in_one_line():
    cfg = ModelConfig.from_hf(memory.SMOLLM2_1_7B, dtype="bfloat16")
    with pytest.raises(UserError, match=r"memory plan: nothing fits .* shard the parameters") as e:
        memory.choose(cfg, memory.Workload(16, 8, 512, 512), (1, 1, 1), memory.Device(8 * 10**9, "gpu"))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="micro_batches=3 must divide"):
        memory.choose(cfg, memory.Workload(16, 8, 512, 512), (1, 1, 1), memory.H200, micro_batches=3)


def test_micro_batch_options_keep_the_mesh_split():
    assert memory.micro_batch_options(memory.Workload(16, 8, 64, 64), (1, 8, 1)) == [1, 2, 4, 8, 16]
    assert memory.micro_batch_options(memory.Workload(2, 4, 64, 64), (1, 1, 1)) == [1, 2, 4, 8]


def test_parameter_count_per_device():
    cfg = ModelConfig.from_hf(memory.QWEN2_5_1_5B)
    assert memory.param_elements(cfg) == cfg.num_params()
    per_chip = memory.param_elements(cfg, (1, 8, 1))
    assert cfg.num_params() / 8 <= per_chip < cfg.num_params() / 8 * 1.01  # only the norms stay replicated
    assert memory.param_elements(cfg, (1, 8, 1), gather_fsdp=True) == cfg.num_params()


def test_gpu_memory_fraction_sets_the_environment(monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    memory.set_gpu_memory_fraction(0.9)
    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.90"
    with pytest.raises(UserError):
        memory.set_gpu_memory_fraction(1.5)
