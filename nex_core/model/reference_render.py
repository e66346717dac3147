"""A slow, obviously-correct MPI renderer: the reference that :func:`.mpi.render_explicit_mpi` is tested
against (``tests/test_mpi.py``), not used by the library itself.

For every target pixel it builds the world-space ray, intersects it with each plane explicitly (plane
point and normal in world space), projects the hit into the reference camera, reads the plane texture
with a hand-written bilinear lookup, and composites front to back in a Python loop. float64 throughout.
"""

from __future__ import annotations

import numpy as np

from ..io.cameras import Camera


def bilinear(tex: np.ndarray, col: float, row: float) -> np.ndarray:
    """tex [C, h, w]; continuous (col, row) where integer values are texel centres; zero outside."""
    c, h, w = tex.shape
    c0, r0 = int(np.floor(col)), int(np.floor(row))
    fc, fr = col - c0, row - r0
    out = np.zeros(c)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            if 0 <= rr < h and 0 <= cc < w:
                out += wr * wc * tex[:, rr, cc]
    return out


def render_reference(rgba: np.ndarray, depths: list[float], offset: int, ref: Camera,
                     target: Camera) -> np.ndarray:
    """rgba [D, 4, H + 2 offset, W + 2 offset] straight alpha, plane 0 nearest -> [H_t, W_t, 4]."""
    n_planes, _, mh, mw = rgba.shape
    out = np.zeros((target.height, target.width, 4))
    k_inv = np.linalg.inv(target.K)
    normal = ref.c2w[:3, 2]
    for row in range(target.height):
        for col in range(target.width):
            origin = target.center
            direction = target.c2w[:3, :3] @ (k_inv @ np.array([col + 0.5, row + 0.5, 1.0]))
            color, trans = np.zeros(3), 1.0
            for i in range(n_planes):
                plane_point = ref.c2w[:3, :3] @ np.array([0.0, 0.0, depths[i]]) + ref.center
                denom = direction @ normal
                t = ((plane_point - origin) @ normal) / denom
                if t <= 0:
                    continue
                hit = origin + t * direction
                x_ref = ref.w2c[:3, :3] @ hit + ref.w2c[:3, 3]
                u = ref.fx * x_ref[0] / x_ref[2] + ref.cx
                v = ref.fy * x_ref[1] / x_ref[2] + ref.cy
                # Inside the padded MPI rectangle?
                if not (-offset <= u <= ref.width + offset and -offset <= v <= ref.height + offset):
                    continue
                texel = bilinear(rgba[i], u + offset - 0.5, v + offset - 0.5)
                a = texel[3]
                color += trans * a * texel[:3]
                trans *= 1.0 - a
            out[row, col, :3] = color
            out[row, col, 3] = 1.0 - trans
    return out
