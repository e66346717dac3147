"""A torch-free numpy renderer of a :class:`~nex_core.io.baked.BakedMPI`: the reference for every real-time
renderer (WebGL viewer, glTF shader, Blender node group).

For each target pixel: the ray in the reference frame; per plane its intersection (the same mapping as
``nex_core.model.mpi.plane_intersections`` and the plane homographies); bilinear texture reads at texel
centres (grid_sample ``align_corners=False``): alpha and k0 with zero padding, coefficients clamped to
the edge; coefficients read where the ray meets its layer's first plane; the basis read from the LUT at
the ray's (vx, vy), clamped to the LUT's range; ``clamp(k0 + sum_n k_n H_n, 0, 1)``; front-to-back over,
of the encoded values or in linear light as the MPI's ``compositing`` says.
"""

from __future__ import annotations

import numpy as np

from ..cameras import Camera, relative_pose
from .types import BakedMPI


def bilinear(img: np.ndarray, px: np.ndarray, py: np.ndarray, clamp: bool) -> np.ndarray:
    """Sample img [h, w, C] at continuous texel coordinates (integer = texel centre) -> [R, C].

    ``clamp``: positions beyond the border read the edge texels; otherwise they read zero.
    """
    h, w = img.shape[:2]
    x0 = np.floor(px)
    y0 = np.floor(py)
    fx = (px - x0).astype(np.float32)[:, None]
    fy = (py - y0).astype(np.float32)[:, None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    out = 0.0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        yi = y0 + dy
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi = x0 + dx
            weight = wy * wx
            if not clamp:
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                weight = weight * inside[:, None]
            out = out + weight * img[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
    return out


def camera_rays(ref: Camera, camera: Camera, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays of pixels (rows, cols) of ``camera`` in the reference frame: origins [3] and directions [R, 3]
    (not normalised: the pixel's camera-frame vector (x, y, 1) rotated into the reference frame)."""
    r, t = relative_pose(ref, camera)
    origin = -r.T @ t
    d_cam = np.stack([(cols + 0.5 - camera.cx) / camera.fx, (rows + 0.5 - camera.cy) / camera.fy,
                      np.ones(len(rows))], -1)
    # R^T d per row, written out: a BLAS call here would leave OpenBLAS threads spinning beside torch's.
    return origin, (d_cam[:, :, None] * r[None]).sum(1)


def basis_from_lut(baked: BakedMPI, dirs: np.ndarray) -> np.ndarray:
    """H_n at the unit directions of ``dirs`` [R, 3] -> [R, N], from the LUT (clamped to its range)."""
    info = baked.info
    v = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    (x0, x1), (y0, y1) = info.lut_vx, info.lut_vy
    tx = (np.clip(v[:, 0], x0, x1) - x0) / (x1 - x0) * (info.lut_width - 1)
    ty = (np.clip(v[:, 1], y0, y1) - y0) / (y1 - y0) * (info.lut_height - 1)
    return bilinear(np.moveaxis(baked.basis_lut, 0, -1), tx, ty, clamp=True)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function's inverse (encoded [0, 1] -> linear light)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (linear light, clipped to [0, 1] -> encoded)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def render_rays(baked: BakedMPI, origin: np.ndarray, dirs: np.ndarray,
                view_dependent: bool = True, linear_light: bool | None = None) -> np.ndarray:
    """Composite the baked MPI along rays (origin [3], dirs [R, 3], reference frame) -> RGBA [R, 4]
    (colour over black, i.e. premultiplied, and accumulated alpha).

    ``linear_light``: composite the planes' colours in linear light and encode the result as sRGB (what a
    renderer does with the colours converted to scene-linear under an sRGB display), or composite the
    sRGB-encoded values (False, the reference NeX's way); None: as the MPI was trained
    (``info.compositing``)."""
    info = baked.info
    if linear_light is None:
        linear_light = info.compositing == "linear"
    n_rays = dirs.shape[0]
    w_mpi, h_mpi = info.mpi_width, info.mpi_height
    dz = dirs[:, 2]
    dz = np.where(np.abs(dz) > 1e-8, dz, 1e-8)
    basis = basis_from_lut(baked, dirs) if view_dependent else None
    rgb = np.zeros((n_rays, 3), np.float32)
    trans = np.ones((n_rays, 1), np.float32)
    specular = np.zeros((n_rays, 3), np.float32)
    for j, depth in enumerate(info.depths):
        layer, sub = divmod(j, info.sublayers)
        s = (depth - origin[2]) / dz
        u = info.fx * (origin[0] + s * dirs[:, 0]) / depth + info.cx + info.offset
        v = info.fy * (origin[1] + s * dirs[:, 1]) / depth + info.cy + info.offset
        px, py = u - 0.5, v - 0.5  # texel-index coordinates: texel k's centre at k
        valid = (s > 0) & (np.abs(u * (2.0 / w_mpi) - 1.0) <= 1.0) & (np.abs(v * (2.0 / h_mpi) - 1.0) <= 1.0)
        if view_dependent and sub == 0:
            # The layer's coefficients are read here, at its first plane, and shared by its sublayers.
            coeffs = baked.coeffs[layer].reshape(h_mpi, w_mpi, -1)
            k = bilinear(coeffs, px, py, clamp=True).reshape(n_rays, 3, info.n_basis)
            specular = np.einsum("rcn,rn->rc", k, basis).astype(np.float32)
        alpha = bilinear(baked.alpha[j][..., None], px, py, clamp=False) * valid[:, None]
        color = bilinear(baked.k0[layer], px, py, clamp=False)
        if view_dependent:
            color = color + specular
        color = np.clip(color, 0.0, 1.0)
        if linear_light:
            color = srgb_to_linear(color)
        rgb += trans * alpha * color
        trans = trans * (1.0 - alpha)
    if linear_light:
        rgb = linear_to_srgb(rgb)
    return np.concatenate([rgb, 1.0 - trans], -1).astype(np.float32)


def render_baked(baked: BakedMPI, camera: Camera, view_dependent: bool = True,
                 chunk: int = 1 << 14, linear_light: bool | None = None) -> np.ndarray:
    """Render ``camera`` (its own size and intrinsics) -> float32 RGBA [H, W, 4]: colour composited over
    black plus accumulated alpha. ``view_dependent=False`` uses k0 only; ``linear_light``: see
    :func:`render_rays`."""
    ref = baked.info.ref_camera()
    rows, cols = np.divmod(np.arange(camera.width * camera.height), camera.width)
    out = np.empty((rows.size, 4), np.float32)
    for start in range(0, rows.size, chunk):
        sl = slice(start, start + chunk)
        origin, dirs = camera_rays(ref, camera, rows[sl].astype(np.float64), cols[sl].astype(np.float64))
        out[sl] = render_rays(baked, origin, dirs, view_dependent, linear_light)
    return out.reshape(camera.height, camera.width, 4)
