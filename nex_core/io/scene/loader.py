"""Finding, loading and checking a scene: :func:`detect_format` and :func:`load_scene`. Torch-free.

Conventions (see also the format modules):

* **Formats**, by preference when several are present: ``poses_bounds.npy`` (LLFF), a COLMAP model in
  ``sparse/0`` or ``sparse``, ``transforms.json`` (Blender). ``Scene.format`` records the one used.
* **Resolution**: intrinsics are first rescaled from the resolution the poses refer to to the photos
  on disk (the aspect ratios must agree), then to ``width`` (height by aspect ratio, rounded) with
  :meth:`Camera.resized`'s half-pixel convention; photos are resized to match (see ``images``).
* **Split**: every ``holdout``-th view (index % holdout == 0: 0, 8, 16, ...) is held out for testing, as
  LLFF does; ``holdout=0`` keeps all for training. A Blender scene given as ``transforms_train.json``
  + ``transforms_test.json`` keeps that split instead (``holdout=0`` still means no test views).
* **Reference view**: the training view whose camera centre is nearest the mean of *all* camera
  centres (NeX's reference code averages the training centres only; usually the same view),
  unless ``ref_image`` names one (full name, file name or stem).
* **Planes**: see :mod:`.planes` (bounds < ``planes.txt`` < arguments).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..cameras import Camera, pose_problem
from ..errors import ConfigError, ImageError, PoseError, SceneError
from .colmap import find_model_dir, read_colmap
from .images import image_size, list_images, load_images, target_size
from .llff import POSES_FILE, read_llff
from .planes import plane_spec
from .transforms_json import find_transforms, read_blender
from .types import PosedViews, Scene

log = logging.getLogger(__name__)

MIN_IMAGES = 12
_READERS: dict[str, Callable[[Path], PosedViews]] = {
    "llff": read_llff, "colmap": read_colmap, "blender": read_blender}


# ----------------------------------------------------------------------------------------- format


def _present_formats(root: Path) -> list[tuple[str, Path]]:
    """(format, pose source) for every pose source in ``root``, most preferred first."""
    found = []
    if (root / POSES_FILE).is_file():
        found.append(("llff", root / POSES_FILE))
    model = find_model_dir(root)
    if model is not None:
        found.append(("colmap", model))
    transforms = find_transforms(root)
    if transforms:
        found.append(("blender", transforms[0]))
    return found


def _check_root(root: Path) -> None:
    if not root.exists():
        raise SceneError(f"scene folder {root} does not exist: check the path")
    if not root.is_dir():
        raise SceneError(f"{root} is a file, not a scene folder: pass the folder that holds images/")


def _no_poses_error(root: Path) -> SceneError:
    photos = list_images(root / "images")
    if not photos:
        return ImageError(f"no photos found in {root}: put at least {MIN_IMAGES} overlapping photos "
                          f"(.png/.jpg) in {root / 'images'} and run `nex prepare` to compute the camera "
                          "poses")
    return PoseError(f"{root} has {len(photos)} photos in images/ but no camera poses ({POSES_FILE}, "
                     "sparse/0/ or transforms.json): run `nex prepare` to compute them with COLMAP")


def detect_format(root: Path | str) -> str:
    """The format the scene in ``root`` is loaded as: "llff", "colmap" or "blender".

    Prefers poses_bounds.npy, then sparse/0 (or sparse), then transforms.json.
    """
    root = Path(root)
    _check_root(root)
    found = _present_formats(root)
    if not found:
        raise _no_poses_error(root)
    if len(found) > 1:
        log.info("%s has several pose sources (%s); using %s", root,
                 ", ".join(str(src.relative_to(root)) for _, src in found), found[0][1].name)
    return found[0][0]


# ----------------------------------------------------------------------------------------- checks


def _some(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items) - limit} more)" if len(items) > limit else "")


def _check_names(views: PosedViews) -> None:
    """Image names must be unique, also by stem ignoring case (ref_image and file_path use stems)."""
    seen: dict[str, str] = {}
    for name in views.names:
        key = name.rsplit(".", 1)[0].lower() if "." in Path(name).name else name.lower()
        if key in seen and seen[key] == name:
            raise PoseError(f"{views.source} lists the photo {name} more than once; remove the duplicate "
                            "entries so every photo has one pose")
        if key in seen:
            raise ImageError(f"{views.source}: photos {seen[key]} and {name} have the same name (up to "
                             "extension and case); rename or remove one of them so every view is "
                             "unambiguous")
        seen[key] = name


def _check_count(views: PosedViews, min_images: int) -> None:
    n = len(views.names)
    if n < min_images:
        raise SceneError(f"NeX needs >= {min_images} photos, but {views.source} has only {n} posed "
                         f"photo(s). Take more overlapping photos of the scene and re-run `nex prepare`.")


# Scene units. Poses are used relative to the reference camera (in float64), so geo-referenced models far
# from the origin are fine; beyond this the file is damaged (and squared distances would overflow).
MAX_COORDINATE = 1e12


def _check_views(views: PosedViews) -> None:
    """Poses rigid and finite, intrinsics positive, bounds NaN or positive finite."""
    for name, cam in zip(views.names, views.cameras):
        with np.errstate(invalid="ignore", over="ignore"):  # huge values: reported as not orthonormal
            problem = pose_problem(cam.c2w)
        if problem:
            raise PoseError(f"{views.source}: the pose of {name} is invalid: {problem}. Re-run "
                            "`nex prepare` to recompute the poses.")
        if np.abs(cam.c2w[:3, 3]).max() > MAX_COORDINATE:
            raise PoseError(f"{views.source}: the camera of {name} is at {cam.c2w[:3, 3].tolist()}, more than "
                            f"{MAX_COORDINATE:g} units from the origin: the poses are damaged. "
                            "Re-run `nex prepare` to recompute them.")
        k = np.array([cam.fx, cam.fy, cam.cx, cam.cy])
        if not (np.all(np.isfinite(k)) and cam.fx > 0 and cam.fy > 0 and cam.width > 0 and cam.height > 0):
            raise PoseError(f"{views.source}: the intrinsics of {name} are invalid (size "
                            f"{cam.width}x{cam.height}, fx={cam.fx}, fy={cam.fy}, cx={cam.cx}, cy={cam.cy}): "
                            "fix them, or re-run `nex prepare` to recompute the camera")
    bounds = np.concatenate([views.near, views.far])
    if np.any(np.isinf(bounds)) or np.any(bounds[np.isfinite(bounds)] <= 0):
        raise PoseError(f"{views.source}: near/far bounds must be finite and positive (or absent); "
                        "fix them, or delete them and write planes.txt")


def _fit_to_photo(cam: Camera, size: tuple[int, int], source: Path, name: str) -> Camera:
    """The camera rescaled to the photo size on disk; the aspect ratios must agree."""
    width, height = size
    if (cam.width, cam.height) == (width, height):
        return cam
    predicted = cam.height * width / cam.width
    if abs(predicted - height) > 1.0 + 0.005 * height:
        raise ImageError(f"{name} is {width}x{height} but {source} describes the photos at "
                         f"{cam.width}x{cam.height}, a different aspect ratio. If the photos were rotated "
                         "(EXIF orientation) or cropped after the poses were computed, re-run `nex prepare`.")
    return cam.resized(width, height)


# ----------------------------------------------------------------------------------------- split, reference


def _split(views: PosedViews, holdout: int) -> tuple[list[int], list[int]]:
    n = len(views.names)
    if holdout == 0:
        test = []
    elif views.test_names is not None:
        wanted = set(views.test_names)
        test = [i for i, name in enumerate(views.names) if name in wanted]
    else:
        test = [i for i in range(n) if i % holdout == 0]
    held = set(test)
    train = [i for i in range(n) if i not in held]
    if not train:
        raise ConfigError(f"holdout={holdout} leaves no training views in {views.source}: use holdout=0 "
                          "or a value above 1")
    return train, test


def _nearest_to_mean(cameras: list[Camera], train_ids: list[int]) -> int:
    centers = np.stack([c.center for c in cameras])
    dists = np.linalg.norm(centers[train_ids] - centers.mean(0), axis=1)
    return train_ids[int(np.argmin(dists))]


def _matches(names: list[str], query: str) -> list[int]:
    for key in (lambda n: n, lambda n: Path(n).name, lambda n: Path(n).stem):
        hits = [i for i, n in enumerate(names) if key(n) == query]
        if hits:
            return hits
    return []


def _named_ref(names: list[str], query: str, train_ids: list[int], holdout: int) -> int:
    query = str(query)
    hits = _matches(names, query)
    if not hits:
        raise SceneError(f"reference image {query!r} is not in the scene; valid names: "
                         f"{_some([Path(n).name for n in names])}")
    if len(hits) > 1:
        raise SceneError(f"reference image {query!r} is ambiguous: {_some([names[i] for i in hits])}; "
                         "give the full name")
    if hits[0] not in train_ids:
        raise SceneError(f"reference image {query!r} is a held-out test view (holdout={holdout}); choose "
                         "a training view, or pass holdout=0")
    return hits[0]


# ----------------------------------------------------------------------------------------- entry point


def _check_arguments(width: int | None, holdout: int, min_images: int) -> None:
    if width is not None and (not isinstance(width, (int, np.integer)) or width < 1):
        raise ConfigError(f"width must be a positive whole number of pixels or None, got {width!r}")
    if not isinstance(holdout, (int, np.integer)) or holdout < 0:
        raise ConfigError(f"holdout must be a whole number >= 0 (0: no test views), got {holdout!r}")
    if min_images < 1:
        raise ConfigError(f"min_images must be >= 1, got {min_images!r}")


def _read_checked_views(root: Path, holdout: int, ref_image: str | None, min_images: int):
    """Read and check a scene's poses: (format, views, train ids, test ids, reference id)."""
    fmt = detect_format(root)
    views = _READERS[fmt](root)
    _check_names(views)
    _check_count(views, min_images)
    _check_views(views)
    train_ids, test_ids = _split(views, holdout)
    ref_id = (_named_ref(views.names, ref_image, train_ids, holdout) if ref_image
              else _nearest_to_mean(views.cameras, train_ids))
    return fmt, views, train_ids, test_ids, ref_id


