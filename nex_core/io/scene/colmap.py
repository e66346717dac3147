"""COLMAP scenes: a sparse model (binary or text) in ``sparse/0/`` or ``sparse/``, photos in ``images/``.

Read through pycolmap (imported only when a COLMAP scene is loaded). Written against pycolmap 4.x and
tolerant of 3.x, where ``Image.cam_from_world`` is a property rather than a method.

* Cameras: PINHOLE and SIMPLE_PINHOLE. Models with lens distortion (SIMPLE_RADIAL, RADIAL, OPENCV,
  FULL_OPENCV, SIMPLE_DIVISION, DIVISION) are accepted only when every distortion coefficient is ~0
  (``|k| <= 1e-9``); other models (fisheye, FOV, ...) are refused. Undistort first (``nex prepare``).
* Poses: COLMAP stores world-to-camera (``cam_from_world``) in OpenCV camera axes; we invert it.
* Order: images sorted by name. Only images with a pose are used; every photo in ``images/`` must have
  one, and every posed image must exist on disk.
* Bounds: for each image, the depths (camera z) of the 3D points it observes, keeping z > 0; near and
  far are their 0.1 and 99.9 percentiles (linear interpolation), as LLFF's ``imgs2poses`` computes
  them. An image that observes no point gets NaN bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cameras import Camera, invert_pose
from ..errors import ImageError, PoseError, SceneError
from .images import list_images
from .types import PosedViews

IMAGES_DIR = "images"
MODEL_DIRS = ("sparse/0", "sparse")
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")
DISTORTED_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "SIMPLE_DIVISION", "DIVISION")
DISTORTION_TOL = 1e-9
NEAR_PERCENTILE = 0.1
FAR_PERCENTILE = 99.9
# Fewest bytes one record of each binary model file takes (COLMAP's layout): a count that needs more than
# the file holds means a truncated or corrupt file, refused before pycolmap reserves memory for it.
_MIN_RECORD_BYTES = {"cameras.bin": 24, "images.bin": 73, "points3D.bin": 51, "rigs.bin": 8, "frames.bin": 8}


def find_model_dir(root: Path) -> Path | None:
    """The first of ``sparse/0``, ``sparse`` holding a COLMAP model (cameras.bin or cameras.txt)."""
    for rel in MODEL_DIRS:
        folder = root / rel
        if any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return folder
    return None


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as exc:
        raise SceneError("reading a COLMAP model needs the pycolmap package: `pip install pycolmap`, "
                         "or convert the model to poses_bounds.npy") from exc
    return pycolmap


def _check_binary_counts(folder: Path) -> None:
    """Each binary model file's leading record count must fit in the file."""
    for name, record in _MIN_RECORD_BYTES.items():
        path = folder / name
        if not path.is_file():
            continue
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
        count = int.from_bytes(head, "little") if len(head) == 8 else None
        if count is None or count * record > size - 8:
            raise PoseError(f"{path} is truncated or corrupt ({size} bytes"
                            + ("" if count is None else f" cannot hold the {count} records it announces")
                            + "). Re-run `nex prepare`, or re-export the model from COLMAP.")


def _read_model(folder: Path):
    _check_binary_counts(folder)
    pycolmap = _import_pycolmap()
    try:
        return pycolmap.Reconstruction(str(folder))
    except Exception as exc:
        raise PoseError(f"the COLMAP model in {folder} cannot be read ({exc}): it is incomplete or "
                        "corrupt. Re-run `nex prepare`, or re-export it from COLMAP.") from exc


def _attr(obj, name: str):
    """``obj.name``, calling it if pycolmap exposes it as a method (the API changed across versions)."""
    value = getattr(obj, name)
    return value() if callable(value) else value


def _has_pose(image) -> bool:
    for name in ("has_pose", "registered"):
        if hasattr(image, name):
            return bool(_attr(image, name))
    return True


def _w2c(image) -> np.ndarray:
    """The image's world-to-camera transform as a 4x4 matrix."""
    m = np.eye(4)
    m[:3, :4] = np.asarray(_attr(image, "cam_from_world").matrix(), dtype=np.float64)
    return m


def _model_name(camera) -> str:
    model = camera.model
    return getattr(model, "name", str(model)).split(".")[-1]


def _distortion(camera) -> np.ndarray:
    params = np.asarray(camera.params, dtype=np.float64)
    return params[list(_attr(camera, "extra_params_idxs"))]


