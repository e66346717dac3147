"""Pinhole cameras and the coordinate conventions NeX for Blender uses.

Torch-free (numpy only): the Blender add-on imports this module.

Conventions, used everywhere inside nex_core:

* **Camera frame: OpenCV** — x right, y down, z forward (the camera looks along +z).
* **Pose: camera-to-world** 4x4 matrix ``c2w``; the world frame is whatever the scene's loader gives.
* **Pixels**: pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``, so its centre is at
  ``(col + 0.5, row + 0.5)``; ``cx, cy`` use that convention (COLMAP's). Resizing an image by a factor
  ``s`` then scales ``fx, fy, cx, cy`` all by ``s`` exactly.

Other conventions converted here: OpenGL/Blender/NeRF cameras (x right, y up, z backward) and the LLFF
``poses_bounds.npy`` layout (rotation columns down, right, backward).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Flips y and z: OpenCV camera axes <-> OpenGL/Blender camera axes (an involution).
_CV_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics in pixels plus an OpenCV camera-to-world pose."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    c2w: np.ndarray = field(repr=False)  # [4, 4] float64, OpenCV axes
    name: str = ""

    def __post_init__(self) -> None:
        c2w = np.asarray(self.c2w, dtype=np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
        if c2w.shape != (4, 4):
            raise ValueError(f"camera {self.name!r}: c2w must be 3x4 or 4x4, got {c2w.shape}")
        object.__setattr__(self, "c2w", c2w)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def w2c(self) -> np.ndarray:
        """4x4 world-to-camera matrix."""
        return invert_pose(self.c2w)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, [3]."""
        return self.c2w[:3, 3].copy()

    def resized(self, width: int, height: int | None = None) -> "Camera":
        """The same camera for an image resized to ``width`` (and ``height``, default: keep aspect)."""
        sx = width / self.width
        if height is None:
            height = int(round(self.height * sx))
        sy = height / self.height
        return replace(self, width=int(width), height=int(height),
                       fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy)

    def with_pose(self, c2w: np.ndarray) -> "Camera":
        """The same intrinsics at another pose."""
        return replace(self, c2w=np.asarray(c2w, dtype=np.float64))

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> pixel coordinates [..., 2] (centre convention above)."""
        w2c = self.w2c
        p = points @ w2c[:3, :3].T + w2c[:3, 3]
        uv = p[..., :2] / p[..., 2:3]
        return np.stack([uv[..., 0] * self.fx + self.cx, uv[..., 1] * self.fy + self.cy], -1)

    def fov_x_degrees(self) -> float:
        return float(np.degrees(2.0 * np.arctan(self.width / (2.0 * self.fx))))


def invert_pose(m: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    r = m[:3, :3]
    t = m[:3, 3]
    out = np.eye(4)
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ t
    return out


def opengl_to_opencv(c2w_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenGL/Blender camera axes -> OpenCV camera axes (same world)."""
    c2w = np.asarray(c2w_gl, dtype=np.float64)
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0, 0, 0, 1.0]])
    return c2w @ _CV_GL


def opencv_to_opengl(c2w_cv: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenCV camera axes -> OpenGL/Blender camera axes (same world)."""
    return opengl_to_opencv(c2w_cv)  # the axis flip is its own inverse


def llff_to_opencv(pose_3x4: np.ndarray) -> np.ndarray:
    """An LLFF pose (rotation columns: down, right, backward; then the centre) -> OpenCV c2w 4x4."""
    p = np.asarray(pose_3x4, dtype=np.float64)
    down, right, back, center = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    out = np.eye(4)
    out[:3, 0] = right
    out[:3, 1] = down
    out[:3, 2] = -back
    out[:3, 3] = center
    return out


def opencv_to_llff(c2w: np.ndarray) -> np.ndarray:
    """OpenCV c2w -> the LLFF 3x4 pose layout (columns down, right, backward, centre)."""
    c = np.asarray(c2w, dtype=np.float64)
    return np.stack([c[:3, 1], c[:3, 0], -c[:3, 2], c[:3, 3]], 1)


def relative_pose(ref: Camera, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) taking points from ``ref``'s camera frame to ``cam``'s camera frame: x_cam = R x_ref + t."""
    m = cam.w2c @ ref.c2w
    return m[:3, :3].copy(), m[:3, 3].copy()


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def look_at_opencv(center: np.ndarray, forward: np.ndarray, down: np.ndarray) -> np.ndarray:
    """OpenCV c2w at ``center`` looking along ``forward`` with image-down roughly ``down``."""
    z = _normalize(np.asarray(forward, dtype=np.float64))
    x = _normalize(np.cross(down, z))
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, center
    return m


def average_pose(cameras: list[Camera]) -> np.ndarray:
    """The mean camera pose (OpenCV c2w): mean centre, mean viewing and down directions."""
    centers = np.stack([c.center for c in cameras])
    forward = np.stack([c.c2w[:3, 2] for c in cameras]).sum(0)
    down = np.stack([c.c2w[:3, 1] for c in cameras]).sum(0)
    return look_at_opencv(centers.mean(0), forward, down)


def spiral_path(cameras: list[Camera], focus_depth: float, n_frames: int = 60,
                n_rotations: float = 2.0, radius_percentile: float = 90.0,
                z_amplitude: float = 0.5) -> list[np.ndarray]:
    """An LLFF-style spiral of OpenCV c2w poses around the mean camera, all looking at a focus point.

    Radii are percentiles of the cameras' offsets from the mean pose (in its frame), so the path stays
    within the span of the captured views, where an MPI is reliable.
    """
    mean = average_pose(cameras)
    local = np.stack([(invert_pose(mean) @ np.append(c.center, 1.0))[:3] for c in cameras])
    radii = np.percentile(np.abs(local), radius_percentile, axis=0)
    radii[2] *= z_amplitude
    focus = mean[:3, 3] + mean[:3, 2] * focus_depth
    poses = []
    for theta in np.linspace(0.0, 2.0 * np.pi * n_rotations, n_frames, endpoint=False):
        offset = np.array([np.cos(theta), np.sin(theta), np.sin(theta * 0.5)]) * radii
        center = mean[:3, :3] @ offset + mean[:3, 3]
        poses.append(look_at_opencv(center, focus - center, mean[:3, 1]))
    return poses


def pose_problem(c2w: np.ndarray, tol: float = 1e-3) -> str | None:
    """Why ``c2w`` is not a finite rigid camera-to-world transform (a short phrase), or None if it is.

    The rotation block must be orthonormal with determinant +1 to within ``tol``.
    """
    m = np.asarray(c2w, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        return "it contains NaN or infinite values"
    r = m[:3, :3]
    if np.abs(r.T @ r - np.eye(3)).max() > tol:
        return "its rotation part is not orthonormal (scaled or sheared axes)"
    if np.linalg.det(r) < 0:
        return "its rotation part is a reflection (determinant -1: mixed-up axis convention?)"
    return None
