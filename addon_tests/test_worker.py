"""Background jobs through the panel's buttons: Train, Cancel, Resume, Bake, Prepare, Export, crashes,
a Python without torch, and creating the environment."""

from __future__ import annotations

import math
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from addon_helpers import ADDON_MODULE, DEMO_SCENE, REPO, wait_job

from nex_core.io.events import read_events

# --------------------------------------------------------------------------------------------------
# Train, Cancel, Resume, Bake on the shipped scene (tiny preset, real subprocesses)


def test_train_runs_in_background_with_progress(trained_run):
    cmd = trained_run["train_command"]
    assert cmd[:4] == [sys.executable, "-m", "nex_core.cli", "train"] and "--preset" in cmd and "tiny" in cmd
    running = trained_run["running"]
    assert running.running and running.phase == "train" and running.steps == 150 and running.step >= 20
    assert math.isfinite(running.loss) and math.isfinite(running.psnr) and running.eta_s is not None
    panel = trained_run["panel_running"]
    assert panel["running"] and panel["phase"] == "train" and panel["steps"] == 150 and 0 < panel["progress"] < 100
    assert math.isfinite(panel["loss"]) and math.isfinite(panel["psnr"])


def test_cancel_leaves_a_resumable_checkpoint(trained_run):
    c = trained_run["cancelled"]
    assert not c.running and c.phase == "cancelled" and c.resumable and not c.error
    assert c.returncode == 130
    assert trained_run["checkpoints_after_cancel"], "Cancel wrote no checkpoint"
    step = int(trained_run["checkpoints_after_cancel"][-1][5:13])
    assert 20 <= step < 150
    assert trained_run["panel_cancelled"] == {"running": False, "phase": "cancelled", "resumable": True, "error": ""}


