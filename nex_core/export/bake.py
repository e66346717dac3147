"""Baking a trained NeX into textures: F_theta evaluated once over the MPI grid, G_phi over a LUT.

Per plane, alpha at every texel centre; per layer, the coefficients from F_theta at the layer's first
plane (the plane code of its first sublayer, as the model shares them) and ``k0 = sigmoid(k0)``; the
basis over a (vx, vy) grid spanning the view directions of the training cameras. Planes are evaluated
one at a time in bounded chunks, so memory stays small even for 1408 x 1156 texels x 192 planes; the
streaming path (:func:`bake_run`) keeps only 8-bit atlases in memory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from ..io.baked import BakedMPI, BakedWriter, MPIInfo
from ..io.cameras import Camera, relative_pose
from ..io.mpi_geometry import MPIGeometry
from ..io.run_files import RunFiles
from ..model.nex_model import NexModel
from ..runtime.plane_render import chunk_for, iter_plane_values, texel_centres  # noqa: F401 (shared)

Progress = Callable[[int, int], None]  # (done, total)


class _Sink(Protocol):
    """Receives the baked pieces; the arrays passed are reused afterwards, so a sink copies them."""

    def add_alpha(self, plane: int, alpha: np.ndarray) -> None: ...
    def add_layer(self, layer: int, k0: np.ndarray, coeffs: np.ndarray) -> None: ...
    def add_basis_lut(self, lut: np.ndarray) -> None: ...


# --------------------------------------------------------------------------------------------------
# The view-direction range and the basis LUT


def view_direction_range(ref: Camera, cameras: list[Camera], margin: float = 0.05,
                         samples: int = 33) -> tuple[tuple[float, float], tuple[float, float]]:
    """(vx range, vy range) of the unit ray directions, in the reference frame, of ``cameras`` over
    their whole image (a ``samples`` x ``samples`` grid from edge to edge), widened by ``margin`` of
    the span on each side (and at least 0.01), clipped to [-1, 1]."""
    vx, vy = [], []
    for cam in cameras:
        r, _ = relative_pose(ref, cam)
        u, v = np.meshgrid(np.linspace(0.0, cam.width, samples), np.linspace(0.0, cam.height, samples))
        d_cam = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1).reshape(-1, 3)
        d = (d_cam[:, :, None] * r[None]).sum(1)  # R^T d per row
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        vx.append(d[:, 0])
        vy.append(d[:, 1])
    out = []
    for values in (np.concatenate(vx), np.concatenate(vy)):
        lo, hi = float(values.min()), float(values.max())
        pad = max(margin * (hi - lo), 0.01)
        out.append((max(-1.0, lo - pad), min(1.0, hi + pad)))
    return out[0], out[1]


@torch.no_grad()
def basis_lut(model: NexModel, vx_range: tuple[float, float], vy_range: tuple[float, float],
              width: int, height: int) -> np.ndarray:
    """H_n over a grid whose edge texels sit on the range's edges -> [N, height, width] in [-1, 1]."""
    device = next(model.parameters()).device
    vy, vx = torch.meshgrid(torch.linspace(vy_range[0], vy_range[1], height, dtype=torch.float64),
                            torch.linspace(vx_range[0], vx_range[1], width, dtype=torch.float64), indexing="ij")
    vz = torch.sqrt(torch.clamp(1.0 - vx ** 2 - vy ** 2, min=0.0))
    v = torch.stack([vx, vy, vz], -1).reshape(-1, 3).float().to(device)
    values = model.basis_values(v).float().cpu().numpy()  # [h * w, N]
    return values.T.reshape(-1, height, width).astype(np.float32)


def camera_span(ref: Camera, cameras: list[Camera]) -> dict[str, list[float]]:
    """The box the cameras' centres span, in the reference camera frame (OpenCV axes): where a
    real-time viewer may move its camera. ``{"min": [x, y, z], "max": [x, y, z]}``."""
    centres = np.stack([(ref.w2c @ np.append(c.center, 1.0))[:3] for c in cameras] + [np.zeros(3)])
    return {"min": [float(x) for x in centres.min(0)], "max": [float(x) for x in centres.max(0)]}


# --------------------------------------------------------------------------------------------------
# The MPI grid


@torch.no_grad()
def plane_values(model: NexModel, plane: int, coords: torch.Tensor, chunk: int, alpha: np.ndarray,
                 coeffs: np.ndarray | None) -> None:
    """F_theta over ``coords`` [T, 2] of one plane, chunk by chunk, into ``alpha`` [T] (after its
    sigmoid) and, when given, ``coeffs`` [T, 3N] (after tanh): preallocated float32 arrays."""
    for s, a, c in iter_plane_values(model, plane, coords, chunk, coeffs is not None):
        alpha[s:s + a.shape[0]] = a.cpu().numpy()
        if c is not None:
            coeffs[s:s + c.shape[0]] = c.cpu().numpy()


