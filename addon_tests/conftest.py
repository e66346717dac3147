"""Fixtures that drive the real add-on in Blender-as-a-module (``bpy``).

Once per session: build the extension zip with ``tools/build_extension.py`` (Blender's own build tool),
install it with ``bpy.ops.extensions.package_install_files`` into a throw-away Blender user folder
(``BLENDER_USER_RESOURCES``, set before bpy is first imported) and enable it. Tests then call the
add-on's operators through ``bpy.ops`` as a user would. In background mode timers never fire, so tests
advance background jobs by calling the worker's poll step (what the timer would do).

Renders are kept tiny (80 x 60, one Cycles sample: the MPI is deterministic once Russian roulette is
off for its transparent bounces, which Import MPI arranges).
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from addon_helpers import ADDON_MODULE, DEMO_SCENE, REPO, exact_render_settings, wait_job

if importlib.util.find_spec("bpy") is None:
    collect_ignore_glob = ["test_*.py"]  # noqa: F841 - pytest reads it: no Blender module, no add-on tests

# A private Blender user folder for the whole session (must be set before `import bpy`).
_USER_DIR = tempfile.mkdtemp(prefix="nex_addon_tests_user_")
if "bpy" not in sys.modules:
    os.environ["BLENDER_USER_RESOURCES"] = _USER_DIR
atexit.register(shutil.rmtree, _USER_DIR, True)


@pytest.fixture(scope="session")
def bpy_module():
    import bpy

    ext_dir = Path(bpy.utils.user_resource("EXTENSIONS"))
    if not str(ext_dir).startswith(_USER_DIR):
        pytest.fail(f"bpy was imported before addon_tests/conftest.py could point Blender at a temporary user "
                    f"folder (it uses {ext_dir}); run addon_tests in their own process")
    return bpy


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "build_extension.py"), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def addon(bpy_module, extension_zip):
    """The installed and enabled add-on's package (``bl_ext.user_default.nex_blender``)."""
    bpy = bpy_module
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    assert ADDON_MODULE in bpy.context.preferences.addons
    module = importlib.import_module(ADDON_MODULE)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.python_path = sys.executable  # the venv's Python: it has nex_core and torch
    yield module
    if ADDON_MODULE in bpy.context.preferences.addons:
        module.worker.stop_all(wait_s=10)
        # The last test's scene keeps its NeX MPI nodes: disabling must not leave Blender 4.2 a crash at exit
        # (compat.DISABLE_MAKES_PORTABLE), which the session's exit code then shows.
        bpy.ops.preferences.addon_disable(module=ADDON_MODULE)


@pytest.fixture
def scene(addon, bpy_module):
    """An empty scene (the add-on stays enabled) with a black world and exact render settings."""
    bpy = bpy_module
    bpy.ops.wm.read_homefile(use_empty=True)
    # (Disabling and enabling the add-on, as the portable-.blend test does, resets its preferences.)
    bpy.context.preferences.addons[ADDON_MODULE].preferences.python_path = sys.executable
    sc = bpy.context.scene
    exact_render_settings(sc)
    return sc


@pytest.fixture(scope="session")
def trained_run(addon, bpy_module, tmp_path_factory):
    """The shipped scene trained with the tiny preset through the panel's buttons and the real background
    worker: Train, Cancel after 20 steps, Resume to the end, Bake. Returns what was observed on the way."""
    from dataclasses import replace

    bpy = bpy_module
    bpy.ops.wm.read_homefile(use_empty=True)
    sc = bpy.context.scene
    run_dir = tmp_path_factory.mktemp("runs") / "shiny_tiny"
    settings = sc.nex
    settings.scene_dir = str(DEMO_SCENE)
    settings.preset = "tiny"
    settings.run_dir = str(run_dir)
    out: dict = {"run_dir": run_dir}

    t0 = time.time()
    assert bpy.ops.nex.train() == {"FINISHED"}
    out["train_command"] = list(addon.worker.get(sc.name).commands[0])
    status = wait_job(addon, sc, timeout=300, until=lambda s: s.step >= 20)
    out["running"] = replace(status)
    out["panel_running"] = {k: getattr(settings.job, k) for k in ("running", "phase", "progress", "step", "steps",
                                                                    "loss", "psnr", "message", "preview_path")}
    assert bpy.ops.nex.cancel() == {"FINISHED"}
    out["cancelled"] = replace(wait_job(addon, sc, timeout=120))
    out["checkpoints_after_cancel"] = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))
    out["panel_cancelled"] = {k: getattr(settings.job, k) for k in ("running", "phase", "resumable", "error")}

    assert bpy.ops.nex.resume() == {"FINISHED"}
    out["resume_command"] = list(addon.worker.get(sc.name).commands[0])
    out["done"] = replace(wait_job(addon, sc, timeout=300))
    out["train_seconds"] = time.time() - t0

    assert bpy.ops.nex.bake() == {"FINISHED"}
    out["baked"] = replace(wait_job(addon, sc, timeout=300))
    out["baked_dir"] = run_dir / "baked"
    return out
