"""benchmarks/device.py --dry-run: the device benchmark's whole code path on CPU, so it works before a GPU sees it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_device_benchmark_dry_run_completes_without_errors(tmp_path):
    out = tmp_path / "device.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as on an accelerator host
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "device.py"), "--dry-run",
                           "--steps", "2", "--json-out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == json.loads(out.read_text())
    assert res["errors"] == {}, res["errors"]
    assert res["plan"]["micro_batches"] >= 1 and res["plan"]["remat"] in ("none", "block", "full")
    parity = res["parity"]["random_init"]
    assert parity["device_fp32_auto"]["max_rel_to_scale"] < 1e-5  # CPU against CPU: the same numerics
    assert parity["device_bf16_auto"]["argmax_agree"] > 0.9
    step = res["grpo_step"]
    assert step["timed_steps"] == 2 and step["recompiles_after_first_step"] == 0
    for key in ("rollout_s", "reference_s", "update_s", "update_mfu_bf16", "reference_mfu_bf16"):
        assert step[key] > 0
    assert set(res["compile"]) == {"loop", "scan"}
    assert "device benchmark" in proc.stdout  # the table
