"""A small valid baked MPI for the reader tests (bad input, fuzz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_small_baked(dest: Path, seed: int = 0, max_texture: int = 64) -> Path:
    """A valid 2-layer x 2-sublayer baked MPI of 10 x 8 texels with 4 basis functions, written to ``dest``."""
    from nex_core.io.baked import BakedMPI, MPIInfo, write_baked

    rng = np.random.default_rng(seed)
    info = MPIInfo(width=8, height=6, fx=8.0, fy=8.0, cx=4.0, cy=3.0, offset=1, depths=(1.0, 2.0, 3.0, 4.0),
                   layers=2, sublayers=2, n_basis=4, basis_kind="learned", lut_width=4, lut_height=3,
                   lut_vx=(-0.5, 0.5), lut_vy=(-0.5, 0.5), ref_c2w=np.eye(4))
    h, w = info.mpi_height, info.mpi_width
    baked = BakedMPI(info, rng.uniform(0, 1, (4, h, w)).astype(np.float32),
                     rng.uniform(0, 1, (2, h, w, 3)).astype(np.float32),
                     rng.uniform(-1, 1, (2, h, w, 3, 4)).astype(np.float32),
                     rng.uniform(-1, 1, (4, 3, 4)).astype(np.float32))
    return write_baked(baked, dest, max_texture=max_texture, compress_level=1)
