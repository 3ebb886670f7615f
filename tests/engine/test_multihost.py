"""A real multi-process run: two OS processes on 127.0.0.1 with 2 CPU devices each and a local coordinator run 2 GRPO
steps on a global (data 2, fsdp 2) mesh, and end with the same parameters as one process with 4 devices."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("multihost_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    coord = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "multi.npz"), str(i), "2", coord, "2"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    single = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "single.npz"), "0", "1", "-", "4"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, o in zip(procs, outs, strict=True):
        assert p.returncode == 0, o[-3000:]
        assert "devices 4 done" in o and "process" in o
    assert single.returncode == 0, single.stderr[-3000:]
    assert "process 0/1 devices 4 done" in single.stdout
    assert "process 1/2 devices 4 done" in outs[1]
    multi, one = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
    assert multi.files == one.files and len(multi.files) > 5
    np.testing.assert_allclose(multi["rewards"], one["rewards"], rtol=0, atol=1e-6)
    assert float(one["moved"]) > 1e-3  # the 2 steps really changed the parameters
    diff = max(float(np.abs(multi[k] - one[k]).max()) for k in multi.files)
    print(f"max |multi-process - single-process| = {diff:.3g}")
    assert diff <= 1e-5
