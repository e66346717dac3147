"""Operators of the NeX panel. Each turns its settings into plain options, calls a function of the
feature modules, and reports errors (the domain's NexError messages) instead of raising."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from . import _core, dataset_render, prefs, worker
from .properties import apply_status


def _errors():
    return _core.module("errors")


def _fail(op, message: str) -> set[str]:
    op.report({"ERROR"}, message)
    return {"CANCELLED"}


def _settings(context):
    return context.scene.nex


def _jobs():
    return _core.module("jobs")


def _run_files(run_dir: Path):
    return _core.module("run_files").RunFiles(run_dir)


def _has_checkpoint(run_dir: Path) -> bool:
    return _run_files(run_dir).has_checkpoint()


def _start_job(op, context, spec, log_path: Path | None = None, on_finish=None) -> set[str]:
    """Start the ``nex_core.io.jobs`` job ``spec`` in the background for this scene."""
    kind = spec.kind
    try:
        python = prefs.background_python(context)
        job = worker.nex_job(spec, python, log_path=log_path, on_finish=on_finish)
        worker.start(context.scene.name, job)
    except worker.JobError as exc:
        return _fail(op, str(exc))
    job_state = _settings(context).job
    apply_status(job_state, job.status)
    job_state.error = job.status.error
    if job.status.error:  # failed to launch at all
        return _fail(op, job.status.error)
    op.report({"INFO"}, f"{kind} started in the background (log: {job.log_path})")
    return {"FINISHED"}


def _job_running(context) -> bool:
    job = worker.get(context.scene.name)
    return job is not None and job.status.running


# --------------------------------------------------------------------------------------------------
# Prepare, train, resume, cancel, bake, export


class _WhenIdle:
    """Operators that start a background job: available while no job of the scene is running."""

    @classmethod
    def poll(cls, context):
        return not _job_running(context)


class NEX_OT_prepare(_WhenIdle, bpy.types.Operator):
    """Find the photos' camera poses with COLMAP (`nex prepare`) and make a scene folder for training"""

    bl_idname = "nex.prepare"
    bl_label = "Prepare"

    force: BoolProperty(name="Replace", description="Replace an existing scene folder", default=False)

    def execute(self, context):
        s = _settings(context)
        photos = Path(bpy.path.abspath(s.photos_dir)).resolve() if s.photos_dir.strip() else None
        if photos is None or not photos.is_dir():
            return _fail(self, "choose the folder of photos first")
        scene_dir = s.resolved_scene_dir() or photos.with_name(photos.name + "_scene")
        if scene_dir == photos:
            return _fail(self, "the scene folder must differ from the photo folder (Prepare writes a new folder)")
        spec = _jobs().PrepareJob(photos, scene_dir, force=self.force)
        scene_dir.parent.mkdir(parents=True, exist_ok=True)
        s.scene_dir = str(scene_dir)
        logs = Path(bpy.utils.extension_path_user(prefs.ADDON_ID, path="logs", create=True))
        return _start_job(self, context, spec, log_path=logs / _core.module("run_files").log_name(spec.kind))


class NEX_OT_train(_WhenIdle, bpy.types.Operator):
    """Train a NeX model on the scene in the background (`nex train`)"""

    bl_idname = "nex.train"
    bl_label = "Train"

    def execute(self, context):
        s = _settings(context)
        scene_dir, run_dir = s.resolved_scene_dir(), s.resolved_run_dir()
        if scene_dir is None or not scene_dir.is_dir():
            return _fail(self, "choose a scene folder (images/ plus camera poses), or Prepare one from photos")
        if _has_checkpoint(run_dir):
            return _fail(self, f"{run_dir} already holds a trained run: press Resume to continue it, or choose "
                               "another run folder")
        spec = _jobs().TrainJob(scene_dir, run_dir, preset=s.preset, layers=s.layers, sublayers=s.sublayers,
                                width=s.width, steps=0 if s.minutes > 0 else s.steps, minutes=s.minutes,
                                field=s.field_flag(), evaluate=s.evaluate)
        run_dir.mkdir(parents=True, exist_ok=True)
        s.run_dir = str(run_dir)
        return _start_job(self, context, spec)


class NEX_OT_resume(_WhenIdle, bpy.types.Operator):
    """Continue a stopped training run from its newest checkpoint (`nex train --resume`)"""

    bl_idname = "nex.resume"
    bl_label = "Resume"

    def execute(self, context):
        run_dir = _settings(context).resolved_run_dir()
        if run_dir is None or not _has_checkpoint(run_dir):
            return _fail(self, f"no checkpoint to resume in {run_dir}; press Train to start a run")
        return _start_job(self, context, _jobs().ResumeJob(run_dir, evaluate=_settings(context).evaluate))


class NEX_OT_cancel(bpy.types.Operator):
    """Stop the running job (training writes a checkpoint first, so it can be resumed)"""

    bl_idname = "nex.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return _job_running(context)

    def execute(self, context):
        if not worker.cancel(context.scene.name):
            return _fail(self, "no job is running")
        self.report({"INFO"}, "stopping; training writes a checkpoint first")
        return {"FINISHED"}


