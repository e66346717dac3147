"""Blender / NeRF-synthetic / BlenderNeRF / instant-ngp / nerfstudio scenes: ``transforms.json``. Torch-free.

``transforms.json`` in the scene root, or -- only when it is absent -- ``transforms_train.json`` plus an
optional ``transforms_test.json`` (their frames are merged; the test file's frames form the test split).

* Intrinsics: ``fl_x``/``fl_y``/``cx``/``cy`` (instant-ngp, pixels, for the resolution ``w`` x ``h``,
  default: the photo's size) win over ``camera_angle_x``/``camera_angle_y`` (radians, full field of
  view). ``fy`` defaults to ``fx`` (square pixels), ``cx, cy`` to the image centre ``w/2, h/2`` (the
  half-pixel convention of :mod:`nex_core.io.cameras`). Any of these keys may also appear in a frame,
  overriding the top level.
* Poses: ``transform_matrix`` is camera-to-world with OpenGL/Blender camera axes (x right, y up,
  z backward); it is converted to OpenCV axes.
* Paths: ``file_path`` is relative to the json file, with or without an extension (.png, .jpg, .jpeg
  are tried in that order).
* Distortion: instant-ngp's and nerfstudio's ``k1, k2, k3, k4, p1, p2`` must be absent or ~0
  (``|k| <= 1e-9``), and nerfstudio's ``camera_model`` a pinhole one (``OPENCV``, ``PINHOLE``,
  ``SIMPLE_PINHOLE``; fisheye and equirectangular photos are refused).
* Ignored: what only other tools use (instant-ngp's ``aabb_scale``/``scale``/``offset``, nerfstudio's
  ``applied_transform``, ``mask_path``, ``depth_file_path`` ...): the cameras stay in the file's world.
* Bounds (our extension): optional per-frame ``near``/``far`` (top-level values serve as defaults).
  Without them bounds are NaN and the MPI depth range must come from ``planes.txt`` or arguments.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..cameras import Camera, opengl_to_opencv
from ..errors import ImageError, PoseError
from .images import image_size
from .types import PosedViews

SINGLE_FILE = "transforms.json"
TRAIN_FILE = "transforms_train.json"
TEST_FILE = "transforms_test.json"
_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_CAMERA_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", "near", "far",
                "camera_model", *_DISTORTION_KEYS)
PINHOLE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
DISTORTION_TOL = 1e-9


def find_transforms(root: Path) -> list[Path]:
    """The transforms files this scene uses: [transforms.json] or [train, (test)]; [] if none."""
    if (root / SINGLE_FILE).is_file():
        return [root / SINGLE_FILE]
    if (root / TRAIN_FILE).is_file():
        return [root / TRAIN_FILE] + ([root / TEST_FILE] if (root / TEST_FILE).is_file() else [])
    return []


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as exc:
        raise PoseError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        "fix or re-export it") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PoseError(f"{path} cannot be read ({exc}); fix or re-export it") from exc
    except RecursionError:
        raise PoseError(f"{path} is nested too deeply to be a transforms file; fix or re-export it") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise PoseError(f"{path} has no \"frames\" list: expected {{\"camera_angle_x\": ..., "
                        "\"frames\": [{\"file_path\": ..., \"transform_matrix\": ...}, ...]}")
    return meta


def _resolve_image(json_path: Path, file_path: str, index: int) -> Path:
    """The photo a frame's ``file_path`` refers to (trying image extensions when it has none)."""
    base = json_path.parent / file_path
    candidates = ([base] + [base.with_name(base.name + ext) for ext in _EXTENSIONS]) if base.name else []
    for path in candidates:
        if _is_file(path):
            return path
    raise ImageError(f"{json_path}: frame {index} refers to {file_path!r:.200}, but no such photo exists "
                     f"(tried {str(base)!r:.200} with .png/.jpg/.jpeg). Fix file_path or restore the photo.")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL character ...
        return False


def _number(settings: dict, key: str, json_path: Path, index: int, allow_nan: bool = False) -> float | None:
    """``settings[key]`` as a finite float (NaN too if ``allow_nan``); None when absent."""
    if key not in settings or settings[key] is None:
        return None
    value = settings[key]
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if math.isfinite(number) or (allow_nan and math.isnan(number) and isinstance(value, float)):
        return number
    raise PoseError(f"{json_path}: frame {index} has an invalid \"{key}\": {value!r:.60} (expected a finite "
                    "number); fix or re-export the file")


def _angle(settings: dict, key: str, json_path: Path, index: int) -> float | None:
    """A full field of view in radians, strictly between 0 and pi."""
    angle = _number(settings, key, json_path, index)
    if angle is not None and not 0.0 < angle < math.pi:
        raise PoseError(f"{json_path}: \"{key}\" = {angle} (frame {index}) is not a field of view in radians "
                        "(0 < angle < pi); fix or re-export the file")
    return angle


