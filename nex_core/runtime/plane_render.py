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
from ..model.colour_space import linear_to_srgb, srgb_to_linear
from ..model.fused_mlp import fused_trunk, trunk_input
from ..model.mpi import CameraBatch, pixel_grid, rays_in_reference_frame, sample_planes
from ..model.nex_model import NexModel

Tensor = torch.Tensor
Progress = Callable[[int, int], None]  # (done, total)


class RenderStopped(Exception):
    """A render given ``should_stop`` was asked to stop (checked before each plane)."""


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

VIEW_STATE_BUDGET = 1e9  # bytes of per-view state in one pass of render_views


@dataclass
class _View:
    """One view's rays and its running composite. A pinhole view's rays share their origin, so where a ray
    meets plane z = d is affine in its slopes (dx/dz, dy/dz): a few operations per plane and pixel."""

    camera: Camera
    origin: tuple[float, float, float]  # reference frame
    slopes: Tensor  # [2, R]: dx/dz, dy/dz
    ahead: Tensor | None  # [R] rays going towards +z (None: all of them)
    basis: Tensor  # [R, N]
    colour: Tensor  # [3, R]
    transmittance: Tensor  # [R]
    specular: Tensor | None = None  # [3, R] of the current layer

    def hits(self, geom: MPIGeometry, depth: float) -> tuple[Tensor, Tensor, tuple | None, tuple | None]:
        """Where the rays meet plane z = ``depth``, as :func:`nex_core.model.mpi.plane_intersections`: coords
        [1, R, 2] (normalised), valid [R] (ahead of the camera, inside the MPI), the texel box bilinear reads
        at the valid ones and the box it reads at all of them clamped onto the MPI (None: empty)."""
        ox, oy, oz = self.origin
        w, h = geom.mpi_width, geom.mpi_height
        # gx = (fx * (ox + (d - oz) * dx/dz) / d + cx + offset) * 2 / W - 1, and likewise gy.
        scale = (depth - oz) / depth
        ax, bx = (geom.fx * ox / depth + geom.cx + geom.offset) * 2.0 / w - 1.0, geom.fx * scale * 2.0 / w
        ay, by = (geom.fy * oy / depth + geom.cy + geom.offset) * 2.0 / h - 1.0, geom.fy * scale * 2.0 / h
        coords = torch.empty(1, self.slopes.shape[1], 2, device=self.slopes.device)
        torch.add(torch.full_like(self.slopes[0], ax), self.slopes[0], alpha=bx, out=coords[0, :, 0])
        torch.add(torch.full_like(self.slopes[1], ay), self.slopes[1], alpha=by, out=coords[0, :, 1])
        lo, hi = (v.tolist() for v in coords[0].aminmax(dim=0))
        clamped = _box(*(min(max(x, -1.0), 1.0) for x in (lo[0], hi[0], lo[1], hi[1])), w, h)
        if depth <= oz:  # behind the camera
            return coords, torch.zeros_like(self.slopes[0], dtype=torch.bool), None, clamped
        valid = (coords[0].abs() <= 1.0).all(-1)
        if self.ahead is not None:
            valid &= self.ahead
        if not (lo[0] >= -1.0 and hi[0] <= 1.0 and lo[1] >= -1.0 and hi[1] <= 1.0) or self.ahead is not None:
            inside = coords[0][valid]
            if inside.shape[0] == 0:
                return coords, valid, None, clamped
            lo, hi = (v.tolist() for v in inside.aminmax(dim=0))
        return coords, valid, _box(lo[0], hi[0], lo[1], hi[1], w, h), clamped


def _view_rays(ref: Camera, camera: Camera, uv: Tensor, device: torch.device
               ) -> tuple[tuple[float, float, float], Tensor, Tensor | None, Tensor]:
    """The rays through ``uv`` of ``camera`` in the reference frame: origin, slopes [2, R], ahead [R] (None:
    all of them) and directions [R, 3]."""
    cams = CameraBatch.from_cameras(ref, [camera], device=device)
    origins, dirs = rays_in_reference_frame(cams, torch.zeros(uv.shape[0], dtype=torch.long, device=device), uv)
    dz = dirs[:, 2]
    ahead = dz > 1e-8
    safe = torch.where(ahead, dz, torch.ones_like(dz))
    slopes = torch.stack([dirs[:, 0] / safe, dirs[:, 1] / safe])
    origin = tuple(float(x) for x in cams.origin[0])
    return origin, slopes, None if bool(ahead.all()) else ahead, dirs


def _make_view(model: NexModel, ref: Camera, camera: Camera, device: torch.device) -> _View:
    uv = pixel_grid(camera.width, camera.height, device)
    origin, slopes, ahead, dirs = _view_rays(ref, camera, uv, device)
    basis = model.basis_values(F.normalize(dirs, dim=-1)).float()
    r = uv.shape[0]
    return _View(camera, origin, slopes, ahead, basis, torch.zeros(3, r, device=device), torch.ones(r, device=device))


