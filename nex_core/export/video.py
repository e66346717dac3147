"""Fly-through videos of a trained run (mp4 through imageio-ffmpeg, or PNG frames)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import imageio.v2 as imageio
import numpy as np

from ..io.cameras import Camera, spiral_path
from ..io.errors import NexError
from ..runtime.render import render_image
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
    """Render cameras to uint8 frames."""
    frames = []
    for k, cam in enumerate(cameras):
        img = render_image(run.model, run.ref_camera, cam, run.cfg.train.render_chunk, run.amp_dtype)
        frames.append((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
        if progress:
            progress(k + 1, len(cameras))
    return frames


def write_mp4(frames: list[np.ndarray], path: Path, fps: int = 30) -> Path:
    """Encode frames as H.264 mp4 (sizes padded to even numbers, as yuv420p needs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    try:
        writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                    pixelformat="yuv420p")
    except Exception as exc:  # imageio raises several types when ffmpeg is missing
        raise NexError(f"cannot write {path}: ffmpeg is not available ({exc}); "
                       f"install imageio-ffmpeg or use --frames to write PNG frames") from None
    with writer:
        for f in frames:
            writer.append_data(np.pad(f, pad, mode="edge"))
    return path


def write_pngs(frames: list[np.ndarray], folder: Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"frame_{i:04d}.png"
        imageio.imwrite(p, f)
        paths.append(p)
    return paths