def load_scene(root: Path | str, width: int | None = None, holdout: int = 8, ref_image: str | None = None,
               dmin: float | None = None, dmax: float | None = None, invz: bool | None = None,
               offset: int | None = None, min_images: int = MIN_IMAGES) -> Scene:
    """Load the posed photos in ``root`` (LLFF, COLMAP or Blender; see the module docstring).

    ``width`` resizes every photo (height by aspect ratio); ``holdout`` holds out every n-th view for
    testing; ``ref_image`` picks the reference view; ``dmin``/``dmax``/``invz``/``offset`` override the
    MPI plane placement. Raises SceneError (or its subclasses ImageError, PoseError) or ConfigError with
    a message that names the file at fault and says what to do.
    """
    _check_arguments(width, holdout, min_images)
    root = Path(root)
    fmt, views, train_ids, test_ids, ref_id = _read_checked_views(root, holdout, ref_image, min_images)
    planes = plane_spec(root, views, ref_id, dmin=dmin, dmax=dmax, invz=invz, offset=offset)
    paths = [root / name for name in views.names]
    size = image_size(paths[0])
    cameras = [_fit_to_photo(cam, size, views.source, name) for cam, name in zip(views.cameras, views.names)]
    images, disk_size = load_images(paths, width)
    if disk_size != size:
        raise ImageError(f"{paths[0]}: its header says {size[0]}x{size[1]} but it decodes to "
                         f"{disk_size[0]}x{disk_size[1]} (a malformed EXIF orientation?); re-export it")
    out_w, out_h = target_size(*size, width)
    cameras = [replace(cam.resized(out_w, out_h), name=name) for cam, name in zip(cameras, views.names)]
    return Scene(root=root, format=fmt, names=list(views.names), images=images, cameras=cameras,
                 near=np.asarray(views.near, dtype=np.float64).copy(),
                 far=np.asarray(views.far, dtype=np.float64).copy(),
                 train_ids=train_ids, test_ids=test_ids, ref_id=ref_id, planes=planes)


