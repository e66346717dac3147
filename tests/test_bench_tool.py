"""The benchmark harness (tools/bench.py and its parts in tools/benchmark/) without running a benchmark:
the flags, the JSON layout of a run whose only section is skipped, the step-time rows, and a worker process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from benchmark.results import Section, to_json
from benchmark.steps import add_step_rows
from benchmark.workers import run_worker

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "tools" / "bench.py"
SECTIONS = ("bench-s", "paper", "fast", "render", "bake", "profile", "cuda")


def test_help_lists_every_section():
    proc = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "{" + ",".join(SECTIONS) + "}" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the cuda section would run the benchmark")
def test_a_skipped_section_still_writes_the_whole_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "cuda", "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA" in proc.stdout and f"wrote {out}" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result) == {"machine", "args", "sections"}
    for key in ("cpu", "cpu_flags", "cpu_count", "torch_threads", "torch", "allocator", "load_average_start",
                "load_average_end", "started", "finished"):
        assert key in result["machine"], key
    assert result["args"]["only"] == "['cuda']" and result["args"]["quick"] == "False"
    cuda = result["sections"]["cuda"]
    assert set(result["sections"]) == {"cuda"} and cuda["rows"] == []
    assert cuda["skipped"].startswith("no CUDA")
    assert set(cuda["details"]) == {"section_seconds", "load_average_after"}


def test_step_rows_pair_every_variant_with_the_baseline():
    sec = Section("bench-s")
    add_step_rows(sec, {"ours": [1.0, 2.0, 4.0], "baseline": [2.0, 8.0, 4.0]}, rays=300,
                  cpu_times={"ours": [0.5, 1.0, 2.0], "baseline": [1.0, 1.0, 1.0]})
    rows = {(r.variant, r.metric): r for r in sec.rows}
    assert rows["ours", "rays / s"].median == 150.0 and rows["ours", "rays / s"].max == 300.0
    wall = rows["ours / baseline", "step time ratio (wall)"]
    assert (wall.min, wall.median, wall.max) == (0.25, 0.5, 1.0)
    assert rows["ours / baseline", "step time ratio (CPU)"].median == 1.0
    assert ("baseline / baseline", "step time ratio (wall)") not in rows
    row = to_json({}, argparse.Namespace(quick=True), [sec])["sections"]["bench-s"]["rows"][0]
    assert row == {"section": "bench-s", "variant": "ours", "metric": "s / step", "median": 2.0, "min": 1.0,
                   "max": 4.0, "unit": "s", "note": "wall clock"}


def test_a_worker_runs_in_its_own_process_and_reports_its_failure(tmp_path):
    """run_worker starts ``tools/bench.py --worker``; a worker that fails comes back as its error's last line."""
    missing = tmp_path / "no_such_run"
    result = run_worker("bake", {"device": "cpu", "run_dir": str(missing), "out_dir": str(tmp_path / "out")},
                        threads=1, timeout=120)
    assert set(result) == {"error"} and len(result["error"]) == 1
    assert "no_such_run" in result["error"][0], result
