"""Multiplane-image rays, sampling and compositing (torch).

Where an MPI sits, and its pixel and normalised-coordinate conventions, are described by
:class:`~nex_core.io.mpi_geometry.MPIGeometry`.

Rendering a target view intersects each target pixel's ray with every plane (equivalent to warping each
plane by its plane-induced homography, see :func:`plane_homographies`), samples the planes there and
composites front to back with the over operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..io.cameras import Camera, relative_pose
from ..io.mpi_geometry import MPIGeometry
from .colour_space import linear_to_srgb, srgb_to_linear

Tensor = torch.Tensor


def depths_tensor(geom: MPIGeometry, device: torch.device | str = "cpu", dtype=torch.float32) -> Tensor:
    """The plane depths of ``geom`` as a tensor [D]."""
    return torch.tensor(geom.depths, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Rays


@dataclass
class CameraBatch:
    """Cameras expressed relative to the reference camera, as tensors, for batched ray generation."""

    rot: Tensor  # [N, 3, 3] R with x_cam = R x_ref + t
    origin: Tensor  # [N, 3] camera centres in the reference frame
    intrinsics: Tensor  # [N, 4] fx, fy, cx, cy

    @classmethod
    def from_cameras(cls, ref: Camera, cameras: list[Camera], device: torch.device | str = "cpu",
                     dtype=torch.float32) -> "CameraBatch":
        rots, origins, intr = [], [], []
        for cam in cameras:
            r, t = relative_pose(ref, cam)
            rots.append(r)
            origins.append(-r.T @ t)
            intr.append([cam.fx, cam.fy, cam.cx, cam.cy])
        as_t = lambda a: torch.tensor(np.asarray(a), device=device, dtype=dtype)  # noqa: E731
        return cls(as_t(rots), as_t(origins), as_t(intr))

    def to(self, device: torch.device | str) -> "CameraBatch":
        return CameraBatch(self.rot.to(device), self.origin.to(device), self.intrinsics.to(device))


def rays_in_reference_frame(cams: CameraBatch, cam_idx: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through pixel positions ``uv`` [R, 2] (pixel-centre convention) of cameras ``cam_idx`` [R].

    Returns origins [R, 3] and directions [R, 3] in the reference camera frame. Directions are not
    normalised: they are the pixel's camera-frame vector ``(x, y, 1)`` rotated into the reference frame.
    """
    intr = cams.intrinsics[cam_idx]
    d_cam = torch.stack([(uv[:, 0] - intr[:, 2]) / intr[:, 0],
                         (uv[:, 1] - intr[:, 3]) / intr[:, 1],
                         torch.ones_like(uv[:, 0])], -1)
    # R^T d: rotate camera-frame directions into the reference frame.
    dirs = torch.einsum("rji,rj->ri", cams.rot[cam_idx], d_cam)
    return cams.origin[cam_idx], dirs


def pixel_grid(width: int, height: int, device: torch.device | str = "cpu") -> Tensor:
    """Pixel-centre coordinates of a whole image, row-major, [H * W, 2] as (u, v)."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) + 0.5,
                          torch.arange(width, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], -1)


def plane_intersections(geom: MPIGeometry, origins: Tensor, dirs: Tensor,
                        depths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Where each ray meets each plane, in normalised MPI coordinates.

    origins, dirs: [R, 3] in the reference frame. Returns ``coords`` [D, R, 2] (x, y in the
    grid_sample convention) and ``valid`` [D, R] (the ray reaches the plane in front of its origin and
    lands inside the padded MPI).
    """
    if depths is None:
        depths = depths_tensor(geom, origins.device, origins.dtype)
    dz = dirs[:, 2]
    safe_dz = torch.where(dz.abs() > 1e-8, dz, torch.full_like(dz, 1e-8))
    s = (depths[:, None] - origins[None, :, 2]) / safe_dz[None, :]  # [D, R]
    x = origins[None, :, 0] + s * dirs[None, :, 0]
    y = origins[None, :, 1] + s * dirs[None, :, 1]
    u = geom.fx * x / depths[:, None] + geom.cx
    v = geom.fy * y / depths[:, None] + geom.cy
    gx = (u + geom.offset) * (2.0 / geom.mpi_width) - 1.0
    gy = (v + geom.offset) * (2.0 / geom.mpi_height) - 1.0
    coords = torch.stack([gx, gy], -1)
    valid = (s > 0) & (gx.abs() <= 1.0) & (gy.abs() <= 1.0)
    return coords, valid


