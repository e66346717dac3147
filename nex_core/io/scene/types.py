"""The data types scene loaders produce. Torch-free (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cameras import Camera


@dataclass
class PlaneSpec:
    """Where the MPI planes go, in the reference camera's frame.

    ``dmin``/``dmax`` are depths (reference-camera z, world units) of the nearest and farthest plane;
    ``offset`` is the MPI padding in pixels at the loaded resolution (``None``: the model chooses).
    """

    dmin: float
    dmax: float
    invz: bool
    offset: int | None
    source: str  # "bounds", "planes.txt" or "flags": where dmin/dmax came from


@dataclass
class Scene:
    """A posed image set ready for training, all views at one resolution."""

    root: Path
    format: str  # "llff", "colmap", "blender"
    names: list[str]  # image paths relative to root, posix separators
    images: np.ndarray = field(repr=False)  # [N, H, W, 3] float32 in [0, 1]
    cameras: list[Camera] = field(repr=False)  # OpenCV convention, intrinsics at the loaded resolution
    near: np.ndarray = field(repr=False)  # [N] float64, nan where unknown
    far: np.ndarray = field(repr=False)  # [N] float64, nan where unknown
    train_ids: list[int]
    test_ids: list[int]
    ref_id: int  # index into all views; always a training view
    planes: PlaneSpec

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def n_views(self) -> int:
        return len(self.names)

    def train_cameras(self) -> list[Camera]:
        """Cameras of the training views, in ``train_ids`` order."""
        return [self.cameras[i] for i in self.train_ids]

    def test_cameras(self) -> list[Camera]:
        """Cameras of the held-out views, in ``test_ids`` order."""
        return [self.cameras[i] for i in self.test_ids]

    @property
    def ref_camera(self) -> Camera:
        """The reference camera: the MPI lives in its frame."""
        return self.cameras[self.ref_id]


@dataclass
class PosedViews:
    """What a format reader returns, before images are loaded (internal to ``nex_core.io.scene``).

    Views are sorted by name. Each camera's ``width``/``height`` is the resolution its intrinsics refer
    to, which may differ from the images on disk (the loader rescales).
    """

    format: str
    source: Path  # the pose file or model folder, named in error messages
    names: list[str]
    cameras: list[Camera]
    near: np.ndarray
    far: np.ndarray
    test_names: list[str] | None = None  # a train/test split the format itself defines