# ----------------------------------------------------------------------------------------- cameras only


@dataclass
class SceneCameras:
    """A scene's cameras, split and reference view, without its photos (see :func:`load_cameras`).

    Intrinsics refer to the photos' size on disk (``size``), not to any training width.
    """

    root: Path
    format: str  # "llff", "colmap", "blender"
    names: list[str]  # image paths relative to root, posix separators
    cameras: list[Camera]  # OpenCV convention, named after their images
    near: np.ndarray  # [N] float64, nan where unknown
    far: np.ndarray
    train_ids: list[int]
    test_ids: list[int]
    ref_id: int
    size: tuple[int, int]  # (width, height) of the photos on disk

    @property
    def ref_camera(self) -> Camera:
        return self.cameras[self.ref_id]


def load_cameras(root: Path | str, holdout: int = 8, ref_image: str | None = None,
                 min_images: int = MIN_IMAGES,
                 size_of: Callable[[Path], tuple[int, int]] | None = None) -> SceneCameras:
    """The cameras of the scene in ``root`` exactly as :func:`load_scene` sets them up (same format
    choice, checks, split and reference view), without decoding the photos.

    ``size_of(path) -> (width, height)`` gives the first photo's size (default: its header, with
    Pillow); pass another reader where Pillow is not available (the Blender add-on does).
    """
    _check_arguments(None, holdout, min_images)
    root = Path(root)
    fmt, views, train_ids, test_ids, ref_id = _read_checked_views(root, holdout, ref_image, min_images)
    first = root / views.names[0]
    if not first.is_file():
        raise ImageError(f"image {first} does not exist: restore it, or remove it from the camera poses")
    size = tuple(int(v) for v in (size_of or image_size)(first))
    cameras = [replace(_fit_to_photo(cam, size, views.source, name), name=name)
               for cam, name in zip(views.cameras, views.names)]
    return SceneCameras(root=root, format=fmt, names=list(views.names), cameras=cameras,
                        near=np.asarray(views.near, dtype=np.float64).copy(),
                        far=np.asarray(views.far, dtype=np.float64).copy(),
                        train_ids=train_ids, test_ids=test_ids, ref_id=ref_id, size=size)