def _check_camera_model(camera, image_name: str, folder: Path) -> None:
    model = _model_name(camera)
    if model in PINHOLE_MODELS:
        return
    if model in DISTORTED_MODELS and np.all(np.abs(_distortion(camera)) <= DISTORTION_TOL):
        return
    raise PoseError(
        f"the COLMAP model in {folder} uses the {model} camera model with lens distortion "
        f"(camera {camera.camera_id}, e.g. {image_name}; parameters {list(np.round(camera.params, 6))}). "
        "NeX needs undistorted pinhole photos: run `nex prepare` (or `colmap image_undistorter`) first "
        "and load the undistorted scene.")


def _camera(camera, w2c: np.ndarray, name: str) -> Camera:
    k = np.asarray(camera.calibration_matrix(), dtype=np.float64)
    return Camera(width=int(camera.width), height=int(camera.height), fx=float(k[0, 0]), fy=float(k[1, 1]),
                  cx=float(k[0, 2]), cy=float(k[1, 2]), c2w=invert_pose(w2c), name=name)


def _observed_points(rec) -> dict[int, np.ndarray]:
    """image id -> xyz [M, 3] of the 3D points that image observes (one pass over the tracks)."""
    per_image: dict[int, list[np.ndarray]] = {}
    for point in rec.points3D.values():
        xyz = np.asarray(point.xyz, dtype=np.float64)
        for element in point.track.elements:
            per_image.setdefault(int(element.image_id), []).append(xyz)
    return {image_id: np.stack(points) for image_id, points in per_image.items()}


def depth_bounds(depths: np.ndarray) -> tuple[float, float]:
    """(near, far) from point depths: the 0.1 and 99.9 percentiles of the positive ones; NaN if none."""
    depths = depths[np.isfinite(depths) & (depths > 0)]
    if depths.size == 0:
        return float("nan"), float("nan")
    near, far = np.percentile(depths, [NEAR_PERCENTILE, FAR_PERCENTILE])
    return float(near), float(far)


def _check_files(root: Path, folder: Path, names: list[str]) -> None:
    """Every posed image must exist on disk and every photo on disk must be posed."""
    image_dir = root / IMAGES_DIR
    on_disk = list_images(image_dir)
    missing = [n for n in names if not (root / n).is_file()]
    if missing and not on_disk:
        raise ImageError(f"no photos (.png/.jpg) found in {image_dir}; the COLMAP model in {folder} "
                         "needs the photos it was computed from there")
    if missing:
        raise ImageError(f"the COLMAP model in {folder} has poses for {len(names)} images, but "
                         f"{len(missing)} of them are not in {image_dir}: {_some(missing)}. Restore them, "
                         "or re-run `nex prepare`.")
    posed = set(names)
    unposed = [p.name for p in on_disk if f"{IMAGES_DIR}/{p.name}" not in posed]
    if unposed:
        raise PoseError(f"{image_dir} holds {len(on_disk)} photos but the COLMAP model in {folder} has "
                        f"poses for {len(names)}; no pose for: {_some(unposed)}. COLMAP could not place "
                        "them: remove them from images/ or re-run `nex prepare`.")


def _some(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items) - limit} more)" if len(items) > limit else "")


def read_colmap(root: Path) -> PosedViews:
    """Read the COLMAP sparse model of the scene in ``root`` (``sparse/0/`` or ``sparse/``)."""
    folder = find_model_dir(root)
    if folder is None:
        raise PoseError(f"no COLMAP model (cameras.bin/.txt) in {root}/sparse/0 or {root}/sparse")
    rec = _read_model(folder)
    images = sorted((im for im in rec.images.values() if _has_pose(im)), key=lambda im: im.name)
    if not images:
        raise PoseError(f"the COLMAP model in {folder} has no posed images: COLMAP failed to reconstruct "
                        "the scene. Take more overlapping photos and re-run `nex prepare`.")
    observed = _observed_points(rec)
    names, cameras, near, far = [], [], [], []
    for image in images:
        camera = rec.cameras[image.camera_id]
        _check_camera_model(camera, image.name, folder)
        w2c = _w2c(image)
        name = f"{IMAGES_DIR}/{image.name}"
        names.append(name)
        cameras.append(_camera(camera, w2c, name))
        pts = observed.get(int(image.image_id), np.zeros((0, 3)))
        lo, hi = depth_bounds(pts @ w2c[2, :3] + w2c[2, 3])
        near.append(lo)
        far.append(hi)
    _check_files(root, folder, names)
    return PosedViews(format="colmap", source=folder, names=names, cameras=cameras,
                      near=np.asarray(near, dtype=np.float64), far=np.asarray(far, dtype=np.float64))