def _sparse_pixels(camera: Camera, across: int = 32) -> Tensor:
    """Pixel centres along the four edges of ``camera``'s image and on a grid of about ``across`` per side
    inside, [R, 2] as (u, v): enough to bound a view's footprint on a plane, also where the MPI lies inside it."""
    w, h = camera.width, camera.height
    us = torch.arange(w, dtype=torch.float32) + 0.5
    vs = torch.arange(h, dtype=torch.float32) + 0.5
    edges = torch.cat([torch.stack([us, torch.full_like(us, 0.5)], -1),
                       torch.stack([us, torch.full_like(us, h - 0.5)], -1),
                       torch.stack([torch.full_like(vs, 0.5), vs], -1),
                       torch.stack([torch.full_like(vs, w - 0.5), vs], -1)])
    stride = max(1, min(w, h) // across)
    v, u = torch.meshgrid(vs[::stride], us[::stride], indexing="ij")
    return torch.cat([edges, torch.stack([u.reshape(-1), v.reshape(-1)], -1)])


def evaluated_texels(geom: MPIGeometry, sublayers: int, ref: Camera, cameras: list[Camera]) -> int:
    """About how many (texel, plane) points F_theta is evaluated at when :func:`render_views` renders
    ``cameras`` in one pass: each plane's box, as the render forms it, from the rays of a sparse set of each
    view's pixels (:func:`_sparse_pixels`). A render's cost is about this times the cost of one point; a
    per-view render's is pixels times planes."""
    device = torch.device("cpu")
    empty = torch.empty(0)
    views = []
    for cam in cameras:
        origin, slopes, ahead, _ = _view_rays(ref, cam, _sparse_pixels(cam), device)
        views.append(_View(cam, origin, slopes, ahead, empty, empty, empty))
    total = 0
    for j in range(geom.n_planes):
        box = _plane_box([view.hits(geom, geom.depths[j]) for view in views], first_sublayer=j % sublayers == 0)
        if box is not None:
            total += (box[1] - box[0]) * (box[3] - box[2])
    return total


def _box(x0: float, x1: float, y0: float, y1: float, width: int, height: int) -> tuple | None:
    """(row0, row1, col0, col1): the texels bilinear sampling reads between normalised x0..x1, y0..y1."""
    c0 = max(int(np.floor((x0 + 1.0) * 0.5 * width - 0.5)), 0)
    c1 = min(int(np.floor((x1 + 1.0) * 0.5 * width - 0.5)) + 2, width)
    r0 = max(int(np.floor((y0 + 1.0) * 0.5 * height - 0.5)), 0)
    r1 = min(int(np.floor((y1 + 1.0) * 0.5 * height - 0.5)) + 2, height)
    return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _union(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _plane_box(hits: list[tuple], first_sublayer: bool) -> tuple | None:
    """The texels of one plane that F_theta is evaluated at, from every view's :meth:`_View.hits`: where the
    views read it. Every sublayer of a layer reads its coefficients where the ray meets the layer's first
    plane, also off the MPI (the network extrapolates there; the texture is clamped to its edge), so that
    plane's box covers all the rays, clamped onto the MPI."""
    box = None
    for _, _, valid_box, all_box in hits:
        box = _union(box, all_box if first_sublayer else valid_box)
    return box


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
def _render_pass(model: NexModel, ref: Camera, cameras: list[Camera], chunk: int,
                 should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
    cfg, geom = model.cfg, model.geom
    device = next(model.parameters()).device
    h, w, n, S = geom.mpi_height, geom.mpi_width, cfg.basis_out, cfg.sublayers
    views = [_make_view(model, ref, cam, device) for cam in cameras]
    linear = cfg.compositing == "linear"  # composite as the model was trained (see mpi.composite_in)
    grid = texel_centres(geom, device).reshape(h, w, 2)
    alpha_tex = torch.zeros(1, 1, h, w, device=device)
    coeff_tex = torch.zeros(1, 3 * n, h, w, device=device)
    k0_all = model.k0_images().float()
    for j in range(geom.n_planes):
        if should_stop is not None and should_stop():
            raise RenderStopped(f"stopped at plane {j + 1} of {geom.n_planes}")
        layer, sub = divmod(j, S)
        hits = [v.hits(geom, geom.depths[j]) for v in views]
        box = _plane_box(hits, first_sublayer=sub == 0)
        if box is None:
            continue
        _evaluate_box(model, j, grid, box, chunk, alpha_tex, coeff_tex if sub == 0 else None)
        k0 = k0_all[layer:layer + 1]
        for view, (coords, valid, _, _) in zip(views, hits):
            if sub == 0:
                c = _sample_clamped(coeff_tex, coords)  # [3N, R]
                view.specular = (c.reshape(3, n, -1) * view.basis.T[None]).sum(1)
            a = _sample_clamped(alpha_tex, coords)[0] * valid  # [R]
            colour = torch.clamp(sample_planes(k0, coords)[0] + view.specular, 0.0, 1.0)
            if linear:
                colour = srgb_to_linear(colour)
            view.colour += colour * (a * view.transmittance)
            view.transmittance *= 1.0 - a
    if linear:
        for view in views:
            view.colour = linear_to_srgb(view.colour)
    return [v.colour.T.reshape(v.camera.height, v.camera.width, 3).cpu().numpy() for v in views]


def render_views(model: NexModel, ref: Camera, cameras: list[Camera], budget_bytes: float = VIEW_STATE_BUDGET,
                 texel_budget_bytes: float = 256e6, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Iterator[np.ndarray]:
    """Render ``cameras`` (each its own size and intrinsics) -> float32 RGB [H, W, 3] per camera, in order.

    The views are rendered in passes of at most ``budget_bytes`` of per-view state; each pass evaluates
    every plane once (F_theta in chunks of about ``texel_budget_bytes`` of activations). ``should_stop`` is
    polled before each plane; when it returns True the render raises :class:`RenderStopped`."""
    was_training = model.training
    model.eval()
    done = 0
    try:
        chunk = chunk_for(model, texel_budget_bytes)
        for group in view_groups(model, cameras, budget_bytes):
            for img in _render_pass(model, ref, [cameras[i] for i in group], chunk, should_stop):
                done += 1
                if progress:
                    progress(done, len(cameras))
                yield img
    finally:
        model.train(was_training)
