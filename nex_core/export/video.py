"""Fly-through videos of a trained run (mp4 through imageio-ffmpeg, or PNG frames)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import imageio.v2 as imageio
import numpy as np

from ..io.cameras import Camera, spiral_path
from ..io.errors import NexError, SceneError
from ..runtime.plane_render import render_views
from ..runtime.run import TrainedRun


def focus_depth(dmin: float, dmax: float) -> float:
    """The spiral's look-at depth: LLFF's weighted harmonic mean of the near and far plane depths."""
    return 1.0 / (0.25 / dmin + 0.75 / dmax)


def spiral_cameras(run: TrainedRun, n_frames: int = 60) -> list[Camera]:
    """Spiral-path cameras with the reference camera's intrinsics."""
    ref = run.ref_camera
    train = [run.scene.cameras[i] for i in run.scene.train_ids]
    depths = run.geom.depths
    poses = spiral_path(train, focus_depth(depths[0], depths[-1]), n_frames=n_frames)
    return [ref.with_pose(p) for p in poses]


def render_frames(run: TrainedRun, cameras: list[Camera],
                  progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Render cameras to uint8 frames, each plane evaluated once for all of them (runtime/plane_render.py)."""
    return [(np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            for img in render_views(run.model, run.ref_camera, cameras, progress=progress)]


def ffmpeg_missing() -> str | None:
    """Why imageio cannot encode mp4 here (no imageio-ffmpeg, no ffmpeg binary), or None when it can."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return "the imageio-ffmpeg package is not installed"
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        return str(exc)
    if not (Path(exe).is_file() or shutil.which(exe)):
        return f"{exe} (IMAGEIO_FFMPEG_EXE or imageio-ffmpeg's binary) does not exist"
    return None


def write_mp4(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    """Encode frames as H.264 mp4 (sizes padded to even numbers, as yuv420p needs). The video is written
    beside ``path`` first and moved into place once complete, so a failed write leaves an earlier one intact."""
    path = Path(path)
    missing = ffmpeg_missing()
    if missing:
        raise NexError(f"cannot write {path}: ffmpeg is not available ({missing}); "
                       f"install imageio-ffmpeg (pip install imageio-ffmpeg) or use --png to write PNG frames")
    h, w = frames[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = imageio.get_writer(partial, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                    macro_block_size=1, pixelformat="yuv420p")
        try:
            for f in frames:
                writer.append_data(np.pad(f, pad, mode="edge"))
        finally:  # imageio's context manager leaves ffmpeg running after an error
            writer.close()
        os.replace(partial, path)
    except (OSError, RuntimeError, ValueError) as exc:  # imageio reports ffmpeg's own failures as these
        if partial.parent.is_dir():
            partial.unlink(missing_ok=True)
        raise NexError(f"cannot write {path}: {_reason(exc)}; check that the folder is writable and has free space, "
                       f"or choose another with --out") from None
    return path


def _reason(exc: Exception) -> str:
    """An exception as a short reason: the OS's words and the file it names, else its text."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def view_file_names(labels: list[str]) -> list[str]:
    """``STEM.png`` for each view's image name; SceneError naming both photos when two share a stem
    (case-insensitively, as some file systems compare names), since one PNG would overwrite the other."""
    names = [f"{Path(label).stem}.png" for label in labels]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        k = first.setdefault(name.lower(), i)
        if k != i:
            raise SceneError(f"held-out views {labels[k]} and {labels[i]} would both be written as {name}; rename one "
                             f"of the photos, or render with --no-test-views")
    return names


def write_pngs(frames: list[np.ndarray], folder: Path, names: list[str] | None = None) -> list[Path]:
    """Write each frame once as ``folder/NAME`` (default ``frame_0000.png``, ...); a failed write is a
    NexError naming the file."""
    folder = Path(folder)
    names = names if names is not None else [f"frame_{i:04d}.png" for i in range(len(frames))]
    if len(names) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(names)} file names")
    paths = []
    for f, name in zip(frames, names):
        p = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            imageio.imwrite(p, f)
        except OSError as exc:
            raise NexError(f"cannot write {p}: {_reason(exc)}; check that the folder is writable and has "
                           f"free space, or choose another with --out") from None
        paths.append(p)
    return paths