def _baked_done(scene_name: str, baked_dir: Path):
    def done(job: worker.Job) -> None:
        scene = bpy.data.scenes.get(scene_name)
        if scene is not None and job.status.succeeded:
            job.status.message = f"baked into {baked_dir}: press Import MPI"
    return done


class NEX_OT_bake(_WhenIdle, bpy.types.Operator):
    """Bake the trained run into textures (`nex bake`): what Import MPI and Export read"""

    bl_idname = "nex.bake"
    bl_label = "Bake"

    def execute(self, context):
        run_dir = _settings(context).resolved_run_dir()
        if run_dir is None or not _has_checkpoint(run_dir):
            return _fail(self, f"no trained run in {run_dir}: train first")
        spec = _jobs().BakeJob(run_dir)
        return _start_job(self, context, spec, on_finish=_baked_done(context.scene.name, spec.baked_dir))


class NEX_OT_export(_WhenIdle, bpy.types.Operator):
    """Export the baked MPI as glTF 2.0 binary (`nex export RUN --gltf FILE`)"""

    bl_idname = "nex.export"
    bl_label = "Export glTF"

    def execute(self, context):
        s = _settings(context)
        run_dir = s.resolved_run_dir()
        if run_dir is None or not (_run_files(run_dir).baked / _core.module("baked").MANIFEST).is_file():
            return _fail(self, f"no baked MPI in {run_dir}: Bake first")
        spec = _jobs().ExportJob(run_dir, Path(bpy.path.abspath(s.export_path)) if s.export_path.strip() else None)
        spec.out.parent.mkdir(parents=True, exist_ok=True)
        return _start_job(self, context, spec)


# --------------------------------------------------------------------------------------------------
# Dataset from the open scene


class NEX_OT_render_dataset(bpy.types.Operator):
    """Render a forward-facing camera grid of this scene into a NeX dataset with exact poses"""

    bl_idname = "nex.render_dataset"
    bl_label = "Render Dataset"

    directory: StringProperty(name="Folder", subtype="DIR_PATH", description="Output scene folder")
    cols: IntProperty(name="Columns", default=5, min=1, max=32)
    rows: IntProperty(name="Rows", default=4, min=1, max=32)
    baseline: FloatProperty(name="Baseline", default=0.0, min=0.0, unit="LENGTH",
                            description="Width of the camera grid (0: 15% of the median depth the camera sees)")
    jitter: FloatProperty(name="Jitter", default=0.2, min=0.0, max=0.5,
                          description="Random offset of each camera, as a fraction of the grid spacing")
    angle_jitter: FloatProperty(name="Angle Jitter", default=2.0, min=0.0, max=10.0,
                                description="Random rotation of each camera (degrees)")
    seed: IntProperty(name="Seed", default=0)
    overwrite: BoolProperty(name="Overwrite", default=False)

    _steps = None
    _timer = None

    def _options(self) -> dataset_render.DatasetOptions:
        return dataset_render.DatasetOptions(Path(bpy.path.abspath(self.directory)), self.cols, self.rows,
                                             self.baseline, self.jitter, self.angle_jitter, self.seed, self.overwrite)

    def _done(self, context, result) -> None:
        for w in result.warnings:
            self.report({"WARNING"}, w)
        context.scene.nex.scene_dir = str(result.out_dir)
        self.report({"INFO"}, f"{len(result.names)} views rendered to {result.out_dir}; it is now the panel's scene")

    def execute(self, context):
        if not self.directory:
            return _fail(self, "choose an output folder")
        try:
            wm = context.window_manager
            result = dataset_render.render_dataset(context, self._options(),
                                                   progress=lambda d, t: wm.progress_update(d))
        except (ValueError, FileExistsError, _errors().NexError) as exc:
            return _fail(self, str(exc))
        self._done(context, result)
        return {"FINISHED"}

    def invoke(self, context, event):
        if not self.directory:
            return _fail(self, "choose an output folder")
        try:
            self._steps = dataset_render.render_dataset_steps(context, self._options())
        except (ValueError, FileExistsError) as exc:
            return _fail(self, str(exc))
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._steps.close()
            self._finish(context)
            self.report({"WARNING"}, "dataset rendering stopped")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done, total, result = next(self._steps)
        except (ValueError, FileExistsError, _errors().NexError) as exc:
            self._finish(context)
            return _fail(self, str(exc))
        context.workspace.status_text_set(f"NeX dataset: {done}/{total} views (Esc stops)")
        if result is not None:
            self._finish(context)
            self._done(context, result)
            return {"FINISHED"}
        return {"RUNNING_MODAL"}

    def _finish(self, context) -> None:
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)


class NEX_OT_poll_jobs(bpy.types.Operator):
    """Read the background jobs' progress now (what the timer does every half second)"""

    bl_idname = "nex.poll_jobs"
    bl_label = "Refresh"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        worker.poll_step()
        return {"FINISHED"}


classes = (NEX_OT_prepare, NEX_OT_train, NEX_OT_resume, NEX_OT_cancel, NEX_OT_bake, NEX_OT_export,
           NEX_OT_render_dataset, NEX_OT_poll_jobs)
