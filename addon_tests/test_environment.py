"""Create Environment: going online only when allowed, the torch variant and its download size, a local
wheel folder, and a new environment built beside the old one that replaces it only on success."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from addon_helpers import ADDON_MODULE

PREF_NAMES = ("python_path", "base_python", "project_source", "pip_args", "wheel_folder", "torch_variant",
              "torch_index_url")


@pytest.fixture
def prefs(addon, bpy_module):
    """The add-on's preferences, restored afterwards; online access off (Blender's default)."""
    bpy = bpy_module
    p = bpy.context.preferences.addons[ADDON_MODULE].preferences
    saved = {name: getattr(p, name) for name in PREF_NAMES}
    online = bpy.context.preferences.system.use_online_access
    bpy.context.preferences.system.use_online_access = False
    p.base_python = sys.executable
    addon.environment._cuda_cache[:] = [None]  # no GPU unless a test says otherwise
    yield p
    addon.environment._cuda_cache.clear()
    bpy.context.preferences.system.use_online_access = online
    for name, value in saved.items():
        setattr(p, name, value)


@pytest.fixture
def user_folder(addon):
    """The add-on's user folder, emptied of environments before and after."""
    import shutil

    folder = addon.environment.user_folder(create=True)

    def clean():
        for name in (*addon.environment.SLOTS, addon.environment.POINTER):
            path = folder / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    clean()
    yield folder
    clean()


def test_the_wheel_inside_the_zip_is_what_gets_installed(addon, prefs):
    env = addon.environment
    wheel = env.bundled_wheel()
    assert wheel is not None and wheel.name == "nex_blender-0.1.0-py3-none-any.whl"
    assert str(wheel).startswith(str(Path(addon.__file__).parent))
    assert env.project_source(prefs) == str(wheel)
    assert env.torch_requirement(wheel) == "torch==2.13.0"


def test_offline_refuses_and_explains(addon, prefs, bpy_module, user_folder):
    env = addon.environment
    plan = env.plan(prefs)
    assert plan.online and plan.download_mb == env.TORCH_DOWNLOAD_MB["CPU"] + env.OTHERS_DOWNLOAD_MB
    advice = env.offline_advice(plan)
    for words in ("Allow Online Access", "about 370 MB", "torch==2.13.0 (CPU)", "'Python'", "'Wheel Folder'",
                  "pip download"):
        assert words in advice, words
    before = addon.worker.get(addon.worker.ENV_JOB)
    with pytest.raises(RuntimeError) as raised:  # (bpy.ops raises an operator's ERROR report)
        bpy_module.ops.nex.create_environment()
    assert advice in str(raised.value)
    assert addon.worker.get(addon.worker.ENV_JOB) is before  # nothing started
    assert not (user_folder / env.SLOTS[0]).exists()


def test_torch_variants(addon, prefs, tmp_path, monkeypatch):
    env = addon.environment
    JobError = addon.worker.JobError
    prefs.torch_variant = "CPU"
    cpu = env.plan(prefs)
    torch_step = cpu.commands[1]
    assert torch_step[-3:] == ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]
    assert cpu.commands[2][-1] == str(env.bundled_wheel()) and "--index-url" not in cpu.commands[2]
    prefs.torch_variant = "CUDA"
    with pytest.raises(JobError, match="nvidia-smi shows no NVIDIA GPU"):
        env.plan(prefs)
    prefs.torch_variant = "CUSTOM"
    with pytest.raises(JobError, match="'Index URL' is empty"):
        env.plan(prefs)
    prefs.torch_index_url = "https://example.org/simple"
    custom = env.plan(prefs)
    assert custom.commands[1][-3:] == ["--index-url", "https://example.org/simple", "torch==2.13.0"]
    assert custom.download_mb is None and "an unknown amount" in custom.download_text()

    # A real nvidia-smi is asked: a stand-in on PATH that prints what the driver's does.
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --query-gpu=name ]; then echo 'NVIDIA H200'; else\n"
                    "echo '| NVIDIA-SMI 570.1   Driver Version: 570.1   CUDA Version: 12.9 |'; fi\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    env._cuda_cache.clear()
    assert env.detect_cuda() == ("NVIDIA H200", "cu128")
    prefs.torch_variant = "AUTO"
    auto = env.plan(prefs)
    assert auto.commands[1][-3:] == ["--index-url", "https://download.pytorch.org/whl/cu128", "torch==2.13.0"]
    assert auto.notes == ["GPU: NVIDIA H200 (torch build cu128)"] and "about 3.2 GB" in auto.download_text()


