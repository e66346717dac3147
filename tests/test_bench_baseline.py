"""tools/bench_baseline.py: the reference-style baseline to a time budget, its fast held-out evaluation, and
the comparison with nex train runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.configs import DEMO_SCENE

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "bench_baseline.py"
sys.path.insert(0, str(ROOT))

from tools import bench_baseline  # noqa: E402


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_plan_fills_the_budget_at_the_measured_rate():
    assert bench_baseline.plan_steps(elapsed_s=2.0, steps_done=10, budget_s=60.0) == 300
    assert bench_baseline.plan_steps(elapsed_s=100.0, steps_done=10, budget_s=60.0) == 11  # over budget: one more
    with pytest.raises(ValueError):
        bench_baseline.plan_steps(elapsed_s=0.0, steps_done=0, budget_s=60.0)


def test_the_fast_evaluation_equals_the_baselines_own_per_view_render():
    """The once-per-plane render of the copied weights against the reference's network render per view."""
    import torch

    from nex_core.io import config as config_mod
    from nex_core.training.reference_trainer import BaselineTrainer, reference_settings

    cfg = config_mod.preset("tiny")
    cfg.data.scene = str(DEMO_SCENE)
    cfg.data.width = 80
    cfg.train.device = "cpu"
    trainer = BaselineTrainer(reference_settings(cfg), device="cpu")
    torch.manual_seed(0)
    for _ in range(3):  # trained a little, so the planes are not all alike
        trainer.train_step()
    fast, views = bench_baseline.held_out_psnr(trainer)
    assert len(views) == len(trainer.scene.test_ids) > 0
    assert fast == pytest.approx(trainer.test_psnr(), abs=0.01)


def test_a_short_budget_run_plans_evaluates_and_compares(tmp_path):
    out = tmp_path / "base.json"
    done = _run("--scene", str(DEMO_SCENE), "--preset", "tiny", "--minutes", "0.1", "--eval-at", "0.5,1",
                "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["plans"] and result["plans"][0]["step"] == 5
    assert result["steps"] > 5
    assert result["train_s"] <= 0.1 * 60 * 1.2
    assert [c["step"] for c in result["curve"]] == sorted(c["step"] for c in result["curve"])
    assert len(result["curve"]) == 2 and result["curve"][-1]["step"] == result["steps"]
    assert result["settings"]["train"]["images_per_step"] == 1  # the reference's settings, not the preset's
    assert result["settings"]["train"]["steps"] == result["plans"][-1]["steps"]

    final = result["curve"][-1]["test_psnr"]
    runs = []
    for minutes, gain in ((0.05, 0.5), (0.02, -1.0)):  # two nex train runs' files: one above, one below
        run = tmp_path / f"run-{minutes}"
        run.mkdir()
        (run / "config.toml").write_text(f"[train]\nsteps = 100\nminutes = {minutes}\n")
        (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in (
            {"kind": "start", "step": 0},
            {"kind": "test_psnr", "step": 50, "test_psnr": final - 3.0, "elapsed_s": 1.0},
            {"kind": "test_psnr", "step": 100, "test_psnr": final + gain, "elapsed_s": 2.0})) + "\n")
        runs.append(run)
    table = _run("--compare", str(out), "--runs", *map(str, runs))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "| 0.02 min | 100 |" in lines[-2] and "not reached" in lines[-2]
    assert "| 0.05 min | 100 |" in lines[-1] and "2.0x" in lines[-1]


def test_bad_input_is_refused_with_the_flag_named(tmp_path):
    missing = _run("--scene", str(tmp_path / "nowhere"), "--minutes", "1")
    assert missing.returncode != 0 and "--scene" in missing.stderr
    zero = _run("--scene", str(DEMO_SCENE), "--minutes", "0")
    assert zero.returncode != 0 and "--minutes" in zero.stderr
    no_eval = tmp_path / "run"
    no_eval.mkdir()
    (no_eval / "events.jsonl").write_text(json.dumps({"kind": "start", "step": 0}) + "\n")
    (tmp_path / "b.json").write_text(json.dumps({"curve": [{"test_psnr": 20.0}], "minutes": 1, "steps": 3}))
    refused = _run("--compare", str(tmp_path / "b.json"), "--runs", str(no_eval))
    assert refused.returncode != 0 and "no held-out evaluation" in (refused.stderr + refused.stdout)
