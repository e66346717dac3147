"""Small random-weight NeX models for the baking, viewer and fused-MLP tests."""

from __future__ import annotations

import numpy as np
import torch

from nex_core.io.cameras import Camera
from nex_core.io.config import ModelConfig
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.nex_model import NexModel

from .poses import random_pose


def random_model(basis: str = "learned", sublayers: int = 2, seed: int = 0, field: str = "mlp",
                 compositing: str = "srgb"):
    """A random-weight model whose planes are half opaque and whose coefficients matter
    -> (model, geometry, reference camera, six cameras near it)."""
    cfg = ModelConfig(layers=3, sublayers=sublayers, hidden=32, mlp_layers=1, pos_level=5, depth_level=2,
                      basis=basis, basis_out=8, basis_hidden=16, sigmoid_offset=5.0, field=field,
                      grid_levels=2, grid_features=2, grid_base=8, grid_max=16, grid_hidden=16,
                      compositing=compositing)
    ref = Camera(40, 30, 40.0, 40.0, 20.0, 15.0, random_pose(np.random.default_rng(seed + 100), 10, 0.5))
    geom = MPIGeometry.from_camera(ref, 6, plane_depths(1.0, 4.0, 3 * sublayers, True))
    torch.manual_seed(seed)
    model = NexModel(cfg, geom)
    with torch.no_grad():
        model.output_layer.bias[0] = 4.0  # alpha about sigmoid(-1): every plane contributes
        model.output_layer.weight[1:] *= 3.0  # larger coefficients: view dependence is visible
        for grid in getattr(getattr(model, "grid_field", None), "grids", []):
            grid.uniform_(-1.0, 1.0)  # smooth (coarse) grids with features that matter
    rng = np.random.default_rng(seed)
    cams = [ref.with_pose(ref.c2w @ random_pose(rng, 5, 0.3)) for _ in range(6)]
    return model, geom, ref, cams


def small_model(sublayers: int = 2, mlp_layers: int = 2, dtype=torch.float64) -> NexModel:
    """A 3-layer model on a 12 x 8 camera whose F_theta weights are scaled up (for the fused-MLP tests)."""
    cfg = ModelConfig(layers=3, sublayers=sublayers, hidden=16, mlp_layers=mlp_layers, pos_level=4,
                      depth_level=2, basis_out=4, basis_hidden=8)
    ref = Camera(12, 8, 10.0, 10.0, 6.0, 4.0, np.eye(4))
    geom = MPIGeometry.from_camera(ref, 2, plane_depths(1.0, 4.0, 3 * sublayers, True))
    torch.manual_seed(0)
    model = NexModel(cfg, geom).to(dtype)
    with torch.no_grad():  # weights large enough that many samples sit on each side of every leaky ReLU
        for p in model.coeff_mlp.parameters():
            p.mul_(3.0)
    return model


def outputs_and_grads(model: NexModel, coords: torch.Tensor, fused: bool):
    """(alpha, coefficients, F_theta's weight gradients) at ``coords``, fused or under plain autograd."""
    model.fused_mlp = fused
    model.zero_grad()
    alpha, coeff = model.alpha_and_coefficients(coords)
    # A loss that weighs every output differently, so a swapped plane or column would show.
    wa = torch.linspace(-1, 2, alpha.numel(), dtype=alpha.dtype).reshape(alpha.shape)
    wc = torch.linspace(0.5, -1, coeff.numel(), dtype=coeff.dtype).reshape(coeff.shape)
    ((alpha.float() * wa.float()).sum() + (coeff.float() ** 2 * wc.float()).sum()).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.coeff_mlp.named_parameters()}
    return alpha.detach(), coeff.detach(), grads
