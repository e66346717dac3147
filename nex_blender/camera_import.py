"""Scene cameras (LLFF, COLMAP, transforms.json) as Blender cameras, and back.

The scene is read by ``nex_core.io.scene.loader.load_cameras``, the same code ``nex train`` uses (same
format choice, checks, split and reference view); image sizes come from Blender's image loader, not
Pillow. A camera becomes a Blender camera with ``sensor_fit = HORIZONTAL``, a focal length from fx, lens
shift for the principal point and, when fx != fy, the scene's pixel aspect ratio; its pose is the
OpenCV camera-to-world turned into Blender camera axes (``nex_core.io.cameras.opencv_to_opengl``).
The maths lives in ``nex_core.io.addon.cameras``; this module moves its results into Blender data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from . import _core


def _logic():
    return _core.module("addon.cameras")


def opencv_pose_of(obj) -> np.ndarray:
    """An object's world matrix as an OpenCV camera-to-world (scale removed)."""
    return _logic().opencv_pose(obj.matrix_world)


def apply_camera(cam_obj, cam, scene=None, set_resolution: bool = True):
    """Set a Blender camera object's data and pose from a nex_core Camera; returns its
    ``BlenderCameraParams``."""
    cameras = _core.module("cameras")
    params = _logic().blender_camera_params(cam)
    data = cam_obj.data
    data.type = "PERSP"
    data.lens_unit = "MILLIMETERS"
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = params.sensor_width
    data.lens = params.lens
    data.shift_x, data.shift_y = params.shift_x, params.shift_y
    cam_obj.matrix_world = Matrix(cameras.opencv_to_opengl(cam.c2w).tolist())
    if scene is not None and set_resolution:
        set_render_size(scene, params)
    return params


def set_render_size(scene, params) -> None:
    scene.render.resolution_x, scene.render.resolution_y = params.resolution
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = params.pixel_aspect


def image_size_with_blender(path: Path) -> tuple[int, int]:
    """(width, height) of a photo, read by Blender (Pillow is not available in Blender's Python)."""
    existing = {img.name for img in bpy.data.images}
    img = bpy.data.images.load(str(path), check_existing=True)
    try:
        w, h = img.size
    finally:
        if img.name not in existing and img.users == 0:
            bpy.data.images.remove(img)
    if not (w and h):
        raise _core.module("errors").ImageError(f"image {path} cannot be read by Blender: re-export it as PNG or JPEG")
    return int(w), int(h)


def read_scene_cameras(scene_dir: Path, holdout: int = 8, ref_image: str | None = None,
                       python: str | None = None):
    """The scene's cameras as ``nex train`` sees them (``SceneCameras``), at the photos' size.

    Read in this process; a scene whose reader needs a package Blender's Python lacks (pycolmap for a
    COLMAP model) is read by the background Python (``python``, default: the add-on's) instead.
    """
    if _logic().missing_reader(scene_dir) is None:
        return _core.module("scene.loader").load_cameras(Path(scene_dir), holdout=holdout, ref_image=ref_image or None,
                                                         size_of=image_size_with_blender)
    if python is None:
        from .prefs import background_python

        python = background_python()
    return read_scene_cameras_with(python, scene_dir, holdout, ref_image)


def read_scene_cameras_with(python: str, scene_dir: Path, holdout: int = 8, ref_image: str | None = None):
    """:func:`read_scene_cameras` done by another Python (``nex cameras SCENE --json``)."""
    from . import worker

    job = _core.module("jobs").CamerasJob(Path(scene_dir), holdout, ref_image or "")
    try:
        return worker.ask(job, python, timeout=300)
    except worker.JobError as exc:
        raise _core.module("errors").SceneError(f"reading the cameras of {scene_dir} with {python}: {exc}") from None


@dataclass
class CameraImportOptions:
    scene_dir: Path
    holdout: int = 8
    ref_image: str = ""
    background_images: bool = True
    set_resolution: bool = True
    set_active: bool = True  # make the reference camera the scene camera
    display_size: float = 0.0  # 0: a tenth of the nearest bound


@dataclass
class CameraImportResult:
    collection: object
    cameras: list  # objects, in scene order
    reference: object
    warnings: list[str] = field(default_factory=list)


def import_cameras(context, options: CameraImportOptions) -> CameraImportResult:
    """Create one Blender camera per scene view, in a new collection; the reference view marked."""
    views = read_scene_cameras(options.scene_dir, options.holdout, options.ref_image)
    scene = context.scene
    root = Path(options.scene_dir)
    coll = bpy.data.collections.new(f"NeX cameras {root.name}")
    scene.collection.children.link(coll)
    warnings = []
    fx_fy = [c.fx / c.fy for c in views.cameras]
    if max(abs(r - 1.0) for r in fx_fy) > 1e-3:
        warnings.append("the cameras have non-square pixels (fx != fy): the render's pixel aspect ratio was set")
    near = np.nanmin(views.near) if np.any(np.isfinite(views.near)) else float("nan")
    far = np.nanmax(views.far) if np.any(np.isfinite(views.far)) else float("nan")
    test = set(views.test_ids)
    objects = []
    for i, (name, cam) in enumerate(zip(views.names, views.cameras)):
        data = bpy.data.cameras.new(Path(name).stem)
        obj = bpy.data.objects.new(Path(name).stem, data)
        coll.objects.link(obj)
        apply_camera(obj, cam)
        if math.isfinite(near):
            data.clip_start = max(1e-4, 0.5 * near)
        if math.isfinite(far):
            data.clip_end = max(data.clip_start * 10, 4.0 * far)
        data.display_size = options.display_size or (0.1 * near if math.isfinite(near) else 0.2)
        obj["nex_image"] = name
        obj["nex_split"] = "test" if i in test else "train"
        obj["nex_reference"] = i == views.ref_id
        obj["nex_scene"] = str(root)
        if options.background_images:
            img = bpy.data.images.load(str(root / name), check_existing=True)
            bg = data.background_images.new()
            bg.image = img
            bg.alpha = 1.0
            data.show_background_images = True
        objects.append(obj)
    ref = objects[views.ref_id]
    ref.show_name = True
    ref.data.display_size *= 1.5
    if options.set_active:
        scene.camera = ref
    if options.set_resolution:
        set_render_size(scene, _logic().blender_camera_params(views.ref_camera))
    return CameraImportResult(coll, objects, ref, warnings)


def camera_for(obj, width: int, height: int, scene=None):
    """A nex_core Camera for a Blender camera object rendered at width x height."""
    cameras = _core.module("cameras")
    ax = scene.render.pixel_aspect_x if scene is not None else 1.0
    ay = scene.render.pixel_aspect_y if scene is not None else 1.0
    fx, fy, cx, cy = _logic().intrinsics_from_blender(obj.data, width, height, ax, ay)
    return cameras.Camera(width, height, fx, fy, cx, cy, opencv_pose_of(obj), obj.name)
