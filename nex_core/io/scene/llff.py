"""LLFF scenes: ``poses_bounds.npy`` plus photos in ``images/``. Torch-free.

``poses_bounds.npy`` holds one row per photo, in the order of the *sorted* file names in ``images/``
(the LLFF convention: the i-th sorted photo is the i-th row). A row is a 3x5 matrix flattened row-major
-- the camera-to-world rotation as columns (down, right, backward), the camera centre, and a column
``[H, W, focal]`` -- followed by the near and far depth bounds. H, W and focal refer to the resolution
the poses were computed at; the principal point is the image centre (``cx = W/2``, ``cy = H/2``).

NeX's shiny dataset (and NeX's own COLMAP runner) instead writes rows of 14 values (the 3x4 pose and
the bounds) and puts the intrinsics in ``hwf_cxcy.npy`` beside it: ``[h, w, fx, fy, cx, cy]`` (shape
[6, 1], copied from COLMAP's PINHOLE camera). ``[h, w, f, cx, cy]`` (5 values) is accepted as well,
and so are 17-value rows next to ``hwf_cxcy.npy`` (the file's intrinsics win). Because the values come
straight from COLMAP, ``cx, cy`` are taken in COLMAP's convention -- the centre of the top-left pixel
is (0.5, 0.5) -- which is also ours, so they are used unchanged. (NeX's reference code treats them as
if pixel centres were integers when it rescales, a half-pixel inconsistency we do not copy.)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..cameras import Camera, llff_to_opencv
from ..errors import ImageError, PoseError
from .images import list_images
from .types import PosedViews

POSES_FILE = "poses_bounds.npy"
INTRINSICS_FILE = "hwf_cxcy.npy"
IMAGES_DIR = "images"
MAX_NPY_VALUES = 10_000_000  # far more than any pose file holds; larger headers are refused unread


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes after the header) of a .npy file, read without loading the data."""
    from numpy.lib import format as npy_format

    with open(path, "rb") as f:
        version = npy_format.read_magic(f)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        return tuple(shape), dtype, path.stat().st_size - f.tell()


def _size_problem(path: Path) -> str | None:
    """Why the .npy header cannot be trusted: it declares more data than the file holds or a pose file needs."""
    shape, dtype, available = _npy_header(path)
    count = math.prod(shape)
    if count > MAX_NPY_VALUES or count * dtype.itemsize > available:
        return (f"its header declares shape {shape} of {dtype}, which the file's {available} bytes of data "
                "cannot hold or which is absurdly large")
    return None


def _load_npy(path: Path) -> np.ndarray:
    """The array in ``path`` as float64; its header is checked before anything is allocated."""
    try:
        problem = _size_problem(path)
        array = None if problem else np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError ... for damaged files
        problem, array = str(exc), None
    if array is None:
        raise PoseError(f"{path} cannot be read as a numpy array ({problem}): re-create it with "
                        "`nex prepare` or LLFF's imgs2poses.py")
    return array


def _read_hwf_cxcy(path: Path) -> tuple[float, float, float, float, float, float]:
    """``hwf_cxcy.npy`` -> (h, w, fx, fy, cx, cy)."""
    values = _load_npy(path).ravel()
    if values.size == 6:
        h, w, fx, fy, cx, cy = values
    elif values.size == 5:
        h, w, f, cx, cy = values
        fx = fy = f
    else:
        raise PoseError(f"{path} has {values.size} values; expected 6 (h, w, fx, fy, cx, cy) or "
                        "5 (h, w, f, cx, cy). Re-create it or delete it to use the hwf column of "
                        f"{POSES_FILE}.")
    if not (np.all(np.isfinite(values)) and h > 0 and w > 0 and fx > 0 and fy > 0):
        raise PoseError(f"{path} holds invalid intrinsics {values.tolist()}: h, w and the focal "
                        "lengths must be finite and positive. Re-create it with `nex prepare`.")
    return float(h), float(w), float(fx), float(fy), float(cx), float(cy)


