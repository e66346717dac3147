"""A NeX dataset rendered from the open Blender scene: a forward-facing camera grid with exact poses.

Around the scene camera (its intrinsics at the render resolution, its pose the grid's centre) a
``cols x rows`` grid of camera centres in the camera's image plane, each jittered a little in position
and angle (seeded), renders the scene into ``images/view_XXX.png``; ``poses_bounds.npy`` (LLFF, plus
``hwf_cxcy.npy`` when the principal point is off-centre or the pixels are not square) and
``transforms.json`` (NeRF axes, with per-view ``near``/``far``) record the exact poses. Depth bounds come
from ray casts through a grid of pixels of every view (0.9 x nearest, 1.1 x farthest hit); rays that hit
nothing (open sky) are reported and the far bound is then the farthest hit times :data:`SKY_FAR_FACTOR`.

So a heavy path-traced scene becomes a scene folder ``nex train`` reads, and then a real-time MPI.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import _core, camera_import

BOUNDS_GRID = (24, 18)
NEAR_MARGIN, FAR_MARGIN = 0.9, 1.1
SKY_FAR_FACTOR = 2.0


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


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation in OpenCV camera axes: yaw about y, pitch about x, roll about z (radians)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def grid_poses(center_c2w: np.ndarray, cols: int, rows: int, span_x: float, span_y: float, jitter: float,
               angle_jitter_deg: float, seed: int) -> list[np.ndarray]:
    """OpenCV c2w poses of a jittered grid in the camera's image plane, row-major (top row first, left
    to right), all looking the centre camera's way (plus the angle jitter)."""
    rng = np.random.default_rng(seed)
    right, down = center_c2w[:3, 0], center_c2w[:3, 1]
    dx = span_x / max(cols - 1, 1)
    dy = span_y / max(rows - 1, 1)
    out = []
    for r in range(rows):
        for c in range(cols):
            jx, jy = rng.uniform(-jitter, jitter, 2)
            angles = np.radians(rng.uniform(-1.0, 1.0, 3) * np.array([1.0, 1.0, 0.5]) * angle_jitter_deg)
            m = center_c2w.copy()
            offset = (c - (cols - 1) / 2 + jx) * dx * right + (r - (rows - 1) / 2 + jy) * dy * down
            m[:3, 3] = center_c2w[:3, 3] + offset
            m[:3, :3] = center_c2w[:3, :3] @ _rotation(*angles)
            out.append(m)
    return out


def ray_depths(scene, depsgraph, cam, grid: tuple[int, int] = BOUNDS_GRID) -> tuple[np.ndarray, int]:
    """z-depths of the first hits of rays through a grid of pixel centres of ``cam`` (a nex_core
    Camera), and how many rays hit nothing."""
    nx, ny = grid
    us = (np.arange(nx) + 0.5) * cam.width / nx
    vs = (np.arange(ny) + 0.5) * cam.height / ny
    rot, origin = cam.c2w[:3, :3], cam.c2w[:3, 3]
    depths, misses = [], 0
    for v in vs:
        for u in us:
            d = rot @ np.array([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, 1.0])
            hit, loc, *_ = scene.ray_cast(depsgraph, Vector(origin), Vector(d / np.linalg.norm(d)))
            if hit:
                depths.append(float(np.dot(np.array(loc) - origin, rot[:, 2])))
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
    cameras = _core.module("cameras")
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
    span_x = options.baseline
    if span_x <= 0:
        depths, _ = ray_depths(scene, depsgraph, centre, (9, 7))
        if depths.size == 0:
            raise ValueError("the scene camera sees nothing (no ray hits any object); aim it at the scene")
        span_x = 0.15 * float(np.median(depths))
    span_y = span_x * (options.rows - 1) / max(options.cols - 1, 1) if options.rows > 1 else 0.0
    poses = grid_poses(centre.c2w, options.cols, options.rows, span_x, span_y, options.jitter,
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
            near = NEAR_MARGIN * float(depths.min())
            far = FAR_MARGIN * float(depths.max()) * (SKY_FAR_FACTOR if misses else 1.0)
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
                        f"by {SKY_FAR_FACTOR}; write planes.txt if the MPI's depth range needs a fix")
    intr = (centre.fx, centre.fy, centre.cx, centre.cy)
    write_dataset_files(out, names, poses, bounds, intr, (width, height))
    yield len(poses), len(poses), DatasetResult(out, names, poses, bounds, intr, (width, height), warnings)


def render_dataset(context, options: DatasetOptions, camera_obj=None,
                   progress: Callable[[int, int], None] | None = None) -> DatasetResult:
    """Render the whole dataset (blocking); see :func:`render_dataset_steps`."""
    result = None
    for done, total, result in render_dataset_steps(context, options, camera_obj):
        if progress is not None:
            progress(done, total)
    return result


def write_dataset_files(out: Path, names: list[str], c2ws: list[np.ndarray], bounds: list[tuple[float, float]],
                        intrinsics: tuple[float, float, float, float], size: tuple[int, int]) -> None:
    """poses_bounds.npy (+ hwf_cxcy.npy when needed) and transforms.json for the rendered views."""
    cameras = _core.module("cameras")
    fx, fy, cx, cy = intrinsics
    w, h = size
    hwf = np.array([[h], [w], [fx]], dtype=np.float64)
    rows = [np.concatenate([np.hstack([cameras.opencv_to_llff(c), hwf]).ravel(), b]) for c, b in zip(c2ws, bounds)]
    np.save(out / "poses_bounds.npy", np.array(rows, dtype=np.float64))
    if abs(cx - w / 2) > 1e-6 or abs(cy - h / 2) > 1e-6 or abs(fx - fy) > 1e-9 * fx:
        np.save(out / "hwf_cxcy.npy", np.array([[h], [w], [fx], [fy], [cx], [cy]], dtype=np.float64))
    doc = {
        "camera_angle_x": 2.0 * math.atan(w / (2.0 * fx)),
        "camera_angle_y": 2.0 * math.atan(h / (2.0 * fy)),
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": w, "h": h,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": [{"file_path": name, "transform_matrix": cameras.opencv_to_opengl(c).tolist(),
                    "near": near, "far": far} for name, c, (near, far) in zip(names, c2ws, bounds)],
    }
    (out / "transforms.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
