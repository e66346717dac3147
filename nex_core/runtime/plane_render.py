"""Rendering many views of a NeX model by evaluating its per-plane outputs once for all of them.

The networks' per-plane outputs (alpha, and per layer the coefficients) are functions of the MPI position
and the plane, not of the view: only the basis ``H_n(v)`` is. So instead of running F_theta at every
(pixel, plane) of every view, each plane is evaluated once on its texel grid (the bake's grid, with the
bake's code) and every view samples it bilinearly, compositing front to back: each view keeps a running
colour and transmittance per pixel, so only one plane's textures are alive at a time.

Only the texels some view can read are evaluated (the bounding box of the views' footprints on each
plane), so views near the reference skip most of the MPI's padding.

What it equals: the per-view render (:func:`nex_core.runtime.render.render_image`) wherever the rays meet
the planes at texel centres (the reference view, to rounding); elsewhere alpha and the coefficients are
interpolated between texel centres rather than evaluated where the ray lands, which is what the baked MPI
does too. Memory: :func:`view_state_bytes` per view of a pass plus one plane's textures
(:func:`plane_texture_bytes`); views beyond ``budget_bytes`` go to further passes (each re-evaluates the
planes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..io.cameras import Camera
from ..io.mpi_geometry import MPIGeometry
from ..model.fused_mlp import fused_trunk, trunk_input
from ..model.mpi import CameraBatch, pixel_grid, plane_intersections, rays_in_reference_frame, sample_planes
from ..model.nex_model import NexModel

Tensor = torch.Tensor
Progress = Callable[[int, int], None]  # (done, total)


# --------------------------------------------------------------------------------------------------
# F_theta on the texel grid (shared with the bake)


def texel_centres(geom: MPIGeometry, device: torch.device | str = "cpu") -> Tensor:
    """Normalised (grid_sample, align_corners=False) coordinates of every MPI texel centre, row-major,
    [H' * W', 2]."""
    xs = (torch.arange(geom.mpi_width, dtype=torch.float64) + 0.5) * (2.0 / geom.mpi_width) - 1.0
    ys = (torch.arange(geom.mpi_height, dtype=torch.float64) + 0.5) * (2.0 / geom.mpi_height) - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1).float().to(device)


def chunk_for(model: NexModel, budget_bytes: float) -> int:
    """Texels per F_theta call so its activations (encoding, two hidden layers, outputs) stay within
    about ``budget_bytes``."""
    cfg = model.cfg
    n_in = 4 * cfg.pos_level + 2 * cfg.depth_level
    per_texel = (2 * n_in + 3 * cfg.hidden + 2 * (1 + 3 * cfg.basis_out)) * 4
    return int(max(1024, min(1 << 18, budget_bytes // per_texel)))


@torch.no_grad()
def iter_plane_values(model: NexModel, plane: int, coords: Tensor, chunk: int,
                      with_coeffs: bool) -> Iterator[tuple[int, Tensor, Tensor | None]]:
    """F_theta over ``coords`` [T, 2] of one plane, chunk by chunk: (start, alpha [t] after its sigmoid,
    coefficients [t, 3N] after tanh or None), float32 on the model's device."""
    index = torch.tensor([plane], device=coords.device)
    offset = model.sigmoid_offset
    fused = model.cfg.field == "mlp" and model.use_fused_mlp(coords.device)
    for s in range(0, coords.shape[0], chunk):
        if fused:  # the same values as plane_outputs, faster on CPUs (nex_core/model/fused_mlp.py)
            x = trunk_input(coords[None, s:s + chunk], model.pos_freqs, model.plane_pe[plane:plane + 1], coords.dtype)
            layers = [m for m in list(model.coeff_mlp)[:-1] if isinstance(m, torch.nn.Linear)]
            logit, coeff = fused_trunk(x, layers, model.coeff_mlp[-1], model.cfg.lrelu_slope, 1)
            out = torch.cat([logit[0, :, None], coeff[0]], -1).float()
        else:
            out = model.plane_outputs(coords[None, s:s + chunk], index)[0].float()
        yield s, torch.sigmoid(out[:, 0] - offset), torch.tanh(out[:, 1:]) if with_coeffs else None