def test_resume_continues_to_the_end(trained_run):
    assert trained_run["resume_command"][-2:] == ["--resume", str(trained_run["run_dir"])] or \
        "--resume" in trained_run["resume_command"]
    done = trained_run["done"]
    assert done.succeeded and done.phase == "done" and done.step == 150 and done.progress == 1.0
    events = read_events(trained_run["run_dir"] / "events.jsonl")
    resumed = [e for e in events if e["kind"] == "resume"]
    cancelled = [e for e in events if e["kind"] == "cancelled"]
    assert len(resumed) == 1 and resumed[0]["step"] == cancelled[0]["step"]
    steps = [e["step"] for e in events if e["kind"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == 150  # one loss curve, no restart from 0
    assert done.preview and Path(done.preview).is_file()


def test_bake_writes_the_baked_mpi(trained_run):
    assert trained_run["baked"].succeeded, trained_run["baked"].error
    assert (trained_run["baked_dir"] / "mpi.json").is_file()


# --------------------------------------------------------------------------------------------------
# Failures are shown, Blender keeps working


def _settings(sc, scene_dir: Path, run_dir: Path) -> None:
    sc.nex.scene_dir, sc.nex.run_dir, sc.nex.preset = str(scene_dir), str(run_dir), "tiny"


def test_worker_crash_is_reported(scene, addon, bpy_module, tmp_path):
    bpy = bpy_module
    _settings(scene, DEMO_SCENE, tmp_path / "run")
    assert bpy.ops.nex.train() == {"FINISHED"}
    job = addon.worker.get(scene.name)
    wait_job(addon, scene, timeout=120, until=lambda s: s.phase in ("setup", "train"))
    job.proc.kill()  # a crash: the process dies without a word
    status = wait_job(addon, scene, timeout=60)
    assert status.phase == "failed" and "killed (SIGKILL)" in status.error
    assert scene.nex.job.error == status.error and not scene.nex.job.running
    # Blender is fine: other operators still work, and a new job can start.
    assert bpy.ops.nex.import_cameras(directory=str(DEMO_SCENE), background_images=False) == {"FINISHED"}
    assert bpy.ops.nex.train.poll()


def test_bad_scene_message_reaches_the_panel(scene, addon, bpy_module, tmp_path):
    empty = tmp_path / "no_photos"
    (empty / "images").mkdir(parents=True)
    _settings(scene, empty, tmp_path / "run")
    assert bpy_module.ops.nex.train() == {"FINISHED"}
    status = wait_job(addon, scene, timeout=120)
    assert status.phase == "failed" and "no photos found" in status.error
    assert "no photos found" in scene.nex.job.error


def test_grid_network_option_trains_with_the_grid_field(scene, addon, bpy_module, tmp_path):
    from nex_core.io import config as config_mod

    _settings(scene, DEMO_SCENE, tmp_path / "run")
    scene.nex.network, scene.nex.steps = "GRID", 30
    assert "grid network" in scene.nex.effective_summary()
    assert bpy_module.ops.nex.train() == {"FINISHED"}
    assert addon.worker.get(scene.name).commands[0][-3:-1] == ["--field", "grid"]
    status = wait_job(addon, scene, timeout=300)
    assert status.succeeded, status.error
    assert config_mod.load(tmp_path / "run" / "config.toml").model.field == "grid"


def _python_without_torch(tmp_path: Path) -> Path:
    """A Python like the venv's but where `import torch` fails as if torch were not installed."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    wrapper = tmp_path / "python-without-torch"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={blocker.parent} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


@pytest.mark.skipif(sys.platform == "win32", reason="uses a shell-script interpreter")
def test_python_without_torch_is_explained(scene, addon, bpy_module, tmp_path):
    bpy = bpy_module
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.python_path = str(_python_without_torch(tmp_path))
    try:
        assert bpy.ops.nex.check_python() == {"FINISHED"}
        assert not prefs.check_ok and "torch MISSING" in prefs.check_summary and "nex_core 0.1.0" in prefs.check_summary
        _settings(scene, DEMO_SCENE, tmp_path / "run")
        assert bpy.ops.nex.train() == {"FINISHED"}
        status = wait_job(addon, scene, timeout=120)
        assert status.phase == "failed" and "does not have PyTorch" in status.error
        assert "Create Environment" in scene.nex.job.error
    finally:
        prefs.python_path = sys.executable
    assert bpy.ops.nex.check_python() == {"FINISHED"} and prefs.check_ok


def test_check_reads_the_doctors_answer(addon, tmp_path):
    check = addon.prefs.check_python(sys.executable)
    assert check.ok and check.report.missing == [] and check.report.executable == sys.executable
    assert check.summary.startswith("Python ") and "nex_core 0.1.0" in check.summary and "torch 2." in check.summary
    assert {p.name for p in check.report.packages} >= {"torch", "numpy", "pycolmap"}
    missing = addon.prefs.check_python(str(tmp_path / "no-such-python"))
    assert not missing.ok and missing.report is None and "no such program" in missing.summary


def test_missing_interpreter_is_refused(scene, bpy_module, tmp_path):
    bpy = bpy_module
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.python_path = str(tmp_path / "no-such-python")
    try:
        _settings(scene, DEMO_SCENE, tmp_path / "run")
        with pytest.raises(RuntimeError, match="does not exist"):
            bpy.ops.nex.train()
    finally:
        prefs.python_path = sys.executable


def test_resume_without_checkpoint_is_refused(scene, bpy_module, tmp_path):
    _settings(scene, DEMO_SCENE, tmp_path / "fresh_run")
    with pytest.raises(RuntimeError, match="no checkpoint to resume"):
        bpy_module.ops.nex.resume()


def test_prepare_runs_nex_prepare(scene, addon, bpy_module, tmp_path):
    """Prepare launches `nex prepare PHOTOS --out SCENE`; its refusal of a 3-photo folder reaches the panel."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("view_000.png", "view_001.png", "view_002.png"):
        shutil.copy(DEMO_SCENE / "images" / name, photos / name)
    scene.nex.photos_dir = str(photos)
    assert bpy_module.ops.nex.prepare() == {"FINISHED"}
    job = addon.worker.get(scene.name)
    assert job.commands[0][3:6] == ["prepare", str(photos), "--out"]
    assert Path(scene.nex.scene_dir) == photos.with_name("photos_scene")
    status = wait_job(addon, scene, timeout=180)
    assert status.phase == "failed" and "12" in status.error, status.error


def test_export_uses_the_cli(scene, addon, bpy_module, trained_run):
    _settings(scene, DEMO_SCENE, trained_run["run_dir"])
    scene.nex.export_path = str(trained_run["run_dir"] / "exported" / "mpi.glb")
    assert bpy_module.ops.nex.export() == {"FINISHED"}
    status = wait_job(addon, scene, timeout=300)
    if status.succeeded:
        assert (trained_run["run_dir"] / "exported" / "mpi.glb").is_file()
    else:  # `nex export` is written by someone else; until then the panel says so plainly
        assert "no `export` command" in status.error, status.error


# --------------------------------------------------------------------------------------------------
# The environment


FULL_ENV = os.environ.get("NEX_TEST_FULL_ENV") == "1"


@pytest.mark.slow
@pytest.mark.parametrize("deps", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not FULL_ENV, reason="installs torch and every dependency "
                                                "(minutes, ~1 GB): set NEX_TEST_FULL_ENV=1 to run it")),
])
def test_create_environment(addon, bpy_module, tmp_path, deps):
    """Create Environment: a venv in the add-on's user folder and a pip install of the project, with
    progress; then Check reports what it has. (Without ``deps``, --no-deps keeps it offline and quick:
    torch is not installed into it, which Check then reports.)"""
    bpy = bpy_module
    source = tmp_path / "project"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "nex_core", source / "nex_core", ignore=shutil.ignore_patterns("__pycache__"))
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.base_python, prefs.project_source = sys.executable, str(source)
    prefs.pip_args = "" if deps else "--no-deps"
    bpy.context.preferences.system.use_online_access = True  # pip reaches the package index (setuptools, torch)
    env = addon.prefs.env_dir()
    assert str(env).startswith(bpy.utils.user_resource("EXTENSIONS"))
    assert not str(env).startswith(bpy.utils.resource_path("LOCAL"))  # never inside Blender's own folders
    assert bpy.ops.nex.create_environment() == {"FINISHED"}
    job = addon.worker.get(addon.worker.ENV_JOB)
    seen_progress = []
    end = time.time() + (1800 if deps else 600)
    while job.status.running and time.time() < end:
        addon.worker.poll_step()
        seen_progress.append(job.status.progress)
        time.sleep(0.2)
    assert job.status.succeeded, job.status.error + addon.worker.read_tail(job.log_path)
    assert max(seen_progress) >= 0.5
    python = addon.prefs.venv_python(env)
    assert subprocess.run([str(python), "-c", "import nex_core.cli"]).returncode == 0
    prefs.python_path = ""  # detection now finds the add-on's environment first
    try:
        assert addon.prefs.background_python() == str(python)
        assert bpy.ops.nex.check_python() == {"FINISHED"}
        assert "nex_core 0.1.0" in prefs.check_summary
        assert ("torch 2." in prefs.check_summary) if deps else ("torch MISSING" in prefs.check_summary)
    finally:
        prefs.python_path = sys.executable
        bpy.context.preferences.system.use_online_access = False
        shutil.rmtree(env, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# An internal error while watching a job stops its process


def _job_with_broken_reader(addon, tmp_path: Path, key: str, code: str):
    """A real job running ``python -c CODE`` whose events reader fails on the next poll."""
    job = addon.worker.Job("render", [[sys.executable, "-c", code]], log_path=tmp_path / f"{key}.log",
                           events_path=tmp_path / "events.jsonl")
    addon.worker.start(key, job)

    def broken_poll():
        raise OSError("induced: events.jsonl cannot be read")

    job.reader.poll = broken_poll
    return job


def _wait_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    end = time.time() + timeout
    while proc.poll() is None and time.time() < end:
        time.sleep(0.05)
    return proc.poll()


@pytest.mark.skipif(sys.platform == "win32", reason="checks POSIX signals")
def test_internal_error_stops_the_jobs_process(addon, tmp_path):
    import signal

    job = _job_with_broken_reader(addon, tmp_path, "__internal_error__", "import time; time.sleep(60)")
    try:
        assert job.proc.poll() is None
        addon.worker.poll_step()
        assert not job.status.running and job.status.phase == "failed"
        assert "internal error while watching the render job" in job.status.error and "induced" in job.status.error
        assert _wait_exit(job.proc, 10) == -signal.SIGTERM  # gone, well before its 60 s
    finally:
        job.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="checks POSIX signals")
def test_internal_error_kills_a_process_that_ignores_sigterm(addon, tmp_path, monkeypatch):
    import signal

    monkeypatch.setattr(addon.worker, "KILL_GRACE_S", 0.5)
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('SIGTERM', 'ignored', flush=True); "
            "time.sleep(60)")
    job = _job_with_broken_reader(addon, tmp_path, "__stubborn__", code)
    try:
        end = time.time() + 30
        while "SIGTERM ignored" not in addon.worker.read_tail(job.log_path) and time.time() < end:
            time.sleep(0.05)  # (the log's first line is the command itself, which spells it differently)
        assert "SIGTERM ignored" in addon.worker.read_tail(job.log_path)
        addon.worker.poll_step()
        assert job.status.phase == "failed" and not job.status.running
        assert _wait_exit(job.proc, 10) == -signal.SIGKILL
    finally:
        job.kill()
