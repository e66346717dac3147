"""tools/bench_scale.py's miniature: the whole chain at 160 pixels wide, so the benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from support.configs import DEMO_SCENE

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "bench_scale.py"


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_the_miniature_runs_every_stage_and_writes_its_json(tmp_path):
    skip = [] if importlib.util.find_spec("bpy") else ["--skip", "blender"]
    # 160 wide, not less: at 80 the photos give COLMAP about 160 points, near the 100 that prepare demands,
    # and a CI machine once fell below it (SIFT's count varies between CPUs and runs).
    out = _run("--scene", str(DEMO_SCENE), "--out", str(tmp_path / "work"), "--width", "160", "--phone-width", "320",
               "--preset", "tiny", "--steps", "2", "--cycles-samples", "1", *skip)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / "work" / "bench_scale.json").read_text())
    rows = {r["stage"]: r for r in result["stages"]}
    want = ["phone photos", "prepare", "train", "eval", "bake", "view load", "gltf export"]
    if not skip:
        want += ["blender", "blender import", "cycles frame", "eevee frame"]
    assert [r["stage"] for r in result["stages"]] == want
    for name in want:
        row = rows[name]
        assert row["ok"], row
        if name != "eevee frame" or "seconds" in row:
            assert row["seconds"] > 0 and row["peak_rss_mb"] > 0, row
    assert rows["train"]["trained_on"] == "prepared"  # the chain: trained on what prepare made
    assert rows["eval"]["views"] >= 1 and rows["eval"]["per_view_s"] > 0
    assert rows["view load"]["fetched_mb"] > 0
    # Each stage's own peak, not the largest so far: the light stages after training stay light.
    assert rows["view load"]["peak_rss_mb"] < rows["train"]["peak_rss_mb"]
    assert rows["bake"]["target_s"] == 120.0 and rows["bake"]["met"] is None  # judged only at 1008 wide
    assert (tmp_path / "work" / "mpi.glb").stat().st_size > 0
    if not skip:
        # The prepared scene's undistorted images are cropped a little, never widened.
        assert rows["blender"]["planes"] == 8 and 157 <= rows["blender"]["size"][0] <= 160
        assert 108 <= rows["blender"]["size"][1] <= 120
        # By default the frames are the MPI's own pixels (Exact Pixels, one sample), not Blender's settings.
        assert rows["cycles frame"]["settings"] == rows["blender"]["settings"] == "Exact Pixels, 1 sample"
    assert result["machine"] and result["settings"]["width"] == 160
    assert "| stage | seconds | peak RSS (MB) |" in out.stdout and "| train |" in out.stdout


def test_bad_flags_are_refused_before_anything_runs(tmp_path):
    out = _run("--scene", str(DEMO_SCENE), "--out", str(tmp_path / "w"), "--skip", "train,nonsense", timeout=120)
    assert out.returncode == 2 and "unknown stage(s) nonsense" in out.stderr
    out = _run("--scene", str(tmp_path), "--out", str(tmp_path / "w"), timeout=120)
    assert out.returncode == 2 and "no images/ folder" in out.stderr


def test_minutes_trains_to_a_budget_instead_of_steps(tmp_path):
    out = _run("--scene", str(DEMO_SCENE), "--out", str(tmp_path / "w"), "--width", "80", "--preset", "tiny",
               "--minutes", "0.1", "--skip", "phone,prepare,eval,bake,view,gltf,blender", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = {r["stage"]: r for r in json.loads((tmp_path / "w" / "bench_scale.json").read_text())["stages"]}
    assert rows["train"]["ok"] and rows["train"]["trained_on"] == "scene"
    config = (tmp_path / "w" / "run" / "config.toml").read_text()
    assert "minutes = 0.1" in config


def test_a_stage_reports_its_own_peak_not_the_larger_parents():
    """Linux carries ru_maxrss across exec: a small child of a large parent must not report the parent's peak."""
    spec = importlib.util.spec_from_file_location("bench_scale_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    ballast = bytearray(600 * 2 ** 20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: the parent's peak is >= 600 MiB
    child = "import time; b = bytearray(200 * 2 ** 20); b[::4096] = bytes(len(b[::4096])); time.sleep(0.5)"
    got = tool.run_child([sys.executable, "-c", child], timeout=60)
    del ballast
    assert got["rc"] == 0, got
    assert 200 <= got["peak_rss_mb"] < 400, got
