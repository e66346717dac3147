"""Camera rigs of the suite (OpenCV camera-to-world matrices, world z up, looking roughly along +y):
the forward-facing jittered grid the shipped scene uses, and a phone-like hand-held sweep. numpy only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nex_core.io.cameras import look_at_opencv


@dataclass(frozen=True)
class Rig:
    """Where a scene's cameras stand: centre, pitch, and the extent of the grid / sweep."""

    center: tuple[float, float, float] = (0.0, 0.0, 1.2)
    pitch_deg: float = -8.0
    baseline: tuple[float, float] = (0.5, 0.35)  # horizontal / vertical span (world units)
    target_depth: float = 3.0  # distance to the point the hand-held camera keeps aiming at


def rotation_ypr(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """A rotation in OpenCV camera axes: yaw about y (down), pitch about x, roll about z."""
    a, b, c = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _base(rig: Rig) -> np.ndarray:
    pitch = math.radians(rig.pitch_deg)
    return look_at_opencv(np.array(rig.center), np.array([0.0, math.cos(pitch), math.sin(pitch)]),
                          np.array([0.0, 0.0, -1.0]))


def grid_shape(n_views: int) -> tuple[int, int]:
    """(cols, rows) of a roughly 4:3 grid holding at least ``n_views``."""
    rows = max(1, round(math.sqrt(n_views * 0.75)))
    return math.ceil(n_views / rows), rows


def camera_grid(rig: Rig, n_views: int, seed: int = 0) -> list[np.ndarray]:
    """The first ``n_views`` of a jittered forward-facing grid, row-major (top row first, left to right)."""
    cols, rows = grid_shape(n_views)
    base = _base(rig)
    rng = np.random.default_rng(seed)
    dx = rig.baseline[0] / max(cols - 1, 1)
    dy = rig.baseline[1] / max(rows - 1, 1)
    poses = []
    for row in range(rows):
        for col in range(cols):
            jx, jy = rng.uniform(-0.2, 0.2, 2)
            jz = rng.uniform(-0.03, 0.03)
            c2w = base.copy()
            c2w[:3, 3] = (np.array(rig.center) + (col - (cols - 1) / 2 + jx) * dx * base[:3, 0]
                          + (row - (rows - 1) / 2 + jy) * dy * base[:3, 1] + jz * base[:3, 2])
            c2w[:3, :3] = base[:3, :3] @ rotation_ypr(*(rng.uniform(-1, 1, 3) * [2.0, 2.0, 1.0]))
            poses.append(c2w)
    return poses[:n_views]


def handheld_path(rig: Rig, n_views: int, seed: int = 0) -> list[np.ndarray]:
    """A hand-held sweep: left to right across the baseline at an uneven pace, the height drifting in a
    slow wave, the distance to the subject wobbling, the camera re-aimed at the subject every shot with
    yaw/pitch/roll wobble (a few degrees, smooth plus shake)."""
    rng = np.random.default_rng(seed)
    base = _base(rig)
    right, down, fwd = base[:3, 0], base[:3, 1], base[:3, 2]
    center = np.array(rig.center)
    target = center + rig.target_depth * fwd
    steps = rng.uniform(0.6, 1.4, n_views)
    s = np.concatenate([[0.0], np.cumsum(steps[1:])])
    s = s / s[-1] - 0.5 if n_views > 1 else np.zeros(1)  # -0.5 .. 0.5 across the sweep
    phase = rng.uniform(0, 2 * math.pi, 4)
    t = 2 * math.pi * (s + 0.5)
    height = 0.5 * rig.baseline[1] * np.sin(0.8 * t + phase[0])
    depth = 0.04 * rig.target_depth * np.sin(1.3 * t + phase[1]) + rng.normal(0, 0.01 * rig.target_depth, n_views)
    poses = []
    for k in range(n_views):
        pos = center + s[k] * rig.baseline[0] * right + height[k] * down + depth[k] * fwd
        aim = look_at_opencv(pos, target - pos, np.array([0.0, 0.0, -1.0]))
        wobble = (np.array([2.0 * math.sin(t[k] + phase[2]), 1.5 * math.sin(1.7 * t[k] + phase[3]),
                            2.0 * math.sin(0.9 * t[k] + phase[2] + 1.0)]) + rng.normal(0, 0.5, 3))
        c2w = aim.copy()
        c2w[:3, :3] = aim[:3, :3] @ rotation_ypr(*wobble)
        poses.append(c2w)
    return poses
