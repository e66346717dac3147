"""Operators that put a trained scene into Blender: Import Cameras, Import MPI, the reference render, the
imported MPI's options and Make Portable. Like the job operators (``operators``), each turns its settings
into plain options, calls a feature module and reports the domain's errors instead of raising."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import camera_import, mpi_import, shading
from .operators import _errors, _fail, _settings


class NEX_OT_import_cameras(bpy.types.Operator):
    """Add the scene's cameras as Blender cameras (named after their photos; the reference view marked)"""

    bl_idname = "nex.import_cameras"
    bl_label = "Import Cameras"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(name="Scene", subtype="DIR_PATH", description="Scene folder (default: the panel's)")
    background_images: BoolProperty(name="Photos as Backgrounds", default=True,
                                    description="Show each photo as its camera's background image")
    set_resolution: BoolProperty(name="Set Resolution", default=True,
                                 description="Set the render resolution to the photos' size")

    def execute(self, context):
        scene_dir = (Path(bpy.path.abspath(self.directory)) if self.directory
                     else _settings(context).resolved_scene_dir())
        if scene_dir is None:
            return _fail(self, "choose a scene folder first")
        try:
            result = camera_import.import_cameras(context, camera_import.CameraImportOptions(
                scene_dir, background_images=self.background_images, set_resolution=self.set_resolution))
        except _errors().NexError as exc:
            return _fail(self, str(exc))
        for w in result.warnings:
            self.report({"WARNING"}, w)
        self.report({"INFO"}, f"{len(result.cameras)} cameras; reference view: {result.reference.name}")
        return {"FINISHED"}


class NEX_OT_import_mpi(bpy.types.Operator):
    """Add the baked MPI as textured planes in front of its reference camera (Cycles and EEVEE)"""

    bl_idname = "nex.import_mpi"
    bl_label = "Import MPI"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(name="Baked MPI", subtype="DIR_PATH",
                              description="Baked MPI folder with mpi.json (default: the panel's)")
    view_dependent: BoolProperty(name="View Dependent", default=True,
                                 description="Full NeX shading (reflections move with the view); off: base colour "
                                             "only, a cheaper shader")
    linear_output: BoolProperty(name="Scene-Linear Colour", default=True,
                                description="Convert the trained sRGB colours to scene-linear (exact for MPIs trained with --compositing linear; right with the "
                                            "Standard view transform and next to your own objects)")
    filtering: EnumProperty(name="Filtering", items=shading.FILTERING_ITEMS, default="EXACT")
    cast_shadows: BoolProperty(name="Cast Shadows", default=False,
                               description="Let the MPI planes cast shadows on your objects")
    holdout: BoolProperty(name="Holdout", default=False,
                          description="Render the MPI as a holdout (transparent hole) for compositing it separately")
    pack_images: BoolProperty(name="Pack Textures", default=False,
                              description="Store the textures in the .blend (portable to other machines)")
    set_view_transform: BoolProperty(name="Set View Transform", default=False,
                                     description="Switch the scene to the view transform under which the MPI shows "
                                                 "the photographs' colours (Standard, or Raw without scene-linear "
                                                 "colour)")
    exact_pixels: BoolProperty(name="Exact Pixels", default=False,
                               description="Set the render settings under which the planes render exactly as "
                                           "nex_core renders them: a 0.01-pixel filter in Cycles and none in "
                                           "EEVEE (sharper, but your own objects lose anti-aliasing), transparent "
                                           "bounces for every plane, Cycles' denoiser off (one sample is then "
                                           "noise-free for the MPI)")
    merge_planes: IntProperty(name="Merge Planes", default=1, min=1, max=64,
                              description="Build one plane from every N consecutive planes of a layer (their "
                                          "alpha composited; N must divide the planes per layer): faster in "
                                          "Blender, exact from the reference view, less parallax elsewhere")

    def execute(self, context):
        baked = Path(bpy.path.abspath(self.directory)) if self.directory else _settings(context).resolved_baked_dir()
        if baked is None:
            return _fail(self, "choose the baked MPI folder (Bake writes <run>/baked)")
        options = mpi_import.MPIImportOptions(baked, view_dependent=self.view_dependent,
                                              linear_output=self.linear_output, filtering=self.filtering,
                                              cast_shadows=self.cast_shadows,
                                              holdout=self.holdout, pack_images=self.pack_images,
                                              set_view_transform=self.set_view_transform,
                                              merge_planes=self.merge_planes, exact_pixels=self.exact_pixels)
        try:
            result = mpi_import.import_mpi(context, options)
        except _errors().NexError as exc:
            return _fail(self, str(exc))
        for w in result.warnings:
            self.report({"WARNING"}, w)
        msg = f"{len(result.planes)} MPI planes imported as {result.rig.name}"
        if self.merge_planes > 1:
            msg += f" (merged from {result.rig['nex_planes_before_merging']})"
        if result.bounces:
            msg += (f"; Cycles transparent bounces raised from {result.bounces[0]} to {result.bounces[1]} "
                    f"(Render Properties > Light Paths) so every plane shows")
        if result.view_transform:
            msg += f"; view transform changed from {result.view_transform[0]} to {result.view_transform[1]}"
        if result.render_settings:
            msg += "; for exact pixels " + ", ".join(f"{path} {before} -> {after}"
                                                    for path, before, after in result.render_settings)
        msg += ("; Blender composites its planes exactly as they were trained" if result.exact_compositing
                else "; Blender composites its planes in another colour space than they were trained in (see "
                     "the warning)")
        self.report({"INFO"}, msg)
        for obj in context.view_layer.objects.selected:
            obj.select_set(False)
        context.view_layer.objects.active = result.rig
        result.rig.select_set(True)
        return {"FINISHED"}