def test_wheel_folder_installs_offline(addon, prefs, tmp_path):
    env = addon.environment
    prefs.wheel_folder = str(tmp_path / "missing")
    with pytest.raises(addon.worker.JobError, match="does not exist"):
        env.plan(prefs)
    prefs.wheel_folder = str(tmp_path)
    plan = env.plan(prefs)
    assert not plan.online and plan.download_mb == 0 and "no download" in plan.download_text()
    for command in plan.commands[1:3]:
        assert command[4:7] == ["--no-index", "--find-links", str(tmp_path)], command


def _run(addon, bpy, cancel_after: float | None = None, timeout: float = 300):
    assert bpy.ops.nex.create_environment() == {"FINISHED"}
    job = addon.worker.get(addon.worker.ENV_JOB)
    if cancel_after is not None:
        time.sleep(cancel_after)
        assert bpy.ops.nex.cancel_environment() == {"FINISHED"}
    status = job.wait(timeout)
    return job, status


def _wait_gone(path: Path, timeout: float = 30) -> bool:
    end = time.time() + timeout
    while path.exists() and time.time() < end:
        time.sleep(0.1)
    return not path.exists()


@pytest.mark.slow
def test_new_environment_replaces_the_old_only_on_success(addon, prefs, bpy_module, user_folder, tmp_path):
    """Install (the zip's wheel, --no-deps, offline), then a failing install, a cancelled one and a good
    one: the first two leave the first environment active and working, the last replaces it."""
    bpy, env = bpy_module, addon.environment
    empty = tmp_path / "wheels"
    empty.mkdir()
    prefs.wheel_folder, prefs.pip_args = str(empty), "--no-deps"
    job, status = _run(addon, bpy)
    assert status.succeeded, status.error + addon.worker.read_tail(job.log_path)
    first = user_folder / env.SLOTS[0]
    assert json.loads((user_folder / env.POINTER).read_text()) == {"active": env.SLOTS[0]}
    assert addon.prefs.env_dir() == first
    check = [str(env.venv_python(first)), "-c", "import nex_core.cli, nex_core; print(nex_core.__file__)"]
    where = subprocess.run(check, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(first))  # from the wheel, not the checkout

    prefs.pip_args = ""  # now torch is wanted, and the wheel folder has none: pip fails
    job, status = _run(addon, bpy)
    assert status.phase == "failed" and f"the previous environment {first} is unchanged" in status.error
    assert "torch" in addon.worker.read_tail(job.log_path)
    assert _wait_gone(user_folder / env.SLOTS[1])
    assert addon.prefs.env_dir() == first and subprocess.run(check, capture_output=True, cwd=tmp_path).returncode == 0

    prefs.pip_args = "--no-deps"
    job, status = _run(addon, bpy, cancel_after=0.5)
    assert status.phase == "cancelled" and status.returncode != 0
    assert _wait_gone(user_folder / env.SLOTS[1])
    assert addon.prefs.env_dir() == first and subprocess.run(check, capture_output=True, cwd=tmp_path).returncode == 0

    job, status = _run(addon, bpy)
    assert status.succeeded, status.error
    second = user_folder / env.SLOTS[1]
    assert addon.prefs.env_dir() == second and env.venv_python(second).is_file()
    assert _wait_gone(first)
    assert addon.prefs.python_candidates(None)[0] == (env.venv_python(second), "add-on environment")


def test_zip_wheel_matches_the_bundled_one(addon, extension_zip):
    """The installed extension's wheel is byte for byte the one in the zip."""
    with zipfile.ZipFile(extension_zip) as zf:
        assert zf.read("wheel/nex_blender-0.1.0-py3-none-any.whl") == addon.environment.bundled_wheel().read_bytes()


class _Layout:
    """Records what a draw function puts into a layout (labels and properties)."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def label(self, text="", icon="NONE"):
        self.lines.append(text)

    def prop(self, data, name, **kw):
        self.lines.append(f"prop {name}")

    def column(self, align=False):
        return self

    def operator(self, idname, **kw):
        self.lines.append(f"op {idname}")


def test_the_panel_says_the_download_and_the_alternatives(addon, prefs, bpy_module, tmp_path):
    lines: list[str] = []
    addon.prefs._draw_plan(_Layout(lines), prefs)
    assert "It downloads about 370 MB: torch==2.13.0 (CPU) and the project's other dependencies" in lines
    assert any("Online access is off" in line for line in lines)
    assert any("existing interpreter" in line for line in lines) and any("'Wheel Folder'" in line for line in lines)
    bpy_module.context.preferences.system.use_online_access = True
    lines.clear()
    addon.prefs._draw_plan(_Layout(lines), prefs)
    assert not any("Online access is off" in line for line in lines)
    prefs.wheel_folder = str(tmp_path)
    lines.clear()
    addon.prefs._draw_plan(_Layout(lines), prefs)
    assert lines == ["It installs offline from the local wheel folder (no download)"]
