"""The bpy side of the suite: Cycles settings, the camera, calibration markers, linear renders, depth bounds.

Renders go to 32-bit float OpenEXR (scene-linear, no view transform) and are read back through
``bpy.data.images``, so the phone pipeline works on honest linear light; the plain variant applies the
sRGB curve itself (what the Standard view transform does).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import bpy
import render_demo_scene as demo  # tools/: the shared bpy helpers
from mathutils import Vector

from suite.truth import MARKER_RADIUS_PX, MARKER_RING

BOUNDS_GRID = (24, 18)
NEAR_MARGIN, FAR_MARGIN = 0.9, 1.1


def configure(scene: bpy.types.Scene, width: int, height: int, samples: int, denoise: bool, threads: int,
              seed: int = 1) -> None:
    """Deterministic Cycles on the CPU, float EXR output."""
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = samples
    cyc.use_adaptive_sampling = False
    cyc.seed = seed
    cyc.use_animated_seed = False
    cyc.use_guiding = False
    cyc.max_bounces, cyc.diffuse_bounces, cyc.glossy_bounces = 12, 2, 6
    cyc.transmission_bounces, cyc.transparent_max_bounces = 12, 16
    cyc.caustics_reflective = cyc.caustics_refractive = False
    cyc.blur_glossy = 0.5
    cyc.sample_clamp_indirect = 10.0
    cyc.use_denoising = denoise
    if denoise:
        cyc.denoiser = "OPENIMAGEDENOISE"
        cyc.denoising_use_gpu = False
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.threads_mode = "FIXED"
    r.threads = threads
    r.film_transparent = False
    r.use_persistent_data = True
    img = r.image_settings
    img.file_format = "OPEN_EXR"
    img.color_mode = "RGB"
    img.color_depth = "32"
    img.exr_codec = "ZIP"


def set_camera(scene: bpy.types.Scene, width: int, focal_px: float) -> bpy.types.Object:
    """The scene's pinhole camera (principal point at the frame centre), created once and re-used."""
    cam = scene.camera
    if cam is None:
        data = bpy.data.cameras.new("camera")
        data.sensor_fit = "HORIZONTAL"
        data.sensor_width = 36.0
        data.clip_start, data.clip_end = 0.02, 1000.0
        cam = bpy.data.objects.new("camera", data)
        scene.collection.objects.link(cam)
        scene.camera = cam
    cam.data.lens = focal_px * cam.data.sensor_width / width
    return cam


def flat_material(name: str, rgb: tuple[float, float, float], strength: float = 1.0) -> bpy.types.Material:
    """An Emission material of one colour (black: a surface that neither emits nor reflects)."""
    mat, tree, bsdf = demo.new_material(name)
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (*rgb, 1.0)
    emit.inputs["Strength"].default_value = strength
    tree.links.new(emit.outputs["Emission"], tree.nodes.get("Material Output").inputs["Surface"])
    if bsdf is not None:
        tree.nodes.remove(bsdf)
    return mat


def add_markers(markers: list, eye: np.ndarray, focal_px: float) -> None:
    """A calibration sticker at each (point, normal): a white emissive disc on a larger black one, flat on
    the surface, its radius MARKER_RADIUS_PX in the final frame as seen from ``eye``."""
    white, black = flat_material("marker_white", (1.0, 1.0, 1.0)), flat_material("marker_black", (0.0, 0.0, 0.0))
    for k, (point, normal) in enumerate(markers):
        p, n = np.asarray(point, dtype=np.float64), np.asarray(normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        dist = float(np.linalg.norm(eye - p))
        radius = MARKER_RADIUS_PX * dist / focal_px
        rot = Vector(n).to_track_quat("Z", "Y").to_euler()
        for name, mat, r, back in (("marker_back", black, MARKER_RING * radius, 0.0004 * dist),
                                   ("marker", white, radius, 0.0)):
            bpy.ops.mesh.primitive_circle_add(vertices=32, radius=r, fill_type="NGON",
                                              location=tuple(p - back * n), rotation=rot)
            obj = bpy.context.active_object
            obj.name = f"{name}_{k}"
            obj.data.materials.append(mat)


def marker_visibility(scene: bpy.types.Scene, origin: np.ndarray, markers: list) -> list[int]:
    """Indices of the markers seen whole from ``origin``: rays to the centre and to 8 points around the
    edge of the black backing disc reach that marker first."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    seen = []
    for k, obj in enumerate(_marker_objects(markers)):
        white, back = obj
        world = np.array(back.matrix_world, dtype=np.float64)
        radius = float(back.data.vertices[0].co.length)
        ring = [world[:3, :3] @ (0.95 * radius * np.array([np.cos(a), np.sin(a), 0.0])) + world[:3, 3]
                for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
        ok = True
        for target in [np.array(white.location, dtype=np.float64), *ring]:
            d = target - origin
            hit, _, _, _, hit_obj, _ = scene.ray_cast(depsgraph, Vector(origin), Vector(d / np.linalg.norm(d)))
            if not hit or hit_obj.name not in (white.name, back.name):
                ok = False
                break
        if ok:
            seen.append(k)
    return seen


def _marker_objects(markers: list) -> list[tuple[bpy.types.Object, bpy.types.Object]]:
    return [(bpy.data.objects[f"marker_{k}"], bpy.data.objects[f"marker_back_{k}"]) for k in range(len(markers))]


def depth_bounds(scene: bpy.types.Scene, c2w: np.ndarray, width: int, height: int,
                 focal: float) -> tuple[float, float]:
    """(near, far) from ray casts through a grid of pixel centres: 0.9 x the least and 1.1 x the largest
    z-depth. A ray that hits nothing is an error: suite scenes are closed by a far backdrop."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    rot, origin = c2w[:3, :3], c2w[:3, 3]
    depths = []
    for v in (np.arange(BOUNDS_GRID[1]) + 0.5) * height / BOUNDS_GRID[1]:
        for u in (np.arange(BOUNDS_GRID[0]) + 0.5) * width / BOUNDS_GRID[0]:
            d = rot @ np.array([(u - width / 2) / focal, (v - height / 2) / focal, 1.0])
            hit, loc, *_ = scene.ray_cast(depsgraph, Vector(origin), Vector(d / np.linalg.norm(d)))
            if not hit:
                raise RuntimeError(f"a ray through pixel ({u:.0f}, {v:.0f}) hit nothing: close the scene")
            depths.append(float(np.dot(np.array(loc) - origin, rot[:, 2])))
    return NEAR_MARGIN * min(depths), FAR_MARGIN * max(depths)


def render_linear(scene: bpy.types.Scene, exr: Path, quiet: bool = True) -> np.ndarray:
    """Render the current camera; returns its scene-linear RGB [H, W, 3] float32, top row first."""
    exr.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(exr)
    with demo.quiet_stdout(quiet):
        bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(exr))
    try:
        w, h = image.size
        pixels = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    exr.unlink()
    return np.ascontiguousarray(pixels.reshape(h, w, 4)[::-1, :, :3])


def fov_deg(width: int, focal: float) -> float:
    return math.degrees(2 * math.atan(width / (2 * focal)))