def _check_rows(arr: np.ndarray, path: Path, has_intrinsics_file: bool) -> int:
    """Validate the array's shape; return the number of pose columns per row (12 or 15)."""
    if arr.ndim != 2 or arr.shape[1] not in (14, 17):
        raise PoseError(f"{path} has shape {arr.shape}; expected [N, 17] (3x5 pose + near, far) or "
                        f"[N, 14] with {INTRINSICS_FILE}. Re-create it with `nex prepare`.")
    if arr.shape[1] == 14 and not has_intrinsics_file:
        raise PoseError(f"{path} has 14 values per row (3x4 pose + near, far), the layout that comes "
                        f"with a {INTRINSICS_FILE} intrinsics file, but {path.parent / INTRINSICS_FILE} "
                        "is missing. Copy it from the original dataset or re-run `nex prepare`.")
    return arr.shape[1] - 2


def _check_counts(arr: np.ndarray, path: Path, images: list[Path], image_dir: Path) -> None:
    if not images:
        raise ImageError(f"no photos (.png/.jpg) found in {image_dir}; {path.name} needs the photos "
                         "it was computed from in images/")
    if arr.shape[0] != len(images):
        raise PoseError(
            f"{path} has {arr.shape[0]} poses but {image_dir} holds {len(images)} photos "
            f"({images[0].name} ... {images[-1].name}). LLFF matches the i-th sorted photo to the i-th "
            "row, so the counts must agree: remove photos that were added after the poses were "
            "computed, or re-run `nex prepare`.")


def _check_finite(arr: np.ndarray, path: Path, images: list[Path]) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
    if bad.size:
        i = int(bad[0])
        what = "bounds" if np.all(np.isfinite(arr[i, :-2])) else "pose"
        raise PoseError(f"{path}: row {i} ({images[i].name}) has a NaN or infinite {what} "
                        f"({bad.size} bad row(s) in all). Re-run `nex prepare` to recompute the poses.")


def _intrinsics(rows: np.ndarray, intrinsics: tuple | None) -> list[tuple]:
    """Per-row (h, w, fx, fy, cx, cy) at the resolution the poses refer to."""
    if intrinsics is not None:
        return [intrinsics] * len(rows)
    out = []
    for row in rows:
        h, w, f = row[:15].reshape(3, 5)[:, 4]
        out.append((h, w, f, f, w / 2.0, h / 2.0))
    return out


def read_llff(root: Path) -> PosedViews:
    """Read an LLFF scene (``poses_bounds.npy`` [+ ``hwf_cxcy.npy``]) in ``root``."""
    path = root / POSES_FILE
    intrinsics_path = root / INTRINSICS_FILE
    arr = _load_npy(path)
    n_pose = _check_rows(arr, path, intrinsics_path.is_file())
    image_dir = root / IMAGES_DIR
    images = list_images(image_dir)
    _check_counts(arr, path, images, image_dir)
    _check_finite(arr, path, images)
    intrinsics = _read_hwf_cxcy(intrinsics_path) if intrinsics_path.is_file() else None
    cameras = []
    for row, img, (h, w, fx, fy, cx, cy) in zip(arr, images, _intrinsics(arr, intrinsics)):
        if not (h > 0 and w > 0 and fx > 0):
            raise PoseError(f"{path}: the row of {img.name} has an invalid [H, W, focal] column "
                            f"{[h, w, fx]}. Re-run `nex prepare`.")
        pose = row[:n_pose].reshape(3, n_pose // 3)[:, :4]
        cameras.append(Camera(width=int(round(w)), height=int(round(h)), fx=fx, fy=fy, cx=cx, cy=cy,
                              c2w=llff_to_opencv(pose), name=f"{IMAGES_DIR}/{img.name}"))
    names = [cam.name for cam in cameras]
    return PosedViews(format="llff", source=path, names=names, cameras=cameras,
                      near=arr[:, -2].copy(), far=arr[:, -1].copy())
