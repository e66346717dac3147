"""The opt-in grid form of F_theta: per-plane multi-resolution feature grids and a small MLP.

Coarse levels may be shared by neighbouring planes (``model.grid_depth_base``), and training may bring the
levels in from coarse to fine (``train.grid_coarse_to_fine``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..io.config import ModelConfig
from ..io.mpi_geometry import MPIGeometry
from .layers import make_mlp, output_heads
from .mpi import sample_planes
from .total_variation import total_variation

Tensor = torch.Tensor


def grid_resolutions(cfg: ModelConfig, mpi_width: int, mpi_height: int) -> list[tuple[int, int]]:
    """(height, width) of each grid level: widths geometric from grid_base to grid_max (capped by the
    MPI's width), heights in the MPI's aspect ratio."""
    top = max(2, min(cfg.grid_max, mpi_width))
    base = min(cfg.grid_base, top)
    n = cfg.grid_levels
    widths = [round(base * (top / base) ** (i / max(n - 1, 1))) for i in range(n)]
    return [(max(2, round(w * mpi_height / mpi_width)), w) for w in widths]


def grid_depth_counts(cfg: ModelConfig, n_planes: int) -> list[int]:
    """Planes (depth slices) of each grid level, coarsest first: one per plane at every level when
    ``grid_depth_base`` is 0, else geometric from grid_depth_base to n_planes."""
    n = cfg.grid_levels
    if cfg.grid_depth_base <= 0:
        return [n_planes] * n
    base = min(cfg.grid_depth_base, n_planes)
    return [max(1, round(base * (n_planes / base) ** (i / max(n - 1, 1)))) for i in range(n)]


def depth_slices(plane_index: Tensor, n_planes: int, n_slices: int) -> tuple[Tensor, Tensor, Tensor]:
    """Where planes ``plane_index`` fall among ``n_slices`` slices spread evenly over the stack (first on
    the first plane, last on the last): the slice below, the one above and the weight of the one above."""
    position = plane_index.float() * ((n_slices - 1) / max(n_planes - 1, 1))
    below = position.floor().long().clamp(0, n_slices - 1)
    above = (below + 1).clamp(max=n_slices - 1)
    return below, above, position - below


class GridField(nn.Module):
    """F_theta as per-plane multi-resolution feature grids plus a small MLP.

    Each plane owns ``grid_levels`` 2-D grids of ``grid_features`` channels, read bilinearly where a ray
    meets the plane; the concatenated features go through an MLP of ``grid_hidden`` units to the same
    outputs as the reference's MLP (alpha logit + 3N coefficients). Far fewer operations per plane
    sample than the positional-encoding MLP, at the price of more parameters (the grids).
    """

    def __init__(self, cfg: ModelConfig, geom: MPIGeometry):
        super().__init__()
        self.cfg = cfg
        self.n_planes = geom.n_planes
        self.shapes = grid_resolutions(cfg, geom.mpi_width, geom.mpi_height)
        self.depth_counts = grid_depth_counts(cfg, geom.n_planes)
        # Small random features, as in instant-ngp: the MLP starts near its bias, as the reference's does.
        self.grids = nn.ParameterList(
            nn.Parameter(torch.empty(d, cfg.grid_features, h, w).uniform_(-1e-4, 1e-4))
            for (h, w), d in zip(self.shapes, self.depth_counts))
        n_in = cfg.grid_levels * cfg.grid_features
        self.mlp = make_mlp(n_in, cfg.grid_hidden, cfg.grid_mlp_layers, 1 + 3 * cfg.basis_out, cfg.lrelu_slope)
        self.level_weights = [1.0] * len(self.grids)  # < 1 while training brings a level in (coarse to fine)

    def set_progress(self, progress: float, span: float) -> None:
        """Weights of the levels at ``progress`` (0..1) of a run whose finer levels come in one after
        another over its first ``span``: the coarsest always, level k fully from k / (levels - 1) of it."""
        n = len(self.grids)
        if span <= 0 or n == 1:
            self.level_weights = [1.0] * n
            return
        reached = progress * (n - 1) / span
        self.level_weights = [1.0] + [min(1.0, max(0.0, reached - (k - 1))) for k in range(1, n)]

    def features(self, coords: Tensor, plane_index: Tensor | None = None) -> Tensor:
        """Grid features at coords [P, R, 2] of planes ``plane_index`` [P] (default: all) -> [P, R, C]."""
        parts = []
        for grid, level_weight in zip(self.grids, self.level_weights):
            if grid.shape[0] == self.n_planes:
                planes = grid if plane_index is None else grid[plane_index]
                part = sample_planes(planes, coords.to(planes.dtype))  # [P, F, R]
            else:
                # A level shared across depth: read the two slices around the plane and interpolate.
                index = torch.arange(self.n_planes, device=coords.device) if plane_index is None else plane_index
                below, above, weight = depth_slices(index, self.n_planes, grid.shape[0])
                low = sample_planes(grid[below], coords.to(grid.dtype))
                high = sample_planes(grid[above], coords.to(grid.dtype))
                part = torch.lerp(low, high, weight.to(grid.dtype)[:, None, None])
            parts.append(part if level_weight == 1.0 else part * level_weight)
        return torch.cat(parts, 1).transpose(1, 2)

    def plane_outputs(self, coords: Tensor, plane_index: Tensor | None = None) -> Tensor:
        return self.mlp(self.features(coords, plane_index))

    def alpha_and_coefficients(self, coords: Tensor, sublayers: int) -> tuple[Tensor, Tensor]:
        h = self.features(coords)
        for module in list(self.mlp)[:-1]:
            h = module(h)
        return output_heads(self.mlp[-1], h, sublayers)

    def tv_loss(self) -> Tensor:
        """Total variation of the feature grids, summed over the levels (each level as k0's: the mean over
        planes of the differences' L1 norm per cell). Pulls features that only some training views
        constrain towards their neighbours', against floaters and view-specific detail."""
        return sum(total_variation(grid) for grid in self.grids)

    def depth_tv_loss(self) -> Tensor:
        """Mean L1 difference of each level's features between neighbouring planes (slices), summed over
        the levels that have more than one: pulls the planes' features together where the training views
        do not tell them apart, as the MLP's smooth encoding of the plane index does."""
        terms = [(grid[1:] - grid[:-1]).abs().mean() for grid in self.grids if grid.shape[0] > 1]
        return sum(terms) if terms else self.grids[0].sum() * 0.0
