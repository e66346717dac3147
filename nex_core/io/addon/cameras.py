"""Cameras between nex_core and Blender: the Blender camera settings that project like a nex_core
:class:`~nex_core.io.cameras.Camera`, the way back, and which scenes Blender's own Python can read.

With ``sensor_fit = HORIZONTAL`` Blender's frustum is ``lens / sensor_width = fx / W`` wide per unit
depth, its shifts are in units of the image width, shift_x moves the principal point left and shift_y
moves it up; non-square pixels (fx != fy) are the render's pixel aspect ``fx / fy``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..cameras import Camera, opengl_to_opencv
from ..scene.loader import detect_format

SENSOR_WIDTH_MM = 36.0
# Scene formats whose reader needs a package Blender's Python lacks.
FORMAT_PACKAGES = {"colmap": "pycolmap"}


class CameraData(Protocol):
    """What :func:`intrinsics_from_blender` reads of a ``bpy.types.Camera``."""

    name: str
    type: str
    sensor_fit: str
    sensor_width: float
    sensor_height: float
    lens: float
    shift_x: float
    shift_y: float


@dataclass(frozen=True)
class BlenderCameraParams:
    lens: float  # mm
    sensor_width: float  # mm (sensor_fit HORIZONTAL)
    shift_x: float
    shift_y: float
    pixel_aspect: tuple[float, float]  # the render's pixel_aspect_x, _y (ratio y / x = fx / fy; both >= 1)
    resolution: tuple[int, int]


def blender_camera_params(cam: Camera, sensor_width: float = SENSOR_WIDTH_MM) -> BlenderCameraParams:
    """Blender camera settings that reproduce a nex_core Camera's projection at its resolution."""
    w, h = cam.width, cam.height
    ycor = cam.fx / cam.fy
    return BlenderCameraParams(
        lens=cam.fx * sensor_width / w,
        sensor_width=sensor_width,
        shift_x=(w / 2.0 - cam.cx) / w,
        shift_y=(cam.cy - h / 2.0) * ycor / w,
        pixel_aspect=(1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0),
        resolution=(w, h),
    )


def intrinsics_from_blender(cam_data: CameraData, width: int, height: int, pixel_aspect_x: float = 1.0,
                            pixel_aspect_y: float = 1.0) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a Blender perspective camera rendered at width x height (the
    inverse of :func:`blender_camera_params`, for any sensor fit)."""
    if cam_data.type != "PERSP":
        raise ValueError(f"camera {cam_data.name!r} is {cam_data.type}; only perspective cameras have "
                         "pinhole intrinsics")
    fit = cam_data.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if width * pixel_aspect_x >= height * pixel_aspect_y else "VERTICAL"
        sensor = cam_data.sensor_width
    else:
        sensor = cam_data.sensor_width if fit == "HORIZONTAL" else cam_data.sensor_height
    ycor = pixel_aspect_y / pixel_aspect_x
    lens = cam_data.lens  # kept in mm whatever the lens unit shown
    if fit == "HORIZONTAL":
        viewfac = width
    else:
        viewfac = ycor * height
    fx = lens / sensor * viewfac
    fy = fx / ycor
    cx = width / 2.0 - cam_data.shift_x * viewfac
    cy = height / 2.0 + cam_data.shift_y * viewfac / ycor
    return fx, fy, cx, cy


def opencv_pose(world_matrix) -> np.ndarray:
    """A Blender object's world matrix (4x4, camera axes) as an OpenCV camera-to-world, scale removed."""
    m = np.array(world_matrix, dtype=np.float64)
    m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0)
    return opengl_to_opencv(m)


def missing_reader(scene_dir: Path | str,
                   find_spec: Callable[[str], object] = importlib.util.find_spec) -> str | None:
    """The package this Python lacks to read the scene's poses (pycolmap for a COLMAP model), or None.

    Raises the loader's SceneError when the folder holds no scene at all."""
    package = FORMAT_PACKAGES.get(detect_format(scene_dir))
    return package if package is not None and find_spec(package) is None else None
