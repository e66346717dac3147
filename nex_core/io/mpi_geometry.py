"""Where a multiplane image sits: the reference camera's intrinsics, the padding and the plane depths.

An MPI lives in the reference camera's frame (OpenCV axes: x right, y down, z forward). Plane ``i`` is
the plane ``z = depths[i]``; planes are ordered nearest first. Each plane carries an image of
``(height + 2 * offset) x (width + 2 * offset)`` pixels: the reference image's pixel grid padded by
``offset`` pixels on every side, so that novel views can see past the reference image border.

MPI pixel ``(col, row)`` has its centre at reference pixel coordinate ``(col - offset + 0.5,
row - offset + 0.5)``. Normalised MPI coordinates follow ``torch.nn.functional.grid_sample`` with
``align_corners=False``: ``-1`` is the left edge of the first MPI pixel and ``+1`` the right edge of the
last, so a texture of the MPI's size is sampled exactly at its pixel centres.

Torch-free: the trained model (``nex_core.model.mpi``) and the baked format (``nex_core.io.baked``)
share this one description.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cameras import Camera


def plane_depths(dmin: float, dmax: float, n: int, invz: bool) -> np.ndarray:
    """Depths of ``n`` planes from ``dmin`` to ``dmax`` (nearest first), equally spaced in depth or in
    inverse depth (``invz``)."""
    if not (0.0 < dmin < dmax):
        raise ValueError(f"need 0 < dmin < dmax, got dmin={dmin}, dmax={dmax}")
    if n == 1:
        return np.array([dmin], dtype=np.float64)
    if invz:
        return 1.0 / np.linspace(1.0 / dmin, 1.0 / dmax, n)
    return np.linspace(dmin, dmax, n)


@dataclass(frozen=True)
class MPIGeometry:
    """The reference camera's intrinsics, the padding and the plane depths of an MPI."""

    width: int  # reference image width (pixels), without padding
    height: int
    fx: float
    fy: float
    cx: float  # pixel-centre convention: pixel (col, row) has its centre at (col + 0.5, row + 0.5)
    cy: float
    offset: int  # padding in pixels on each side
    depths: tuple[float, ...]  # plane depths in the reference frame, nearest first

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(float(d) for d in self.depths))

    @property
    def mpi_width(self) -> int:
        """Width of a plane's image: the reference width plus the padding on both sides."""
        return self.width + 2 * self.offset

    @property
    def mpi_height(self) -> int:
        """Height of a plane's image: the reference height plus the padding on both sides."""
        return self.height + 2 * self.offset

    @property
    def n_planes(self) -> int:
        return len(self.depths)

    @classmethod
    def from_camera(cls, ref: Camera, offset: int, depths: np.ndarray) -> MPIGeometry:
        """The geometry of an MPI in front of ``ref`` with ``offset`` pixels of padding."""
        return cls(ref.width, ref.height, ref.fx, ref.fy, ref.cx, ref.cy, int(offset), tuple(depths))
