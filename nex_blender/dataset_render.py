"""A NeX dataset rendered from the open Blender scene: a forward-facing camera grid with exact poses.

Around the scene camera (its intrinsics at the render resolution, its pose the grid's centre) a
``cols x rows`` grid of camera centres in the camera's image plane, each jittered a little in position
and angle (seeded), renders the scene into ``images/view_XXX.png``; ``poses_bounds.npy`` (LLFF, plus
``hwf_cxcy.npy`` when the principal point is off-centre or the pixels are not square) and
``transforms.json`` (NeRF axes, with per-view ``near``/``far``) record the exact poses. Depth bounds come
from ray casts through a grid of pixels of every view (0.9 x nearest, 1.1 x farthest hit); rays that hit
nothing (open sky) are reported and the far bound is then the farthest hit times ``SKY_FAR_FACTOR``.

So a heavy path-traced scene becomes a scene folder ``nex train`` reads, and then a real-time MPI. The
grid, bounds and pose files are computed by ``nex_core.io.addon.dataset``; this module renders and ray-casts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import _core, camera_import


def _logic():
    return _core.module("addon.dataset")


@dataclass
class DatasetOptions:
    out_dir: Path
    cols: int = 5
    rows: int = 4
    baseline: float = 0.0  # total horizontal span of the grid in scene units (0: 15% of the median depth)
    jitter: float = 0.2  # position jitter as a fraction of the grid spacing
    angle_jitter_deg: float = 2.0  # rotation jitter (yaw, pitch; roll half of it)
    seed: int = 0
    overwrite: bool = False


@dataclass
class DatasetResult:
    out_dir: Path
    names: list[str]
    c2ws: list[np.ndarray]  # OpenCV camera-to-world of every view
    bounds: list[tuple[float, float]]
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy
    size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


def ray_depths(scene, depsgraph, cam, grid: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """z-depths of the first hits of rays through a grid of pixel centres of ``cam`` (a nex_core
    Camera; default grid: ``BOUNDS_GRID``), and how many rays hit nothing."""
    logic = _logic()
    origin, dirs = logic.bounds_rays(cam, grid or logic.BOUNDS_GRID)
    depths, misses = [], 0
    for d in dirs:
        hit, loc, *_ = scene.ray_cast(depsgraph, Vector(origin), Vector(d))
        if hit:
            depths.append(logic.z_depth(cam, loc))
        else:
            misses += 1
    return np.array(depths), misses


def render_dataset_steps(context, options: DatasetOptions,
                         camera_obj=None) -> Iterator[tuple[int, int, DatasetResult | None]]:
    """Render the dataset one view per step: yields (done, total, None) after each view and finally
    (total, total, result). Restores the scene's camera and output settings when it ends (also on error
    or when the caller stops iterating)."""
    scene = context.scene
    camera_obj = camera_obj or scene.camera
    if camera_obj is None or camera_obj.type != "CAMERA":
        raise ValueError("the scene has no active camera: add one and point it at what to capture")
    cameras, logic = _core.module("cameras"), _logic()
    out = Path(options.out_dir)
    images_dir = out / "images"
    if images_dir.exists() and any(images_dir.iterdir()) and not options.overwrite:
        raise FileExistsError(f"{images_dir} already has files; choose an empty folder or allow overwriting")
    if options.cols * options.rows < 2:
        raise ValueError("the grid needs at least 2 views (NeX needs 12 or more)")
    r = scene.render
    width = int(r.resolution_x * r.resolution_percentage / 100)
    height = int(r.resolution_y * r.resolution_percentage / 100)
    centre = camera_import.camera_for(camera_obj, width, height, scene)
    depsgraph = context.evaluated_depsgraph_get()
    warnings = []
    median_depth = None
    if options.baseline <= 0:
        depths, _ = ray_depths(scene, depsgraph, centre, logic.BASELINE_GRID)
        if depths.size == 0:
            raise ValueError("the scene camera sees nothing (no ray hits any object); aim it at the scene")
        median_depth = float(np.median(depths))
    span_x, span_y = logic.grid_spans(options.cols, options.rows, options.baseline, median_depth)
    poses = logic.grid_poses(centre.c2w, options.cols, options.rows, span_x, span_y, options.jitter,
                             options.angle_jitter_deg, options.seed)

    rig_cam = bpy.data.objects.new("NeX dataset camera", camera_obj.data)
    scene.collection.objects.link(rig_cam)
    saved = (scene.camera, r.filepath, r.image_settings.file_format, r.image_settings.color_mode,
             r.image_settings.color_depth, r.use_file_extension)
    names, bounds = [], []
    try:
        scene.camera = rig_cam
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        r.use_file_extension = True
        images_dir.mkdir(parents=True, exist_ok=True)
        total_misses = 0
        for i, c2w in enumerate(poses):
            rig_cam.matrix_world = Matrix(cameras.opencv_to_opengl(c2w).tolist())
            context.view_layer.update()
            cam = cameras.Camera(width, height, centre.fx, centre.fy, centre.cx, centre.cy, c2w)
            depths, misses = ray_depths(scene, context.evaluated_depsgraph_get(), cam)
            if depths.size == 0:
                raise ValueError(f"view {i} sees nothing: every bounds ray missed the scene")
            total_misses += misses
            near, far = logic.view_bounds(depths, misses)
            name = f"view_{i:03d}.png"
            r.filepath = str(images_dir / name)
            bpy.ops.render.render(write_still=True)
            names.append(f"images/{name}")
            bounds.append((near, far))
            yield i + 1, len(poses), None
    finally:
        scene.camera, r.filepath = saved[0], saved[1]
        r.image_settings.file_format, r.image_settings.color_mode = saved[2], saved[3]
        r.image_settings.color_depth, r.use_file_extension = saved[4], saved[5]
        bpy.data.objects.remove(rig_cam)
    if total_misses:
        warnings.append(f"{total_misses} bounds rays hit nothing (open background): far bounds were multiplied "
                        f"by {logic.SKY_FAR_FACTOR}; write planes.txt if the MPI's depth range needs a fix")
    intr = (centre.fx, centre.fy, centre.cx, centre.cy)
    logic.write_dataset_files(out, names, poses, bounds, intr, (width, height))
    yield len(poses), len(poses), DatasetResult(out, names, poses, bounds, intr, (width, height), warnings)


def render_dataset(context, options: DatasetOptions, camera_obj=None,
                   progress: Callable[[int, int], None] | None = None) -> DatasetResult:
    """Render the whole dataset (blocking); see :func:`render_dataset_steps`."""
    result = None
    for done, total, result in render_dataset_steps(context, options, camera_obj):
        if progress is not None:
            progress(done, total)
    return result
