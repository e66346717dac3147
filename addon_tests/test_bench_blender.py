"""tools/bench_blender.py end to end on the add-on tests' trained run (one held-out view, the exact Cycles
set-up): its Blender render agrees with nex_core's render of the same bake, and the table and the
docs section it writes hold the figures."""

from __future__ import annotations

import json
import subprocess
import sys

from addon_helpers import REPO


def test_bench_blender_miniature(trained_run, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nearlier text\n")
    out = tmp_path / "blender.json"
    cmd = [sys.executable, str(REPO / "tools" / "bench_blender.py"), str(trained_run["run_dir"]), "--views", "1",
           "--setups", "cycles exact", "--work", str(tmp_path / "work"), "--json", str(out),
           "--write-docs", "--doc", str(doc)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    record = json.loads(out.read_text())["runs"][0]
    assert list(record["setups"]) == ["nex_core", "cycles exact"]
    core, cycles = record["setups"]["nex_core"], record["setups"]["cycles exact"]
    assert cycles["psnr_core"] >= 35.0  # Exact Pixels at one sample: the numpy renderer's pixels
    assert abs(cycles["psnr_photo"] - core["psnr_photo"]) < 1.0
    assert cycles["seconds"] > 0.0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nearlier text\n")
    assert "Cycles, Exact Pixels, 1 sample" in text and f"{cycles['psnr_photo']:.2f} dB" in text
    # Writing again replaces the section instead of adding a second one.
    sys.path.insert(0, str(REPO / "tools"))
    import bench_blender

    bench_blender.write_docs(doc, "the new section")
    text = doc.read_text()
    assert text.count(bench_blender.DOC_START) == 1 and "the new section" in text and "Exact Pixels" not in text
    assert text.startswith("# Benchmarks\n\nearlier text\n")


def test_bench_blender_refuses_a_folder_that_is_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_blender.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "not a run directory" in proc.stderr and str(tmp_path) in proc.stderr
