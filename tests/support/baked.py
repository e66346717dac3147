"""Small valid baked MPIs with random contents, for the reader, packaging and format tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_baked(info, rng: np.random.Generator):
    """A BakedMPI of ``info``'s shape: alpha and k0 uniform in [0, 1], coefficients and the basis LUT
    uniform in [-1, 1] (drawn in that order)."""
    from nex_core.io.baked import BakedMPI

    h, w = info.mpi_height, info.mpi_width
    return BakedMPI(info, rng.uniform(0, 1, (info.n_planes, h, w)).astype(np.float32),
                    rng.uniform(0, 1, (info.layers, h, w, 3)).astype(np.float32),
                    rng.uniform(-1, 1, (info.layers, h, w, 3, info.n_basis)).astype(np.float32),
                    rng.uniform(-1, 1, (info.n_basis, info.lut_height, info.lut_width)).astype(np.float32))


def write_small_baked(dest: Path, seed: int = 0, max_texture: int = 64) -> Path:
    """A valid 2-layer x 2-sublayer baked MPI of 10 x 8 texels with 4 basis functions, written to ``dest``."""
    from nex_core.io.baked import MPIInfo, write_baked

    info = MPIInfo(width=8, height=6, fx=8.0, fy=8.0, cx=4.0, cy=3.0, offset=1, depths=(1.0, 2.0, 3.0, 4.0),
                   layers=2, sublayers=2, n_basis=4, basis_kind="learned", lut_width=4, lut_height=3,
                   lut_vx=(-0.5, 0.5), lut_vy=(-0.5, 0.5), ref_c2w=np.eye(4))
    return write_baked(random_baked(info, np.random.default_rng(seed)), dest, max_texture=max_texture,
                       compress_level=1)
