"""Scene cameras (LLFF, COLMAP, transforms.json) as Blender cameras, and back.

The scene is read by ``nex_core.io.scene.loader.load_cameras``, the same code ``nex train`` uses (same
format choice, checks, split and reference view); image sizes come from Blender's image loader, not
Pillow. A camera becomes a Blender camera with ``sensor_fit = HORIZONTAL``, a focal length from fx, lens
shift for the principal point and, when fx != fy, the scene's pixel aspect ratio; its pose is the
OpenCV camera-to-world turned into Blender camera axes (``nex_core.io.cameras.opencv_to_opengl``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from . import _core

SENSOR_WIDTH_MM = 36.0


@dataclass(frozen=True)
class BlenderCameraParams:
    lens: float  # mm
    sensor_width: float  # mm (sensor_fit HORIZONTAL)
    shift_x: float
    shift_y: float
    pixel_aspect: tuple[float, float]  # the render's pixel_aspect_x, _y (ratio y / x = fx / fy; both >= 1)
    resolution: tuple[int, int]


def blender_camera_params(cam, sensor_width: float = SENSOR_WIDTH_MM) -> BlenderCameraParams:
    """Blender camera settings that reproduce a nex_core Camera's projection at its resolution.

    With ``sensor_fit = HORIZONTAL`` Blender's frustum is ``lens / sensor_width = fx / W`` wide per unit
    depth, its shifts are in units of the image width, shift_x moves the principal point left and
    shift_y moves it up; non-square pixels (fx != fy) are the render's pixel aspect ``fx / fy``.
    """
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


def intrinsics_from_blender(cam_data, width: int, height: int, pixel_aspect_x: float = 1.0,
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


def opencv_pose_of(obj) -> np.ndarray:
    """An object's world matrix as an OpenCV camera-to-world (scale removed)."""
    m = np.array(obj.matrix_world, dtype=np.float64)
    m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0)
    return _core.module("cameras").opengl_to_opencv(m)


def apply_camera(cam_obj, cam, scene=None, set_resolution: bool = True) -> BlenderCameraParams:
    """Set a Blender camera object's data and pose from a nex_core Camera."""
    cameras = _core.module("cameras")
    params = blender_camera_params(cam)
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


def set_render_size(scene, params: BlenderCameraParams) -> None:
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

    Read in this process; a COLMAP model needs pycolmap, which Blender's Python lacks: then the
    background Python (``python``, default: the add-on's) reads it and passes the cameras back as JSON.
    """
    loader = _core.module("scene.loader")
    try:
        return loader.load_cameras(Path(scene_dir), holdout=holdout, ref_image=ref_image or None,
                                   size_of=image_size_with_blender)
    except _core.module("errors").SceneError as exc:
        if "pycolmap" not in str(exc):
            raise
        if python is None:
            from .prefs import background_python

            python = background_python()
        return read_scene_cameras_with(python, scene_dir, holdout, ref_image)


_CAMERAS_CODE = r"""
import json, sys
from nex_core.io.scene.loader import load_cameras
v = load_cameras(sys.argv[1], holdout=int(sys.argv[2]), ref_image=sys.argv[3] or None)
cams = [dict(width=c.width, height=c.height, fx=c.fx, fy=c.fy, cx=c.cx, cy=c.cy, c2w=c.c2w.tolist(), name=c.name)
        for c in v.cameras]
nan = lambda a: [None if x != x else float(x) for x in a]
print("NEX-CAMERAS " + json.dumps(dict(format=v.format, names=v.names, cameras=cams, near=nan(v.near),
      far=nan(v.far), train_ids=v.train_ids, test_ids=v.test_ids, ref_id=v.ref_id, size=list(v.size))))
"""


def read_scene_cameras_with(python: str, scene_dir: Path, holdout: int = 8, ref_image: str | None = None):
    """:func:`read_scene_cameras` done by another Python (one with pycolmap)."""
    import subprocess

    from . import worker

    errors, loader, cameras = _core.module("errors"), _core.module("scene.loader"), _core.module("cameras")
    try:
        proc = subprocess.run([python, "-c", _CAMERAS_CODE, str(scene_dir), str(holdout), ref_image or ""],
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                              env=worker.worker_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.SceneError(f"reading the COLMAP model with {python} failed: {exc}") from None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NEX-CAMERAS ")), None)
    if line is None:
        msg = worker.failure_message("camera import", proc.returncode, proc.stderr, python)
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if tail and tail[-1].split(":")[0].endswith("Error") and "No module named" not in tail[-1]:
            msg = tail[-1].split(": ", 1)[-1]
        raise errors.SceneError(f"reading the cameras of {scene_dir} with {python}: {msg}")
    raw = json.loads(line[len("NEX-CAMERAS "):])
    as_array = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=np.float64)  # noqa: E731
    return loader.SceneCameras(
        root=Path(scene_dir), format=raw["format"], names=raw["names"],
        cameras=[cameras.Camera(**c) for c in raw["cameras"]], near=as_array(raw["near"]), far=as_array(raw["far"]),
        train_ids=raw["train_ids"], test_ids=raw["test_ids"], ref_id=raw["ref_id"], size=tuple(raw["size"]))


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
        set_render_size(scene, blender_camera_params(views.ref_camera))
    return CameraImportResult(coll, objects, ref, warnings)


def camera_for(obj, width: int, height: int, scene=None):
    """A nex_core Camera for a Blender camera object rendered at width x height."""
    cameras = _core.module("cameras")
    ax = scene.render.pixel_aspect_x if scene is not None else 1.0
    ay = scene.render.pixel_aspect_y if scene is not None else 1.0
    fx, fy, cx, cy = intrinsics_from_blender(obj.data, width, height, ax, ay)
    return cameras.Camera(width, height, fx, fy, cx, cy, opencv_pose_of(obj), obj.name)
