"""Whole-image rendering of a NeX model from any camera, in ray chunks so memory stays bounded."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from ..io.cameras import Camera
from ..model.mpi import CameraBatch, pixel_grid, rays_in_reference_frame
from ..model.nex_model import NexModel
from .device import is_out_of_memory


def chunk_for_budget(model: NexModel, budget_bytes: float = 1.5e9) -> int:
    """Rays per chunk so the widest activation (planes x rays x hidden floats) fits ``budget_bytes``."""
    per_ray = model.geom.n_planes * max(model.cfg.hidden, 1 + 3 * model.cfg.basis_out) * 4 * 3
    return int(max(256, min(1 << 16, budget_bytes // per_ray)))


@torch.no_grad()
def render_image(model: NexModel, ref: Camera, camera: Camera, chunk: int = 0,
                 autocast_dtype: torch.dtype | None = None) -> np.ndarray:
    """Render ``camera`` (its own size and intrinsics) -> float32 RGB [H, W, 3] in [0, 1]."""
    device = next(model.parameters()).device
    chunk = chunk or chunk_for_budget(model)
    cams = CameraBatch.from_cameras(ref, [camera], device=device)
    uv = pixel_grid(camera.width, camera.height, device)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    was_training = model.training
    model.eval()
    parts = []
    start = 0
    with ctx:
        while start < uv.shape[0]:
            part = uv[start:start + chunk]
            idx = torch.zeros(part.shape[0], dtype=torch.long, device=device)
            origins, dirs = rays_in_reference_frame(cams, idx, part)
            try:
                parts.append(model(origins, dirs).float())
            except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or chunk <= 64:
                    raise
                chunk //= 2  # retry this chunk smaller
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start += part.shape[0]
    model.train(was_training)
    return torch.cat(parts).reshape(camera.height, camera.width, 3).cpu().numpy()