def _intrinsics(settings: dict, size: tuple[int, int], json_path: Path, index: int) -> tuple:
    """(width, height, fx, fy, cx, cy) from instant-ngp or Blender keys."""
    get = lambda key: _number(settings, key, json_path, index)  # noqa: E731
    w, h = get("w"), get("h")
    if not (w and h):  # the resolution the intrinsics refer to; by default the photo's own
        w, h = size
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        angle_x = _angle(settings, "camera_angle_x", json_path, index)
        if angle_x is None:
            raise PoseError(f"{json_path} has neither \"camera_angle_x\" nor \"fl_x\" (frame {index}): "
                            "add the horizontal field of view in radians as \"camera_angle_x\"")
        fx = 0.5 * w / math.tan(0.5 * angle_x)
    if fy is None:
        angle_y = _angle(settings, "camera_angle_y", json_path, index)
        fy = 0.5 * h / math.tan(0.5 * angle_y) if angle_y is not None else fx
    cx = get("cx")
    cy = get("cy")
    return w, h, fx, fy, (w / 2.0 if cx is None else cx), (h / 2.0 if cy is None else cy)


def _check_distortion(settings: dict, json_path: Path, index: int) -> None:
    """instant-ngp distortion keys must be absent or ~0, nerfstudio's camera model a pinhole: NeX needs
    undistorted pinhole photos."""
    model = settings.get("camera_model")
    if model is not None and model not in PINHOLE_MODELS:
        raise PoseError(f"{json_path}: camera_model {model!r:.40} (frame {index}); NeX needs undistorted pinhole "
                        f"photos ({', '.join(PINHOLE_MODELS)}): undistort them first, e.g. `nex prepare` on the "
                        "photos")
    for key in _DISTORTION_KEYS:
        value = _number(settings, key, json_path, index)
        if value is not None and abs(value) > DISTORTION_TOL:
            raise PoseError(f"{json_path}: lens distortion {key}={value} (frame {index}); NeX needs "
                            "undistorted pinhole photos: undistort them first (`nex prepare`)")


def _pose(frame: dict, json_path: Path, index: int) -> np.ndarray:
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except KeyError as exc:
        raise PoseError(f"{json_path}: frame {index} has no \"transform_matrix\"; add the camera-to-world "
                        "4x4 matrix or re-export the file") from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise PoseError(f"{json_path}: frame {index} has a malformed \"transform_matrix\"; expected a 4x4 list "
                        "of numbers") from exc
    if m.shape not in ((4, 4), (3, 4)):
        raise PoseError(f"{json_path}: frame {index} has a {m.shape} \"transform_matrix\"; expected 4x4: fix "
                        "or re-export the file")
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite poses are reported by the loader
        return opengl_to_opencv(m)


class _SizeCache:
    """Image size of the first photo, read lazily (only needed when w/h are not in the json)."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None

    def get(self, path: Path) -> tuple[int, int]:
        if self.size is None:
            self.size = image_size(path)
        return self.size


def _read_file(json_path: Path, root: Path, sizes: _SizeCache) -> list[tuple[str, Camera, float, float]]:
    meta = _load_json(json_path)
    top = {k: meta[k] for k in _CAMERA_KEYS if k in meta}
    views = []
    for index, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise PoseError(f"{json_path}: frame {index} has no \"file_path\"; add the photo's path (relative "
                            "to the json file) or re-export the file")
        settings = {**top, **{k: frame[k] for k in _CAMERA_KEYS if k in frame}}
        _check_distortion(settings, json_path, index)
        path = _resolve_image(json_path, frame["file_path"], index)
        name = Path(os.path.relpath(path, root)).as_posix()
        w, h, fx, fy, cx, cy = _intrinsics(settings, sizes.get(path), json_path, index)
        camera = Camera(width=int(round(w)), height=int(round(h)), fx=fx, fy=fy, cx=cx, cy=cy,
                        c2w=_pose(frame, json_path, index), name=name)
        near = _number(settings, "near", json_path, index, allow_nan=True)
        far = _number(settings, "far", json_path, index, allow_nan=True)
        views.append((name, camera, math.nan if near is None else near, math.nan if far is None else far))
    return views


def read_blender(root: Path) -> PosedViews:
    """Read ``transforms.json`` (or ``transforms_train.json`` + ``transforms_test.json``) in ``root``."""
    files = find_transforms(root)
    if not files:
        raise PoseError(f"no {SINGLE_FILE} or {TRAIN_FILE} in {root}")
    sizes = _SizeCache()
    per_file = [_read_file(path, root, sizes) for path in files]
    views = sorted((v for file_views in per_file for v in file_views), key=lambda v: v[0])
    test_names = [v[0] for v in per_file[1]] if len(per_file) > 1 else None
    return PosedViews(format="blender", source=files[0], names=[v[0] for v in views],
                      cameras=[v[1] for v in views],
                      near=np.array([v[2] for v in views], dtype=np.float64),
                      far=np.array([v[3] for v in views], dtype=np.float64),
                      test_names=test_names)