# --------------------------------------------------------------------------------------------------
# Memory


def view_state_bytes(model: NexModel, camera: Camera) -> int:
    """Bytes one view holds during a pass: colour and transmittance, ray origins and directions, the
    basis values, and one plane's intersections and samples (the largest: the coefficients)."""
    n = model.cfg.basis_out
    per_pixel = 4 * (3 + 1) + 4 * 6 + 4 * n + 4 * 2 + 1 + 4 * (3 * n + 3 + 3)
    return camera.width * camera.height * per_pixel


def plane_texture_bytes(geom: MPIGeometry, n_basis: int) -> int:
    """Bytes of one plane's textures on the texel grid: alpha, the layer's coefficients and k0, and the
    grid's coordinates."""
    return geom.mpi_width * geom.mpi_height * 4 * (1 + 3 * n_basis + 3 + 2)


def view_groups(model: NexModel, cameras: list[Camera], budget_bytes: float) -> list[list[int]]:
    """Consecutive camera indices per pass, each pass's views within ``budget_bytes`` (at least one)."""
    groups: list[list[int]] = []
    used = budget_bytes  # forces a new group at the start
    for i, cam in enumerate(cameras):
        need = view_state_bytes(model, cam)
        if used + need > budget_bytes or not groups:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += need
    return groups


# --------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class _View:
    """One view's rays and its running composite."""

    camera: Camera
    origins: Tensor  # [R, 3], reference frame
    dirs: Tensor  # [R, 3]
    basis: Tensor  # [R, N]
    colour: Tensor  # [3, R]
    transmittance: Tensor  # [R]
    specular: Tensor | None = None  # [3, R] of the current layer


def _make_view(model: NexModel, ref: Camera, camera: Camera, device: torch.device) -> _View:
    cams = CameraBatch.from_cameras(ref, [camera], device=device)
    uv = pixel_grid(camera.width, camera.height, device)
    origins, dirs = rays_in_reference_frame(cams, torch.zeros(uv.shape[0], dtype=torch.long, device=device), uv)
    basis = model.basis_values(F.normalize(dirs, dim=-1)).float()
    r = uv.shape[0]
    return _View(camera, origins, dirs, basis, torch.zeros(3, r, device=device), torch.ones(r, device=device))


