"""The scene folder ``nex prepare`` writes: its outputs, the checks before a run, building them in a work
folder and swapping them in so that a failed run leaves an existing scene as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..io.cameras import Camera, opencv_to_llff
from ..io.errors import ConfigError, ReconstructionError, SceneError
from .checks import point_depth_bounds
from .colmap_run import import_pycolmap
from .far_bound import FarBounds, far_bounds
from .photos import brief_list

WORK_DIR = ".nex-prepare"
REPORT_FILE = "prepare_report.json"
OUTPUTS = ("images", "sparse", "poses_bounds.npy", "hwf_cxcy.npy", REPORT_FILE, "planes.txt")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_paths(photos_dir: Path, scene_dir: Path) -> None:
    """The scene folder must not be, or hold, the photos."""
    if photos_dir == scene_dir:
        raise ConfigError(f"the scene folder must differ from the photo folder ({photos_dir}): pass --out "
                          "SCENE_DIR (default: <photos>_scene)")
    for name in ("images", "sparse", WORK_DIR):
        if _inside(photos_dir, scene_dir / name):
            raise ConfigError(f"the photos in {photos_dir} lie inside the output {scene_dir / name}, which "
                              "nex prepare replaces: move the photos to another folder (e.g. "
                              f"{scene_dir / 'photos'}) and prepare from there")


def existing_outputs(scene_dir: Path) -> list[str]:
    """The outputs of a previous run present in ``scene_dir``."""
    return [name for name in OUTPUTS if (scene_dir / name).exists()]


def check_existing(scene_dir: Path, force: bool) -> None:
    if scene_dir.exists() and not scene_dir.is_dir():
        raise ConfigError(f"{scene_dir} is a file: pass a folder as --out")
    found = existing_outputs(scene_dir)
    if found and not force:
        raise SceneError(f"{scene_dir} already holds a prepared scene ({', '.join(found)}): pass --force to "
                         "replace it (the old one stays until the new one is complete) or choose another --out")


def assemble_scene(undistorted: Path, staged: Path) -> None:
    """``images/`` and ``sparse/0/`` of the scene from ``undistort_images``' output folder."""
    staged.mkdir(parents=True)
    shutil.move(str(undistorted / "images"), str(staged / "images"))
    model = staged / "sparse" / "0"
    model.mkdir(parents=True)
    for item in (undistorted / "sparse").iterdir():
        if item.is_file():
            shutil.move(str(item), str(model / item.name))


def write_llff(staged: Path) -> tuple[np.ndarray, FarBounds, list[Camera]]:
    """``poses_bounds.npy`` and ``hwf_cxcy.npy`` from the undistorted model; returns (near, far bounds,
    cameras). A far bound at the triangulation limit moves out (:mod:`nex_core.sfm.far_bound`)."""
    from ..io.scene.colmap import read_colmap

    views = read_colmap(staged)  # cameras sorted by name, the order LLFF rows must have
    bounds = point_depth_bounds(import_pycolmap().Reconstruction(str(staged / "sparse" / "0")))
    near = np.array([bounds[Path(n).name][0] for n in views.names])
    far = np.array([bounds[Path(n).name][1] for n in views.names])
    bad = [n for n, lo, hi in zip(views.names, near, far) if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi)]
    if bad:
        raise ReconstructionError(f"no usable 3D points in front of the camera for {brief_list(bad)}: the model "
                                  "is inconsistent; take more overlapping photos")
    bounds_far = far_bounds(far, np.array([cam.c2w[:3, 3] for cam in views.cameras]), views.cameras[0].fx)
    far = bounds_far.far
    rows = []
    for cam, lo, hi in zip(views.cameras, near, far):
        hwf = np.array([[cam.height], [cam.width], [cam.fx]], dtype=np.float64)
        rows.append(np.concatenate([np.hstack([opencv_to_llff(cam.c2w), hwf]).ravel(), [lo, hi]]))
    np.save(staged / "poses_bounds.npy", np.asarray(rows, dtype=np.float64))
    cam = views.cameras[0]
    hwf_cxcy = np.array([cam.height, cam.width, cam.fx, cam.fy, cam.cx, cam.cy], dtype=np.float64)
    np.save(staged / "hwf_cxcy.npy", hwf_cxcy.reshape(6, 1))
    return near, bounds_far, views.cameras


def set_near(staged: Path, near: np.ndarray) -> None:
    """Replace the near bounds of ``poses_bounds.npy`` (one per photo, in file-name order)."""
    path = staged / "poses_bounds.npy"
    rows = np.load(path)
    rows[:, -2] = near
    np.save(path, rows)


def swap_in(staged: Path, scene_dir: Path, old_dir: Path) -> list[str]:
    """Replace the outputs in ``scene_dir`` with those in ``staged``; on failure put the old ones back.

    Returns the names of old outputs that were replaced (they end up in ``old_dir``).
    """
    old_dir.mkdir(parents=True, exist_ok=True)
    replaced = existing_outputs(scene_dir)
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in replaced:
            (scene_dir / name).rename(old_dir / name)
            moved_out.append(name)
        for item in sorted(staged.iterdir()):
            item.rename(scene_dir / item.name)
            moved_in.append(item.name)
    except OSError:
        for name in moved_in:
            (scene_dir / name).rename(staged / name)
        for name in moved_out:
            (old_dir / name).rename(scene_dir / name)
        raise
    return replaced
