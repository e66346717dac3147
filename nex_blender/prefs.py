"""Add-on preferences: the Python that runs training, SfM and baking, and creating it.

Blender's own Python never imports torch. Background work runs in another interpreter that has nex_core
and torch: chosen here, or detected (this add-on's own environment, then the Python behind a ``nex``
command on PATH). **Check** asks it (``nex doctor --json``) and shows the nex_core and torch versions,
what is missing and whether CUDA is there;
**Create Environment** makes a virtual environment in the add-on's user folder
(``bpy.utils.extension_path_user``, never inside Blender's installation) and pip-installs the project
into it, with progress.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from . import _core, worker

ADDON_ID = __package__
ENV_FOLDER = "python-env"
CHECK_TIMEOUT_S = 180


@dataclass
class PythonCheck:
    """What Check found: whether nex can run there, one line saying so, and the doctor's report."""

    ok: bool
    summary: str
    report: object = None  # nex_core.io.answers.doctor.DoctorReport, when the doctor answered


def get_prefs(context=None) -> "NEX_AP_preferences | None":
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def env_dir(create: bool = False) -> Path:
    """Where Create Environment puts the virtual environment (the add-on's user folder)."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path=ENV_FOLDER, create=create))


def venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _nex_command_python() -> Path | None:
    """The interpreter of a ``nex`` console script on PATH (its first line), if any."""
    nex = shutil.which("nex")
    if not nex:
        return None
    folder = Path(nex).parent
    for name in ("python", "python3", "python.exe"):
        if (folder / name).is_file():
            return folder / name
    try:
        first = Path(nex).read_bytes()[:300].split(b"\n", 1)[0].decode("utf-8", "replace")
    except OSError:
        return None
    if first.startswith("#!"):
        candidate = Path(first[2:].strip().split()[0])
        if candidate.is_file():
            return candidate
    return None


def python_candidates(prefs=None) -> list[tuple[Path, str]]:
    """(interpreter, where it came from), in the order the add-on tries them."""
    out: list[tuple[Path, str]] = []
    if prefs is not None and prefs.python_path.strip():
        out.append((Path(bpy.path.abspath(prefs.python_path.strip())), "preferences"))
    try:
        own = venv_python(env_dir())
        if own.is_file():
            out.append((own, "add-on environment"))
    except (ValueError, RuntimeError):  # the add-on is not installed as an extension
        pass
    nex_python = _nex_command_python()
    if nex_python is not None:
        out.append((nex_python, "`nex` on PATH"))
    return out


def background_python(context=None) -> str:
    """The interpreter to run nex commands with; raises worker.JobError with advice when there is none."""
    prefs = get_prefs(context)
    candidates = python_candidates(prefs)
    if not candidates:
        raise worker.JobError("no Python with nex_core is set up: open Preferences > Add-ons > NeX for Blender "
                              "and choose one, or press Create Environment")
    path, source = candidates[0]
    if not path.is_file():
        raise worker.JobError(f"the background Python {path} (from the {source}) does not exist; fix it in the "
                              "add-on preferences")
    return str(path)


def check_python(python: str, timeout: float = CHECK_TIMEOUT_S) -> PythonCheck:
    """Ask ``python`` what it has (``nex doctor --json``): Python, nex_core, torch and the other
    packages, the device. Never raises."""
    try:
        report = worker.ask(_core.module("jobs").DoctorJob(), python, timeout)
    except worker.JobError as exc:
        return PythonCheck(False, str(exc))
    return PythonCheck(report.ok, report.summary(), report)


def project_source(prefs) -> str:
    """What Create Environment pip-installs: the preference, else the checkout the add-on was built from."""
    if prefs is not None and prefs.project_source.strip():
        return bpy.path.abspath(prefs.project_source.strip())
    info = Path(__file__).with_name("_build_info.json")
    if info.is_file():
        source = json.loads(info.read_text(encoding="utf-8")).get("source", "")
        if source and (Path(source) / "pyproject.toml").is_file():
            return source
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file() and (here / "nex_core").is_dir():
        return str(here)
    return ""


def base_python(prefs) -> str:
    """The Python a new environment is made from (3.11, as the project requires)."""
    if prefs is not None and prefs.base_python.strip():
        return bpy.path.abspath(prefs.base_python.strip())
    for name in ("python3.11", "python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    return sys.executable


def environment_job(prefs) -> worker.Job:
    """The job that creates the add-on's environment: venv, then pip install of the project."""
    source = project_source(prefs)
    if not source:
        raise worker.JobError("set 'Project source' (a clone of the NeX for Blender repository, or a wheel) "
                              "before creating the environment")
    root = env_dir(create=True)
    py = venv_python(root)
    extra = prefs.pip_args.split() if prefs is not None else []
    commands = [[base_python(prefs), "-m", "venv", str(root)],
                [str(py), "-m", "pip", "install", *extra, source]]
    return worker.Job("env", commands, log_path=root.parent / "environment.log")


