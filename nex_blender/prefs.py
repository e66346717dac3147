"""Add-on preferences: the Python that runs training, SfM and baking, and creating it.

Blender's own Python never imports torch. Background work runs in another interpreter that has nex_core
and torch: chosen here, or detected (this add-on's own environment, then the Python behind a ``nex``
command on PATH). **Check** asks it (``nex doctor --json``) and shows the nex_core and torch versions,
what is missing and whether CUDA is there;
**Create Environment** makes a virtual environment in the add-on's user folder
(``bpy.utils.extension_path_user``, never inside Blender's installation) with torch (CPU, CUDA or a custom
index) and the project's wheel from the zip, beside the current one, with progress and Cancel
(``environment.py``). It goes online only with Blender's *Allow Online Access* on, or installs offline
from a local wheel folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import _core, environment, worker

ADDON_ID = __package__
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
    """The add-on's active environment (in its user folder; see environment.py)."""
    return environment.active_env(environment.user_folder(create=create))


venv_python = environment.venv_python


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


project_source = environment.project_source
base_python = environment.base_python


def environment_job(prefs) -> worker.Job:
    """The job that creates the add-on's environment (see environment.plan)."""
    return environment.job(environment.plan(prefs))


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

    def _plan(self, context):
        try:
            return environment.plan(get_prefs(context))
        except worker.JobError as exc:
            self.report({"ERROR"}, str(exc))
            return None

    def invoke(self, context, event):
        plan = self._plan(context)
        if plan is None:
            return {"CANCELLED"}
        if plan.online and not bpy.app.online_access:
            return self.execute(context)  # (reports why and what else to do)
        return context.window_manager.invoke_confirm(self, event, title="Create Environment",
                                                     message=f"This {plan.download_text()}.",
                                                     confirm_text="Install")

    def execute(self, context):
        plan = self._plan(context)
        if plan is None:
            return {"CANCELLED"}
        if plan.online and not bpy.app.online_access:
            self.report({"ERROR"}, environment.offline_advice(plan))
            return {"CANCELLED"}
        try:
            worker.start(worker.ENV_JOB, environment.job(plan))
        except worker.JobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"creating the environment in {plan.staging}: it {plan.download_text()}")
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
    torch_variant: EnumProperty(name="PyTorch", items=environment.VARIANTS, default="AUTO",
                                description="Which build of PyTorch Create Environment installs")
    torch_index_url: StringProperty(name="Index URL",
                                    description="Package index with torch, for the Custom index choice")
    wheel_folder: StringProperty(name="Wheel Folder", subtype="DIR_PATH",
                                 description="Install offline from this folder of wheels (pip --no-index "
                                             "--find-links); empty: download from the package index")
    project_source: StringProperty(name="Project Source", subtype="FILE_PATH",
                                   description="What to pip-install as nex_core: a wheel or a clone of the "
                                               "repository (empty: the wheel inside this extension)")
    pip_args: StringProperty(name="Extra pip Arguments",
                             description="Passed to each pip install, e.g. --proxy URL")
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
        box.label(text="Environment (venv + PyTorch + the project's wheel)", icon="PACKAGE")
        box.label(text=f"Location: {env_dir()}")
        box.prop(self, "torch_variant")
        if self.torch_variant == "CUSTOM":
            box.prop(self, "torch_index_url")
        box.prop(self, "wheel_folder")
        sub = box.column()
        sub.prop(self, "base_python")
        sub.prop(self, "project_source")
        sub.prop(self, "pip_args")
        job = worker.get(worker.ENV_JOB)
        if job is not None and job.status.running:
            status = job.status
            box.progress(factor=status.progress, type="BAR",
                         text=f"step {job.command_index + 1}/{len(job.commands)}: {status.message[:80]}")
            box.operator(NEX_OT_cancel_environment.bl_idname, icon="CANCEL")
            return
        _draw_plan(box, self)
        box.operator(NEX_OT_create_environment.bl_idname, icon="ADD")
        if job is not None:
            if job.status.error:
                box.label(text=job.status.error[:200], icon="ERROR")
            elif job.status.succeeded:
                box.label(text="Environment ready: press Check", icon="CHECKMARK")


def _draw_plan(box, prefs) -> None:
    """What Create Environment would do: the download, the GPU found, and the offline alternatives."""
    try:
        plan = environment.plan(prefs)
    except worker.JobError as exc:
        box.label(text=str(exc)[:200], icon="ERROR")
        return
    for note in plan.notes:
        box.label(text=note, icon="INFO")
    box.label(text=f"It {plan.download_text()}", icon="URL" if plan.online else "FILE_FOLDER")
    if plan.online and not bpy.app.online_access:
        col = box.column(align=True)
        col.label(text="Online access is off (Preferences > System > Network). Instead:", icon="ERROR")
        col.label(text="  allow online access, or set 'Python' above to an existing interpreter,")
        col.label(text="  or set 'Wheel Folder' to a folder of wheels to install offline")


classes = (NEX_OT_check_python, NEX_OT_create_environment, NEX_OT_cancel_environment, NEX_AP_preferences)