def plane_homographies(geom: MPIGeometry, ref: Camera, target: Camera) -> np.ndarray:
    """Plane-induced homographies [D, 3, 3] taking homogeneous target pixels to reference pixels.

    For plane ``z = d`` in the reference frame, with ``x_t = R x_r + t`` and target centre ``o = -R^T t``:
    ``H = K_ref [o e3^T + (d - o_z) I] R^T K_t^-1``. Used by texture-only renderers (the baked MPI and
    its real-time viewers); :func:`plane_intersections` computes the same mapping ray by ray.
    """
    r, t = relative_pose(ref, target)
    o = -r.T @ t
    k_ref = np.array([[geom.fx, 0, geom.cx], [0, geom.fy, geom.cy], [0, 0, 1.0]])
    k_t_inv = np.linalg.inv(target.K)
    e3 = np.array([0.0, 0.0, 1.0])
    hs = [k_ref @ (np.outer(o, e3) + (d - o[2]) * np.eye(3)) @ r.T @ k_t_inv for d in geom.depths]
    return np.stack(hs)


# --------------------------------------------------------------------------------------------------
# Sampling and compositing


def sample_planes(textures: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample per-plane textures at per-plane positions.

    textures: [P, C, h, w]; coords: [P, R, 2] normalised (grid_sample, align_corners=False).
    Returns [P, C, R]; positions outside the texture read zero.
    """
    out = F.grid_sample(textures, coords[:, :, None, :], mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out[..., 0]


def transmittance(alpha: Tensor) -> Tensor:
    """Exclusive front-to-back transmittance prod_{j<i} (1 - alpha_j) along dim 0; alpha [D, ...]."""
    ones = torch.ones_like(alpha[:1])
    return torch.cumprod(torch.cat([ones, 1.0 - alpha[:-1]], 0), 0)


def composite_over(rgb: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Front-to-back over compositing.

    rgb: [D, C, R]; alpha: [D, 1, R] (plane 0 nearest). Returns (colour [C, R], accumulated alpha [1, R]):
    ``C = sum_i c_i a_i prod_{j<i} (1 - a_j)``.
    """
    weights = alpha * transmittance(alpha)
    return (weights * rgb).sum(0), weights.sum(0)


def composite_in(space: str, rgb: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Front-to-back over of ``rgb`` [D, C, R] (encoded sRGB in [0, 1]) with ``alpha`` [D, 1, R] in ``space``:
    "srgb" composites the encoded values (the reference NeX), "linear" decodes each plane's colour to
    linear light, composites and encodes the result. Returns (encoded colour over black [C, R], alpha [1, R])."""
    if space == "linear":
        colour, acc = composite_over(srgb_to_linear(rgb), alpha)
        return linear_to_srgb(colour), acc
    if space != "srgb":
        raise ValueError(f"unknown compositing space {space!r} (srgb or linear)")
    return composite_over(rgb, alpha)


def render_explicit_mpi(rgba: Tensor, geom: MPIGeometry, ref: Camera, target: Camera,
                        chunk: int = 1 << 16, compositing: str = "srgb") -> Tensor:
    """Render an explicit RGBA MPI [D, 4, H', W'] (straight alpha) from ``target``: [H, W, 4] image,
    compositing in ``compositing`` (see :func:`composite_in`).

    The fast counterpart of :func:`.reference_render.render_reference`; also the torch renderer of baked MPIs.
    """
    device = rgba.device
    cams = CameraBatch.from_cameras(ref, [target], device=device, dtype=rgba.dtype)
    uv = pixel_grid(target.width, target.height, device).to(rgba.dtype)
    out = []
    for start in range(0, uv.shape[0], chunk):
        part = uv[start:start + chunk]
        o, d = rays_in_reference_frame(cams, torch.zeros(part.shape[0], dtype=torch.long, device=device), part)
        coords, valid = plane_intersections(geom, o, d, depths_tensor(geom, device, rgba.dtype))
        samples = sample_planes(rgba, coords)  # [D, 4, R]
        alpha = samples[:, 3:4] * valid[:, None].to(rgba.dtype)
        color, acc = composite_in(compositing, samples[:, :3], alpha)
        out.append(torch.cat([color, acc], 0).T)
    return torch.cat(out, 0).reshape(target.height, target.width, 4)
