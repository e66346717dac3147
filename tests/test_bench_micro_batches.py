"""tools/bench_micro_batches.py in miniature: the tiny preset on the shipped scene, two micro-batch counts,
one timed step each; the rows and the JSON it writes (the figures themselves are docs/benchmarks.md's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "bench_micro_batches.py"


def test_the_miniature_times_each_micro_batch_count_in_its_own_process(tmp_path):
    out = tmp_path / "micro.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--scene", str(REPO / "data" / "scenes" / "shiny_demo"),
                           "--preset", "tiny", "--rays", "300", "--micro", "1", "4", "--steps", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["micro_batches"] for r in rows] == [1, 4]
    assert rows[0]["samples_per_micro_batch"] == 4 * rows[1]["samples_per_micro_batch"]
    assert all(len(r["step_s"]) == 1 and r["step_s"][0] > 0 and r["peak_rss_gb"] > 0.05 for r in rows)


def test_a_missing_scene_is_refused_with_the_flag(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOL), "--scene", str(tmp_path / "nowhere")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--scene" in proc.stderr and "no images/ folder" in proc.stderr