def _active_rig(context):
    rig = mpi_import.rig_of(context.active_object)
    if rig is None:
        rigs = [o for o in context.scene.objects if o.get(mpi_import.RIG_TAG)]
        rig = rigs[-1] if len(rigs) >= 1 else None
    return rig


class NEX_OT_render_reference(bpy.types.Operator):
    """Render from the MPI's reference camera (at the reference image's resolution)"""

    bl_idname = "nex.render_reference"
    bl_label = "Render Reference View"

    filepath: StringProperty(name="File", subtype="FILE_PATH",
                             description="Write the render here (empty: show it in a render window)")

    @classmethod
    def poll(cls, context):
        return _active_rig(context) is not None

    def execute(self, context):
        rig = _active_rig(context)
        mpi_import.ensure_reference_camera(context.scene, rig)
        if self.filepath:
            context.scene.render.filepath = bpy.path.abspath(self.filepath)
            bpy.ops.render.render(write_still=True)
        elif bpy.app.background:
            bpy.ops.render.render()
        else:
            bpy.ops.render.render("INVOKE_DEFAULT")
        return {"FINISHED"}


class NEX_OT_mpi_options(bpy.types.Operator):
    """Change how the active MPI composites with the rest of the scene"""

    bl_idname = "nex.mpi_options"
    bl_label = "MPI Options"
    bl_options = {"REGISTER", "UNDO"}

    cast_shadows: BoolProperty(name="Cast Shadows", default=False)
    holdout: BoolProperty(name="Holdout", default=False)
    view_dependent: BoolProperty(name="View Dependent", default=True)
    view_dependence: FloatProperty(name="View Dependence", default=1.0, min=0.0, max=4.0,
                                   description="Scale of the view-dependent part (1: as trained)")

    @classmethod
    def poll(cls, context):
        return _active_rig(context) is not None

    def invoke(self, context, event):
        planes = mpi_import.planes_of(_active_rig(context))
        if planes:
            self.cast_shadows, self.holdout = planes[0].visible_shadow, planes[0].is_holdout
        return self.execute(context)

    def execute(self, context):
        rig = _active_rig(context)
        materials = set()
        for plane in mpi_import.planes_of(rig):
            mpi_import.set_plane_options(plane, self.cast_shadows, self.holdout)
            materials.update(plane.data.materials)
        for mat in materials:
            for node in shading.mpi_nodes(mat):
                if node.bl_idname == shading.NODE_IDNAME and node.view_dependent != self.view_dependent:
                    node.view_dependent = self.view_dependent
                node.inputs["View Dependence"].default_value = self.view_dependence
        return {"FINISHED"}


class NEX_OT_make_portable(bpy.types.Operator):
    """Swap NeX MPI nodes for plain node groups: the .blend then renders without this add-on (in 4.2/4.5 too)"""

    bl_idname = "nex.make_portable"
    bl_label = "Make Portable"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        count = sum(shading.make_tree_portable(tree) for tree in shading.shader_trees(bpy.data))
        self.report({"INFO"}, f"{count} NeX MPI node(s) replaced by plain node groups")
        return {"FINISHED"}


classes = (NEX_OT_import_cameras, NEX_OT_import_mpi, NEX_OT_render_reference, NEX_OT_mpi_options,
           NEX_OT_make_portable)