def _footprint(coords: Tensor, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1): the texels bilinear sampling at ``coords`` [R, 2] reads, or None."""
    if coords.shape[0] == 0:
        return None
    x = (coords[:, 0] + 1.0) * (0.5 * width) - 0.5
    y = (coords[:, 1] + 1.0) * (0.5 * height) - 0.5
    c0, c1 = int(torch.floor(x.min())), int(torch.floor(x.max())) + 2
    r0, r1 = int(torch.floor(y.min())), int(torch.floor(y.max())) + 2
    c0, c1, r0, r1 = max(c0, 0), min(c1, width), max(r0, 0), min(r1, height)
    return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _union(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _evaluate_box(model: NexModel, plane: int, grid: Tensor, box: tuple, chunk: int, alpha_tex: Tensor,
                  coeff_tex: Tensor | None) -> None:
    """F_theta on the texels of ``box`` into the full-size textures [1, C, H', W'] (zero elsewhere)."""
    r0, r1, c0, c1 = box
    coords = grid[r0:r1, c0:c1].reshape(-1, 2)
    alpha = torch.empty(coords.shape[0], device=coords.device)
    coeffs = None if coeff_tex is None else torch.empty(coords.shape[0], coeff_tex.shape[1], device=coords.device)
    for s, a, c in iter_plane_values(model, plane, coords, chunk, coeff_tex is not None):
        alpha[s:s + a.shape[0]] = a
        if coeffs is not None:
            coeffs[s:s + c.shape[0]] = c
    alpha_tex.zero_()
    alpha_tex[0, 0, r0:r1, c0:c1] = alpha.reshape(r1 - r0, c1 - c0)
    if coeff_tex is not None:
        coeff_tex.zero_()
        coeff_tex[0, :, r0:r1, c0:c1] = coeffs.reshape(r1 - r0, c1 - c0, -1).permute(2, 0, 1)


def _sample_clamped(texture: Tensor, coords: Tensor) -> Tensor:
    """Bilinear samples of texture [1, C, H', W'] at coords [1, R, 2], edge texels repeated outside
    (the network's values between the outer texel centres and the MPI's edge) -> [C, R]."""
    return F.grid_sample(texture, coords[:, :, None, :], mode="bilinear", padding_mode="border",
                         align_corners=False)[0, :, :, 0]


@torch.no_grad()
def _render_pass(model: NexModel, ref: Camera, cameras: list[Camera], chunk: int) -> list[np.ndarray]:
    cfg, geom = model.cfg, model.geom
    device = next(model.parameters()).device
    h, w, n, S = geom.mpi_height, geom.mpi_width, cfg.basis_out, cfg.sublayers
    views = [_make_view(model, ref, cam, device) for cam in cameras]
    grid = texel_centres(geom, device).reshape(h, w, 2)
    alpha_tex = torch.zeros(1, 1, h, w, device=device)
    coeff_tex = torch.zeros(1, 3 * n, h, w, device=device)
    k0_all = model.k0_images().float()
    for j in range(geom.n_planes):
        layer, sub = divmod(j, S)
        depth = model.depths[j:j + 1]
        hits = [plane_intersections(geom, v.origins, v.dirs, depth) for v in views]  # ([1, R, 2], [1, R])
        box = None
        for coords, valid in hits:
            box = _union(box, _footprint(coords[0][valid[0]], w, h))
        if sub == 0:
            # Every sublayer of the layer reads its coefficients where the ray meets this (first) plane, also
            # off the MPI (the network extrapolates there; the texture is clamped to its edge).
            for coords, _ in hits:
                box = _union(box, _footprint(coords[0].clamp(-1.0, 1.0), w, h))
        if box is None:
            continue
        _evaluate_box(model, j, grid, box, chunk, alpha_tex, coeff_tex if sub == 0 else None)
        k0 = k0_all[layer:layer + 1]
        for view, (coords, valid) in zip(views, hits):
            if sub == 0:
                c = _sample_clamped(coeff_tex, coords)  # [3N, R]
                view.specular = (c.reshape(3, n, -1) * view.basis.T[None]).sum(1)
            a = _sample_clamped(alpha_tex, coords)[0] * valid[0]  # [R]
            colour = torch.clamp(sample_planes(k0, coords)[0] + view.specular, 0.0, 1.0)
            view.colour += colour * (a * view.transmittance)
            view.transmittance *= 1.0 - a
    return [v.colour.T.reshape(v.camera.height, v.camera.width, 3).cpu().numpy() for v in views]


def render_views(model: NexModel, ref: Camera, cameras: list[Camera], budget_bytes: float = 1e9,
                 texel_budget_bytes: float = 256e6, progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Render ``cameras`` (each its own size and intrinsics) -> float32 RGB [H, W, 3] per camera, in order.

    The views are rendered in passes of at most ``budget_bytes`` of per-view state; each pass evaluates
    every plane once (F_theta in chunks of about ``texel_budget_bytes`` of activations)."""
    was_training = model.training
    model.eval()
    done = 0
    try:
        chunk = chunk_for(model, texel_budget_bytes)
        for group in view_groups(model, cameras, budget_bytes):
            for img in _render_pass(model, ref, [cameras[i] for i in group], chunk):
                done += 1
                if progress:
                    progress(done, len(cameras))
                yield img
    finally:
        model.train(was_training)