class NEX_OT_check_python(bpy.types.Operator):
    """Run the background Python and show what it has (nex_core, torch, CUDA)"""

    bl_idname = "nex.check_python"
    bl_label = "Check"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        prefs = get_prefs(context)
        try:
            python = background_python(context)
        except worker.JobError as exc:
            prefs.check_summary, prefs.check_ok = str(exc), False
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        check = check_python(python)
        prefs.check_summary = f"{python}: {check.summary}"
        prefs.check_ok = check.ok
        self.report({"INFO"} if check.ok else {"WARNING"}, prefs.check_summary)
        return {"FINISHED"}


class NEX_OT_create_environment(bpy.types.Operator):
    """Create a Python environment with nex_core and torch in the add-on's user folder (pip install)"""

    bl_idname = "nex.create_environment"
    bl_label = "Create Environment"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        prefs = get_prefs(context)
        try:
            worker.start(worker.ENV_JOB, environment_job(prefs))
        except worker.JobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"creating the environment in {env_dir()} (this downloads PyTorch: minutes)")
        return {"FINISHED"}


class NEX_OT_cancel_environment(bpy.types.Operator):
    """Stop creating the environment"""

    bl_idname = "nex.cancel_environment"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        worker.cancel(worker.ENV_JOB)
        return {"FINISHED"}


class NEX_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: StringProperty(name="Python", subtype="FILE_PATH",
                                description="Python interpreter with nex_core and torch for training, SfM and "
                                            "baking (empty: detect)")
    base_python: StringProperty(name="Base Python", subtype="FILE_PATH",
                                description="Python 3.11 to create the environment from (empty: python3.11 on PATH)")
    project_source: StringProperty(name="Project Source", subtype="FILE_PATH",
                                   description="What to pip-install: a clone of the NeX for Blender repository "
                                               "or a wheel (empty: the checkout this add-on was built from)")
    pip_args: StringProperty(name="Extra pip Arguments",
                             description="For example --index-url for a CUDA build of torch, or --no-index "
                                         "--find-links DIR for offline wheels")
    check_summary: StringProperty(name="Check result")
    check_ok: BoolProperty(name="Check passed")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "python_path")
        candidates = python_candidates(self)
        if candidates:
            path, source = candidates[0]
            col.label(text=f"Using {path} ({source})", icon="CHECKMARK" if path.is_file() else "ERROR")
        else:
            col.label(text="No Python with nex_core found: choose one or create the environment", icon="ERROR")
        row = col.row()
        row.operator(NEX_OT_check_python.bl_idname, icon="CONSOLE")
        if self.check_summary:
            col.label(text=self.check_summary, icon="CHECKMARK" if self.check_ok else "ERROR")

        box = layout.box()
        box.label(text="Environment (venv + pip install of the project)", icon="PACKAGE")
        box.label(text=f"Location: {env_dir()}")
        box.prop(self, "base_python")
        box.prop(self, "project_source")
        box.prop(self, "pip_args")
        job = worker.get(worker.ENV_JOB)
        if job is not None and job.status.running:
            status = job.status
            box.progress(factor=status.progress, type="BAR",
                         text=f"step {job.command_index + 1}/{len(job.commands)}: {status.message[:80]}")
            box.operator(NEX_OT_cancel_environment.bl_idname, icon="CANCEL")
        else:
            box.operator(NEX_OT_create_environment.bl_idname, icon="ADD")
            if job is not None:
                if job.status.error:
                    box.label(text=job.status.error[:200], icon="ERROR")
                elif job.status.succeeded:
                    box.label(text="Environment ready: press Check", icon="CHECKMARK")


classes = (NEX_OT_check_python, NEX_OT_create_environment, NEX_OT_cancel_environment, NEX_AP_preferences)