@torch.no_grad()
def _bake_planes(model: NexModel, sink: _Sink, chunk: int, progress: Progress | None) -> None:
    """Evaluate every plane and hand alpha (per plane) and k0 + coefficients (per layer) to ``sink``."""
    cfg, geom = model.cfg, model.geom
    device = next(model.parameters()).device
    h, w, n = geom.mpi_height, geom.mpi_width, cfg.basis_out
    coords = texel_centres(geom, device)
    alpha = np.empty(h * w, np.float32)  # reused for every plane
    coeffs = np.empty((h * w, 3 * n), np.float32)  # reused for every layer
    was_training = model.training
    model.eval()
    try:
        for j in range(geom.n_planes):
            layer, sub = divmod(j, cfg.sublayers)
            first = sub == 0  # a layer's coefficients come from its first plane
            plane_values(model, j, coords, chunk, alpha, coeffs if first else None)
            sink.add_alpha(j, alpha.reshape(h, w))
            if first:
                k0 = torch.sigmoid(model.k0[layer].float()).permute(1, 2, 0).cpu().numpy()
                sink.add_layer(layer, k0, coeffs.reshape(h, w, 3, n))
            if progress:
                progress(j + 1, geom.n_planes)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------------
# Entry points


def mpi_info(model: NexModel, geom: MPIGeometry, ref_camera: Camera, train_cameras: list[Camera],
             lut_size: int = 256, invz: bool | None = None, metadata: dict | None = None,
             lut_margin: float = 0.05) -> MPIInfo:
    """The baked MPI's description: geometry, reference pose, basis and the LUT's (vx, vy) range."""
    vx, vy = view_direction_range(ref_camera, train_cameras, lut_margin)
    cfg = model.cfg
    return MPIInfo.from_geometry(geom, layers=cfg.layers, sublayers=cfg.sublayers, n_basis=cfg.basis_out,
                                 basis_kind=cfg.basis, lut_width=lut_size, lut_height=lut_size, lut_vx=vx,
                                 lut_vy=vy, ref_c2w=ref_camera.c2w, invz=invz, compositing=cfg.compositing,
                                 metadata=dict(metadata or {}))


class _Arrays:
    """A sink that collects float32 arrays (for in-memory bakes of modest size)."""

    def __init__(self, info: MPIInfo):
        h, w, n = info.mpi_height, info.mpi_width, info.n_basis
        self.alpha = np.zeros((info.n_planes, h, w), np.float32)
        self.k0 = np.zeros((info.layers, h, w, 3), np.float32)
        self.coeffs = np.zeros((info.layers, h, w, 3, n), np.float32)
        self.lut = np.zeros((n, info.lut_height, info.lut_width), np.float32)

    def add_alpha(self, plane: int, alpha: np.ndarray) -> None:
        self.alpha[plane] = alpha

    def add_layer(self, layer: int, k0: np.ndarray, coeffs: np.ndarray) -> None:
        self.k0[layer], self.coeffs[layer] = k0, coeffs

    def add_basis_lut(self, lut: np.ndarray) -> None:
        self.lut[:] = lut


def bake_model(model: NexModel, geom: MPIGeometry, ref_camera: Camera, train_cameras: list[Camera],
               lut_size: int = 256, invz: bool | None = None, metadata: dict | None = None,
               budget_bytes: float = 256e6, progress: Progress | None = None) -> BakedMPI:
    """Bake a model into an in-memory :class:`BakedMPI` (float32, not quantised)."""
    if geom != model.geom:
        raise ValueError("the geometry differs from the model's own")
    info = mpi_info(model, geom, ref_camera, train_cameras, lut_size, invz, metadata)
    sink = _Arrays(info)
    sink.add_basis_lut(basis_lut(model, info.lut_vx, info.lut_vy, info.lut_width, info.lut_height))
    _bake_planes(model, sink, chunk_for(model, budget_bytes), progress)
    return BakedMPI(info, sink.alpha, sink.k0, sink.coeffs, sink.lut)


def bake_to_dir(model: NexModel, geom: MPIGeometry, ref_camera: Camera, train_cameras: list[Camera],
                out_dir: Path, max_texture: int = 4096, lut_size: int = 256, invz: bool | None = None,
                metadata: dict | None = None, budget_bytes: float = 256e6, progress: Progress | None = None,
                compress_level: int = 3) -> Path:
    """Bake a model straight into a baked directory, plane by plane (only 8-bit atlases kept)."""
    if geom != model.geom:
        raise ValueError("the geometry differs from the model's own")
    info = mpi_info(model, geom, ref_camera, train_cameras, lut_size, invz, metadata)
    with BakedWriter(out_dir, info, max_texture, compress_level) as writer:
        writer.add_basis_lut(basis_lut(model, info.lut_vx, info.lut_vy, info.lut_width, info.lut_height))
        _bake_planes(model, writer, chunk_for(model, budget_bytes), progress)
        return writer.finish()


def bake_run(run, out_dir: Path | None = None, max_texture: int = 4096, lut_size: int = 256,
             progress: Progress | None = None, compress_level: int = 3) -> Path:
    """Bake a trained run (:class:`nex_core.runtime.run.TrainedRun`) into ``out_dir`` (default RUN/baked)."""
    out = Path(out_dir) if out_dir is not None else RunFiles(run.run_dir).baked
    cfg = run.cfg
    # Names, not absolute paths: a baked directory is meant to be shared (web, engines).
    metadata = {"run": Path(run.run_dir).resolve().name, "step": run.step, "preset": cfg.preset,
                "scene": Path(cfg.data.scene).name, "reference_view": run.ref_camera.name,
                "baked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    train_cams = [run.scene.cameras[i] for i in run.scene.train_ids]
    metadata["camera_span"] = camera_span(run.ref_camera, train_cams)
    return bake_to_dir(run.model, run.geom, run.ref_camera, train_cams, out, max_texture, lut_size,
                       invz=run.scene.planes.invz, metadata=metadata, progress=progress,
                       compress_level=compress_level)
