"""Import a baked MPI (``nex bake``: mpi.json + PNG atlases) as scene objects.

One empty, the *rig*, at the reference camera (Blender camera axes: the MPI looks down its -Z); under
it one textured quad per plane at z = -depth, exactly covering the MPI's frustum rectangle (the
reference image plus ``offset`` texels on every side). Each plane's origin is at its centre, so EEVEE's
per-object sorting of blended surfaces draws far planes first. Planes sharing the same atlases share one
material (a NeX MPI node, see :mod:`shading`); per-plane tile offsets and the depth of the plane's
layer's first plane are custom properties read by the material's Attribute nodes.

The manifest is read with ``nex_core.io.baked.read_layout`` (no pixels decoded in Python); Blender loads
the atlases itself, as Non-Color data. The geometry, material grouping and opacity maths live in
``nex_core.io.addon.planes`` (and the material specs in ``nex_core.io.addon.shading_spec``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from . import _core, camera_import, mpi_node, shading

RIG_TAG = "nex_mpi_rig"
PLANE_TAG = "nex_mpi_plane"
BOUNCE_MARGIN = 8  # transparent bounces left for the user's own transparent objects


def _planes():
    return _core.module("addon.planes")


def _colour():
    return _core.module("addon.colour")


@dataclass
class MPIImportOptions:
    baked_dir: Path
    name: str = ""  # rig name (empty: the run folder's name)
    view_dependent: bool = True
    linear_output: bool = True
    filtering: str = "EXACT"  # see shading.FILTERING_ITEMS
    cast_shadows: bool = False
    holdout: bool = False
    pack_images: bool = False
    raise_transparent_bounces: bool = True
    set_view_transform: bool = False  # Standard (scene-linear colours) or Raw (display-referred)
    exact_pixels: bool = False  # apply colour.exact_render_settings (pixel filters, transparent bounces)
    merge_planes: int = 1  # k > 1: every k consecutive planes of a layer as one (see planes.merge_groups)


@dataclass
class MPIImportResult:
    rig: object
    planes: list
    materials: list
    collection: object
    bounces: tuple[int, int] | None  # Cycles transparent bounces (before, after) when raised
    warnings: list[str] = field(default_factory=list)
    view_transform: tuple[str, str] | None = None  # (before, after) when changed
    exact_compositing: bool = False  # Blender composites the planes as training did
    render_settings: list[tuple[str, object, object]] = field(default_factory=list)  # (path, before, after)


def import_mpi(context, options: MPIImportOptions) -> MPIImportResult:
    """Build the rig, planes and materials of the baked MPI in ``options.baked_dir``."""
    baked, planes_logic = _core.module("baked"), _planes()
    spec_logic = _core.module("addon.shading_spec")
    layout = baked.read_layout(Path(options.baked_dir))
    info = layout.info
    scene = context.scene
    warnings: list[str] = []
    name = options.name or Path(options.baked_dir).resolve().parent.name or "MPI"
    missing = [str(layout.path(t)) for t in layout.textures if not layout.path(t).is_file()]
    if missing:  # checked before anything is created, so a failed import leaves nothing behind
        raise _core.module("errors").FormatError(
            f"{missing[0]}: texture listed in {layout.root / baked.MANIFEST} is missing"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; copy the whole baked folder or "
            "bake again")
    if options.merge_planes > 1:
        planes_logic.merge_groups(info, options.merge_planes)  # refuses a bad count before anything is built

    coll = bpy.data.collections.new(f"NeX MPI {name}")
    scene.collection.children.link(coll)
    rig = bpy.data.objects.new(f"NeX MPI {name}", None)
    rig.empty_display_type = "ARROWS"
    rig.empty_display_size = 0.25 * info.depths[0]
    coll.objects.link(rig)
    rig.matrix_world = Matrix(info.ref_c2w_blender.tolist())
    rig[RIG_TAG] = True
    rig["nex_baked_dir"] = str(Path(options.baked_dir).resolve())
    rig["nex_planes"] = info.n_planes
    rig["nex_depths"] = list(info.depths)
    rig["nex_reference_camera"] = planes_logic.reference_camera_json(info)
    name = rig.name

    # Textures: each atlas once, as Non-Color data (the tree decodes the 8-bit codes itself).
    images: dict[int, str] = {}
    for index, spec in enumerate(layout.textures):
        img = bpy.data.images.load(str(layout.path(spec)), check_existing=False)
        img.name = f"{name} {spec.file}"
        img.colorspace_settings.name = "Non-Color"
        img.alpha_mode = "NONE"
        if options.pack_images:
            img.pack()
        images[index] = img.name

    opacity = reference_opacity(layout, images)
    if options.merge_planes > 1:
        _merge_alpha_images(layout, images, options.merge_planes, name)
        layout = planes_logic.merged_layout(layout, options.merge_planes)
        info = layout.info
        rig["nex_planes"], rig["nex_depths"] = info.n_planes, list(info.depths)
        rig["nex_merge_planes"] = options.merge_planes
        rig["nex_planes_before_merging"] = info.metadata["planes_before_merging"]
    if opacity is not None:
        rig["nex_mean_opacity"] = opacity
    rig["nex_compositing"] = info.compositing
    advice = _colour().colour_mode_advice(info.compositing, options.linear_output, opacity)
    if advice:
        warnings.append(advice)

    materials: dict[tuple, object] = {}
    planes = []
    for j, depth in enumerate(info.depths):
        layer, sub = divmod(j, info.sublayers)
        key = planes_logic.material_key(layout, j)
        if key not in materials:
            spec = spec_logic.shader_spec(layout, key, images, options.view_dependent, options.linear_output,
                                          options.filtering)
            group = mpi_node.new_group(f"{name} layer {layer} shader", spec, rig)
            mat, node = shading.build_material(f"{name} layer {layer}", group)
            with mpi_node.suspend_rebuild():
                node.rig, node.source = rig, rig["nex_baked_dir"]
                node.view_dependent, node.linear_output = options.view_dependent, options.linear_output
                node.filtering = options.filtering
            materials[key] = mat
        centre, verts, uvs = planes_logic.plane_mesh_data(info, depth)
        mesh = bpy.data.meshes.new(f"{name} plane {j:03d}")
        mesh.from_pydata([tuple(v) for v in verts], [], [(0, 1, 2, 3)])
        uv_layer = mesh.uv_layers.new(name="MPI")
        for loop in mesh.loops:
            uv_layer.data[loop.index].uv = tuple(uvs[loop.vertex_index])
        mesh.materials.append(materials[key])
        mesh.update()
        obj = bpy.data.objects.new(f"{name} plane {j:03d}", mesh)
        coll.objects.link(obj)
        obj.parent = rig
        obj.matrix_parent_inverse = Matrix.Identity(4)
        obj.location = tuple(centre)
        for attr, value in planes_logic.plane_attributes(layout, j).items():
            obj[attr] = value
        obj[PLANE_TAG] = j
        obj["nex_layer"], obj["nex_sublayer"], obj["nex_depth"] = layer, sub, float(depth)
        set_plane_options(obj, cast_shadows=options.cast_shadows, holdout=options.holdout)
        planes.append(obj)

    applied = apply_exact_settings(scene, info.n_planes) if options.exact_pixels else []
    bounces = None
    if options.raise_transparent_bounces and hasattr(scene, "cycles"):
        before = scene.cycles.transparent_max_bounces
        want = info.n_planes + BOUNCE_MARGIN
        if before < want:
            scene.cycles.transparent_max_bounces = want
            bounces = (before, want)
        # Below this many transparent bounces Cycles never ends a path by Russian roulette: the MPI's
        # over-compositing is then exact at one sample, not noisy.
        scene.cycles.min_transparent_bounces = max(scene.cycles.min_transparent_bounces,
                                                   min(info.n_planes, scene.cycles.transparent_max_bounces))
    elif hasattr(scene, "cycles") and scene.cycles.transparent_max_bounces < info.n_planes:
        warnings.append(f"Cycles' transparent bounces ({scene.cycles.transparent_max_bounces}) are fewer than the "
                        f"{info.n_planes} planes: far planes will render black")
    view = planes_logic.faithful_view_transform(options.linear_output)
    changed = None
    if scene.view_settings.view_transform != view:
        if options.set_view_transform:
            changed = (scene.view_settings.view_transform, view)
            scene.view_settings.view_transform = view
        else:
            warnings.append(f"this scene uses the {scene.view_settings.view_transform} view transform; the MPI shows "
                            f"the photographs' colours under {view} (Render Properties > Color Management)")
    exact = _colour().exact_in_blender(info.compositing, options.linear_output)
    return MPIImportResult(rig, planes, list(materials.values()), coll, bounces, warnings, changed, exact, applied)


def apply_exact_settings(scene, n_planes: int) -> list[tuple[str, object, object]]:
    """Set the render settings under which the MPI renders exactly as nex_core does (see
    ``io/addon/colour.exact_render_settings``) -> (path, before, after) of each one changed."""
    changed = []
    for setting in _colour().exact_render_settings(n_planes, BOUNCE_MARGIN):
        owner_path, _, attr = setting.path.rpartition(".")
        owner = getattr(scene, owner_path, None)
        if owner is None or not hasattr(owner, attr):
            continue  # e.g. Cycles not enabled in this Blender
        before = getattr(owner, attr)
        after = setting.value
        if "transparent" in attr:
            after = max(before, after)  # never lower what the user set for their own objects
        if before != after:
            setattr(owner, attr, after)
            changed.append((setting.path, before, after))
    return changed


def _atlas_codes(image) -> np.ndarray:
    """An 8-bit atlas's first channel as its 8-bit codes, [H, W] uint8, top row first (a copy: the float
    RGBA buffer Blender hands out, 16 bytes a texel, is freed at once)."""
    w, h = image.size
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return np.round(buf.reshape(h, w, image.channels)[::-1, :, 0] * 255.0).astype(np.uint8)


def _merge_alpha_images(layout, images: dict[int, str], k: int, name: str) -> None:
    """Replace the alpha atlases in ``images`` that hold merged planes by packed copies whose group-first
    tiles hold the merged alpha (``planes.merge_alpha_atlases``); drop the alpha atlases no merged plane
    reads."""
    alpha = {i: _atlas_codes(bpy.data.images[images[i]]) for i, t in enumerate(layout.textures)
             if t.kind == "alpha"}
    merged = _planes().merge_alpha_atlases(layout, alpha, k)
    for index in alpha:
        bpy.data.images.remove(bpy.data.images[images.pop(index)])
    for index, values in merged.items():
        h, w = values.shape
        img = bpy.data.images.new(f"{name} merged x{k} {layout.textures[index].file}", w, h, alpha=False)
        img.colorspace_settings.name = "Non-Color"  # before the pixels: changing it resets a generated image
        img.alpha_mode = "NONE"
        rgba = np.ones((h, w, 4), np.float32)
        rgba[..., :3] = values[::-1, :, None]  # Blender stores the bottom row first
        img.pixels.foreach_set(rgba.ravel())
        img.update()
        img.pack()  # generated pixels: kept in the .blend (as PNG), not written beside the bake
        images[index] = img.name


def reference_opacity(layout, images: dict[int, str]) -> float | None:
    """Mean accumulated alpha of the MPI seen from its reference camera, from the loaded alpha atlases
    (see ``planes.reference_opacity``); None when the MPI is too large to read back cheaply."""
    used = _planes().opacity_atlases(layout)
    if used is None:
        return None
    pixels = {}
    for index in used:
        img = bpy.data.images[images[index]]
        w, h = img.size
        if (w, h) != (layout.textures[index].width, layout.textures[index].height):
            return None
        buf = np.empty(w * h * img.channels, np.float32)
        img.pixels.foreach_get(buf)
        pixels[index] = buf.reshape(h, w, img.channels)[::-1, :, 0]  # Blender stores the bottom row first
    return _planes().reference_opacity(layout, pixels)


def set_plane_options(obj, cast_shadows: bool | None = None, holdout: bool | None = None) -> None:
    if cast_shadows is not None:
        obj.visible_shadow = cast_shadows
    if holdout is not None:
        obj.is_holdout = holdout


def rig_of(obj):
    """The MPI rig an object belongs to (the rig itself, a plane, or the reference camera), or None."""
    while obj is not None:
        if obj.get(RIG_TAG):
            return obj
        obj = obj.parent
    return None


def planes_of(rig) -> list:
    return sorted((c for c in rig.children if PLANE_TAG in c.keys()), key=lambda o: o[PLANE_TAG])


def reference_camera(rig):
    """A nex_core Camera of the rig's reference view (pose: the rig's current world matrix)."""
    cameras = _core.module("cameras")
    ref = json.loads(rig["nex_reference_camera"])
    return cameras.Camera(ref["width"], ref["height"], ref["fx"], ref["fy"], ref["cx"], ref["cy"],
                          camera_import.opencv_pose_of(rig), "reference")


def ensure_reference_camera(scene, rig):
    """The rig's reference camera object (created once, a child of the rig so it follows it); made the
    scene camera, with the render resolution of the reference image."""
    cam_obj = next((c for c in rig.children if c.type == "CAMERA" and c.get("nex_reference")), None)
    ref = reference_camera(rig)
    if cam_obj is None:
        data = bpy.data.cameras.new(f"{rig.name} reference")
        cam_obj = bpy.data.objects.new(f"{rig.name} reference", data)
        for coll in rig.users_collection:
            coll.objects.link(cam_obj)
        cam_obj.parent = rig
        cam_obj.matrix_parent_inverse = Matrix.Identity(4)
        cam_obj["nex_reference"] = True
        depths = list(rig.get("nex_depths", [0.1, 100.0]))
        data.clip_start = max(1e-4, 0.5 * depths[0])
        data.clip_end = max(data.clip_start * 10, 4.0 * depths[-1])
        data.display_size = 0.25 * depths[0]
    camera_import.apply_camera(cam_obj, ref, scene)
    cam_obj.matrix_basis = Matrix.Identity(4)  # at the rig: follows it when the rig moves
    scene.camera = cam_obj
    return cam_obj
