"""tools/bench_k0_kernel.py's miniature: the paired step timing runs and writes its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.configs import DEMO_SCENE

ROOT = Path(__file__).resolve().parents[1]


def test_the_miniature_times_both_trainers(tmp_path):
    out = tmp_path / "k0.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_k0_kernel.py"), "--scene", str(DEMO_SCENE),
                           "--preset", "tiny", "--rounds", "1", "--steps", "1", "--json", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          timeout=600)
    if done.returncode == 1 and "no kernel here" in done.stdout:
        return  # no compiler on this machine: the tool says so (tests/test_sigmoid_tv.py covers the fallback)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert len(result["kernel_s"]) == len(result["torch_s"]) == 1 and result["ratio"] > 0
    assert "x" in done.stdout.splitlines()[-1]
