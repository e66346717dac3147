"""A NeX dataset from a rendered camera grid: the grid's poses, the rays that measure each view's depth
bounds, the bounds, and the scene folder's pose files.

Around a centre camera, a ``cols x rows`` grid of camera centres in its image plane, each jittered a
little in position and angle (seeded). Depth bounds come from first hits of rays through a grid of pixel
centres (0.9 x nearest, 1.1 x farthest hit); when some rays hit nothing (open sky) the far bound is the
farthest hit times :data:`SKY_FAR_FACTOR`. ``poses_bounds.npy`` (LLFF, plus ``hwf_cxcy.npy`` when the
principal point is off-centre or the pixels are not square) and ``transforms.json`` (NeRF axes, with
per-view ``near``/``far``) record the exact poses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..cameras import Camera, opencv_to_llff, opencv_to_opengl
from ..scene.llff import INTRINSICS_FILE, POSES_FILE
from ..scene.transforms_json import SINGLE_FILE

BOUNDS_GRID = (24, 18)
BASELINE_GRID = (9, 7)  # rays of the centre view that choose the grid's width when none is given
BASELINE_FRACTION = 0.15  # of the median depth the centre view sees
NEAR_MARGIN, FAR_MARGIN = 0.9, 1.1
SKY_FAR_FACTOR = 2.0


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation in OpenCV camera axes: yaw about y, pitch about x, roll about z (radians)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def grid_spans(cols: int, rows: int, baseline: float, median_depth: float | None = None) -> tuple[float, float]:
    """(horizontal, vertical) extent of the grid: ``baseline`` wide, or a fraction of the median depth
    when ``baseline`` is 0; as tall as the same spacing gives ``rows``."""
    span_x = baseline if baseline > 0 else BASELINE_FRACTION * float(median_depth)
    span_y = span_x * (rows - 1) / max(cols - 1, 1) if rows > 1 else 0.0
    return span_x, span_y


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
            m[:3, :3] = center_c2w[:3, :3] @ rotation(*angles)
            out.append(m)
    return out


def bounds_rays(cam: Camera, grid: tuple[int, int] = BOUNDS_GRID) -> tuple[np.ndarray, list[np.ndarray]]:
    """(origin, unit directions) of rays through a ``grid`` of pixel centres of ``cam``, row by row."""
    nx, ny = grid
    us = (np.arange(nx) + 0.5) * cam.width / nx
    vs = (np.arange(ny) + 0.5) * cam.height / ny
    rot = cam.c2w[:3, :3]
    dirs = []
    for v in vs:
        for u in us:
            d = rot @ np.array([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, 1.0])
            dirs.append(d / np.linalg.norm(d))
    return cam.c2w[:3, 3], dirs


def z_depth(cam: Camera, point) -> float:
    """The depth of a world point along the camera's viewing axis."""
    return float(np.dot(np.array(point) - cam.c2w[:3, 3], cam.c2w[:3, 2]))


def view_bounds(depths: np.ndarray, misses: int) -> tuple[float, float]:
    """(near, far) of a view from its rays' hit depths and how many rays hit nothing."""
    near = NEAR_MARGIN * float(depths.min())
    far = FAR_MARGIN * float(depths.max()) * (SKY_FAR_FACTOR if misses else 1.0)
    return near, far


def write_dataset_files(out: Path, names: list[str], c2ws: list[np.ndarray], bounds: list[tuple[float, float]],
                        intrinsics: tuple[float, float, float, float], size: tuple[int, int]) -> None:
    """poses_bounds.npy (+ hwf_cxcy.npy when needed) and transforms.json for the rendered views."""
    fx, fy, cx, cy = intrinsics
    w, h = size
    hwf = np.array([[h], [w], [fx]], dtype=np.float64)
    rows = [np.concatenate([np.hstack([opencv_to_llff(c), hwf]).ravel(), b]) for c, b in zip(c2ws, bounds)]
    np.save(out / POSES_FILE, np.array(rows, dtype=np.float64))
    if abs(cx - w / 2) > 1e-6 or abs(cy - h / 2) > 1e-6 or abs(fx - fy) > 1e-9 * fx:
        np.save(out / INTRINSICS_FILE, np.array([[h], [w], [fx], [fy], [cx], [cy]], dtype=np.float64))
    doc = {
        "camera_angle_x": 2.0 * math.atan(w / (2.0 * fx)),
        "camera_angle_y": 2.0 * math.atan(h / (2.0 * fy)),
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": w, "h": h,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": [{"file_path": name, "transform_matrix": opencv_to_opengl(c).tolist(),
                    "near": near, "far": far} for name, c, (near, far) in zip(names, c2ws, bounds)],
    }
    (out / SINGLE_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
