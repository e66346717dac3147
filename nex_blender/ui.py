"""The "NeX" tab of the 3D view's sidebar. Panels only draw; operators and the worker change state."""

from __future__ import annotations

import math
import textwrap

import bpy

from . import import_operators, mpi_import, operators, previews


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 52) -> None:
    lines = textwrap.wrap(text, width) or [""]
    for k, line in enumerate(lines[:12]):
        layout.label(text=line, icon=icon if k == 0 else "BLANK1")


def _eta(seconds: float) -> str:
    if seconds < 0 or not math.isfinite(seconds):
        return ""
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}:{s:02d} left" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d} left"


class _NexPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "NeX"


class NEX_PT_main(_NexPanel, bpy.types.Panel):
    bl_label = "NeX"

    def draw(self, context):
        s = context.scene.nex
        layout = self.layout
        layout.use_property_split = False

        box = layout.box()
        box.label(text="Scene", icon="IMAGE_DATA")
        row = box.row(align=True)
        row.prop(s, "photos_dir", text="Photos")
        row.operator(operators.NEX_OT_prepare.bl_idname, text="", icon="CAMERA_DATA")
        box.prop(s, "scene_dir", text="Scene")
        box.operator(import_operators.NEX_OT_import_cameras.bl_idname, icon="OUTLINER_OB_CAMERA")

        box = layout.box()
        box.label(text="Training", icon="PLAY")
        box.prop(s, "preset")
        box.label(text=s.effective_summary(), icon="SETTINGS")
        col = box.column(align=True)
        row = col.row(align=True)
        row.prop(s, "layers")
        row.prop(s, "sublayers")
        row = col.row(align=True)
        row.prop(s, "width")
        sub = row.row(align=True)
        sub.active = s.minutes <= 0  # a time budget sets the steps
        sub.prop(s, "steps")
        col.prop(s, "minutes")
        col.prop(s, "network")
        box.prop(s, "run_dir", text="Run")
        box.prop(s, "evaluate")
        row = box.row(align=True)
        row.operator(operators.NEX_OT_train.bl_idname, icon="PLAY")
        row.operator(operators.NEX_OT_cancel.bl_idname, icon="CANCEL")
        row.operator(operators.NEX_OT_resume.bl_idname, icon="FILE_REFRESH")

        self.draw_job(layout, s.job)

        box = layout.box()
        box.label(text="MPI", icon="RENDERLAYERS")
        row = box.row(align=True)
        row.operator(operators.NEX_OT_bake.bl_idname, icon="TEXTURE")
        row.operator(import_operators.NEX_OT_import_mpi.bl_idname, icon="IMPORT")
        box.prop(s, "baked_dir", text="Baked")
        box.operator(import_operators.NEX_OT_render_reference.bl_idname, icon="RENDER_STILL")
        row = box.row(align=True)
        row.prop(s, "export_path", text="")
        row.operator(operators.NEX_OT_export.bl_idname, icon="EXPORT")

    @staticmethod
    def draw_job(layout, job) -> None:
        if not job.kind:
            return
        box = layout.box()
        title = f"{job.kind.capitalize()}: {job.phase}" if job.phase else job.kind.capitalize()
        box.label(text=title, icon="SORTTIME" if job.running else ("ERROR" if job.error else "CHECKMARK"))
        if job.running or job.progress > 0:
            text = f"{job.step}/{job.steps}" if job.steps else f"{job.progress:.0f}%"
            if job.running and job.eta_s >= 0:
                text += f"  {_eta(job.eta_s)}"
            box.progress(factor=job.progress / 100.0, type="BAR", text=text)
        if job.kind == "train":
            col = box.column(align=True)
            if not math.isnan(job.loss):
                col.label(text=f"Loss {job.loss:.5f}   PSNR {job.psnr:.2f} dB")
            if not math.isnan(job.test_psnr):
                col.label(text=f"Held-out PSNR {job.test_psnr:.2f} dB")
            icon = previews.preview_icon(job.preview_path)
            if icon:
                box.template_icon(icon_value=icon, scale=8.0)
        if job.message:
            _wrapped(box, job.message, "INFO")
        if job.error:
            _wrapped(box, job.error, "ERROR")
            if job.log_path:
                _wrapped(box, f"log: {job.log_path}", "TEXT")


class NEX_PT_mpi_object(_NexPanel, bpy.types.Panel):
    bl_label = "MPI Object"
    bl_parent_id = "NEX_PT_main"

    @classmethod
    def poll(cls, context):
        return mpi_import.rig_of(context.active_object) is not None

    def draw(self, context):
        rig = mpi_import.rig_of(context.active_object)
        layout = self.layout
        layout.label(text=f"{rig.name}: {rig.get('nex_planes', '?')} planes", icon="EMPTY_ARROWS")
        planes = mpi_import.planes_of(rig)
        if planes:
            p = planes[0]
            on = {True: "on", False: "off"}
            layout.label(text=f"Shadows {on[p.visible_shadow]}, holdout {on[p.is_holdout]}")
        layout.operator(import_operators.NEX_OT_mpi_options.bl_idname, icon="PREFERENCES")
        layout.operator(import_operators.NEX_OT_render_reference.bl_idname, icon="RENDER_STILL")
        layout.operator(import_operators.NEX_OT_make_portable.bl_idname, icon="PACKAGE")
        scene = context.scene
        if hasattr(scene, "cycles"):
            layout.prop(scene.cycles, "transparent_max_bounces", text="Cycles Transparent Bounces")


class NEX_PT_dataset(_NexPanel, bpy.types.Panel):
    bl_label = "Dataset from This Scene"
    bl_parent_id = "NEX_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.nex
        layout = self.layout
        layout.label(text="A camera grid around the scene camera", icon="OUTLINER_OB_CAMERA")
        layout.prop(s, "dataset_dir", text="Folder")
        row = layout.row(align=True)
        row.prop(s, "dataset_cols")
        row.prop(s, "dataset_rows")
        row = layout.row(align=True)
        row.prop(s, "dataset_baseline")
        row.prop(s, "dataset_jitter")
        op = layout.operator(operators.NEX_OT_render_dataset.bl_idname, icon="RENDER_ANIMATION")
        op.directory = s.dataset_dir
        op.cols, op.rows = s.dataset_cols, s.dataset_rows
        op.baseline, op.jitter = s.dataset_baseline, s.dataset_jitter


classes = (NEX_PT_main, NEX_PT_mpi_object, NEX_PT_dataset)
