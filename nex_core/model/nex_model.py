"""The NeX model: an MPI whose planes are predicted by networks, rendered differentiably.

Per plane pixel ``x = (x, y, plane)``: the coefficient MLP ``F_theta(PE(x))`` gives an alpha logit and
``N x 3`` coefficients ``k_1..k_N``; the explicit, learnable base colour ``k0`` is a per-layer image; the
basis ``H_n(v)`` is a function of the viewing direction ``v`` (learned MLP ``G_phi`` or a fixed basis).
A plane pixel seen along ``v`` has colour ``clamp(k0 + sum_n k_n H_n(v), 0, 1)`` and alpha
``sigmoid(logit - offset)`` (offset 5 for the reference's 192 planes, see :func:`alpha_offset`). Coefficients are shared by the sublayers of a layer (taken, as in the
reference, from the layer's first plane along each ray); alpha is per plane.

``field = "grid"`` (opt-in) replaces the positional encoding + MLP of F_theta by per-plane multi-resolution
feature grids and a small MLP (:class:`GridField`): the same outputs at a fraction of the operations.

Unlike the reference we mask alpha to zero where a ray meets a plane outside the padded MPI, so a
render from the networks equals a render from the baked textures (which end there).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.config import ModelConfig
from ..io.config_ranges import TRAINED_FIELDS
from ..io.mpi_geometry import MPIGeometry
from .fused_mlp import compute_dtype, fused_trunk, trunk_input
from .grid_field import GridField
from .layers import make_mlp, output_heads
from .mpi import composite_in, depths_tensor, plane_intersections, sample_planes
from .sigmoid_tv import sigmoid_and_tv
from .total_variation import total_variation

Tensor = torch.Tensor


def encode_frequencies(x: Tensor, freqs: Tensor) -> Tensor:
    """sin/cos positional encoding: x [..., k] times freqs [f] -> [..., 2 * k * f]."""
    scaled = (x[..., :, None] * freqs).flatten(-2)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], -1)


REFERENCE_PLANES = 192
REFERENCE_SIGMOID_OFFSET = 5.0


def alpha_offset(cfg: ModelConfig, n_planes: int) -> float:
    """The alpha logit offset: the configured one, or (when negative, the default) the offset that gives
    a stack of ``n_planes`` the same initial opacity as the reference's 192 planes at offset 5.

    With the reference's offset, a 32- or 8-plane MPI starts almost fully transparent (19% / 5% opacity
    instead of 72%); the loss then drives every colour past the clamp at 1, where no gradient flows, and
    training stalls in a grey, alpha-only plateau. For 192 planes this gives exactly 5.
    """
    if cfg.sigmoid_offset >= 0:
        return cfg.sigmoid_offset
    a_ref = 1.0 / (1.0 + math.exp(REFERENCE_SIGMOID_OFFSET))
    a = 1.0 - (1.0 - a_ref) ** (REFERENCE_PLANES / n_planes)
    return math.log(1.0 / a - 1.0)


def plane_codes(n_planes: int, device=None, dtype=torch.float32) -> Tensor:
    """Each plane's index mapped to [-1, 1] (the z input of F_theta)."""
    if n_planes == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-1.0, 1.0, n_planes, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Bases of the view direction


class LearnedBasis(nn.Module):
    """G_phi: tanh(MLP(PE(vx, vy))) -> N basis values."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.register_buffer("freqs", 0.5 * math.pi * 2.0 ** torch.arange(cfg.basis_order, dtype=torch.float32),
                             persistent=False)
        self.mlp = make_mlp(4 * cfg.basis_order, cfg.basis_hidden, cfg.basis_mlp_layers, cfg.basis_out,
                            cfg.lrelu_slope)

    def forward(self, view_xy: Tensor) -> Tensor:  # [..., 2] -> [..., N]
        return torch.tanh(self.mlp(encode_frequencies(view_xy, self.freqs)))


def real_spherical_harmonics(v: Tensor, n: int) -> Tensor:
    """The first ``n`` (<= 16) real spherical harmonics of unit vectors v [..., 3], degrees 0..3."""
    x, y, z = v.unbind(-1)
    c = [0.28209479177387814, 0.4886025119029199, 1.0925484305920792, 0.31539156525252005,
         0.5462742152960396, 0.5900435899266435, 2.890611442640554, 0.4570457994644658,
         0.3731763325901154, 1.445305721320277]
    terms = [
        torch.full_like(x, c[0]),
        -c[1] * y, c[1] * z, -c[1] * x,
        c[2] * x * y, -c[2] * y * z, c[3] * (3 * z * z - 1), -c[2] * x * z, c[4] * (x * x - y * y),
        -c[5] * y * (3 * x * x - y * y), c[6] * x * y * z, -c[7] * y * (5 * z * z - 1),
        c[8] * z * (5 * z * z - 3), -c[7] * x * (5 * z * z - 1), c[9] * z * (x * x - y * y),
        -c[5] * x * (x * x - 3 * y * y),
    ]
    return torch.stack(terms[:n], -1)


def fourier_basis(view_xy: Tensor, n: int) -> Tensor:
    """The first ``n`` functions of a 2-D Fourier series in (vx, vy):
    cos/sin(pi k vx), cos/sin(pi k vy) for k = 1, 2, ...; values in [-1, 1]."""
    out = []
    k = 1
    while len(out) < n:
        for comp in (0, 1):
            arg = math.pi * k * view_xy[..., comp]
            out += [torch.cos(arg), torch.sin(arg)]
        k += 1
    return torch.stack(out[:n], -1)


class FixedBasis(nn.Module):
    """A fixed (not learned) basis of the view direction: real spherical harmonics or Fourier."""

    def __init__(self, kind: str, n: int):
        super().__init__()
        self.kind, self.n = kind, n

    def forward(self, view_xy: Tensor) -> Tensor:
        if self.kind == "fourier":
            return fourier_basis(view_xy, self.n)
        vz = torch.sqrt(torch.clamp(1.0 - (view_xy ** 2).sum(-1, keepdim=True), min=0.0))
        return real_spherical_harmonics(torch.cat([view_xy, vz], -1), self.n)


# --------------------------------------------------------------------------------------------------
# NeX


class NexModel(nn.Module):
    """The NeX network over an MPI of the given geometry."""

    def __init__(self, cfg: ModelConfig, geom: MPIGeometry):
        super().__init__()
        if cfg.field not in TRAINED_FIELDS:
            raise ValueError(f"model.field {cfg.field!r}: build the model with a resolved field, mlp or grid "
                             "(runtime.device.resolve_field chooses one for 'auto')")
        if geom.n_planes != cfg.layers * cfg.sublayers:
            raise ValueError(f"geometry has {geom.n_planes} planes, config wants {cfg.layers}x{cfg.sublayers}")
        self.cfg, self.geom = cfg, geom
        self.fused_mlp = True  # see use_fused_mlp; False forces the plain autograd form
        self.sigmoid_offset = alpha_offset(cfg, geom.n_planes)
        self.register_buffer("depths", depths_tensor(geom), persistent=False)
        self.register_buffer("pos_freqs", 0.5 * math.pi * 2.0 ** torch.arange(cfg.pos_level, dtype=torch.float32),
                             persistent=False)
        depth_freqs = 0.5 * math.pi * 2.0 ** torch.arange(cfg.depth_level, dtype=torch.float32)
        # The plane index's encoding never changes: compute it once, [D, 2 * depth_level].
        self.register_buffer("plane_pe", encode_frequencies(plane_codes(geom.n_planes)[:, None], depth_freqs),
                             persistent=False)
        n_in = 4 * cfg.pos_level + 2 * cfg.depth_level
        if cfg.field == "grid":
            self.grid_field = GridField(cfg, geom)
        else:
            self.coeff_mlp = make_mlp(n_in, cfg.hidden, cfg.mlp_layers, 1 + 3 * cfg.basis_out, cfg.lrelu_slope)
        self.basis = LearnedBasis(cfg) if cfg.basis == "learned" else FixedBasis(cfg.basis, cfg.basis_out)
        # k0 before its sigmoid, uniform(-1, 1) as in the reference.
        self.k0 = nn.Parameter(torch.empty(cfg.layers, 3, geom.mpi_height, geom.mpi_width).uniform_(-1.0, 1.0))

    @property
    def output_layer(self) -> nn.Linear:
        """F_theta's last layer (row 0: the alpha logit; rows 1..3N: the coefficients)."""
        return self.grid_field.mlp[-1] if self.cfg.field == "grid" else self.coeff_mlp[-1]

    # ---- pieces -----------------------------------------------------------------------------------

    def plane_outputs(self, coords: Tensor, plane_index: Tensor | None = None) -> Tensor:
        """F_theta at normalised MPI positions coords [P, R, 2] of planes ``plane_index`` [P] (default:
        all planes in order): raw outputs [P, R, 1 + 3N]."""
        if self.cfg.field == "grid":
            return self.grid_field.plane_outputs(coords, plane_index)
        pe_plane = self.plane_pe if plane_index is None else self.plane_pe[plane_index]
        pe_xy = encode_frequencies(coords, self.pos_freqs)  # [P, R, 4 * pos_level]
        pe = torch.cat([pe_xy, pe_plane[:, None, :].expand(-1, coords.shape[1], -1)], -1)
        return self.coeff_mlp(pe)

    def alpha_and_coefficients(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """F_theta for rendering: alpha logits of every plane [D, R] and raw coefficients of every layer
        (from its first sublayer) [L, R, 3N].

        Same values as ``plane_outputs(coords)[..., 0]`` and ``plane_outputs(coords)[::S, :, 1:]``, but
        the plane code's share of the first layer is a per-plane bias computed once, and the coefficient
        columns of the last layer are evaluated only on the planes whose coefficients are used.
        """
        S = self.cfg.sublayers
        if self.cfg.field == "grid":
            return self.grid_field.alpha_and_coefficients(coords, S)
        first, last = self.coeff_mlp[0], self.coeff_mlp[-1]
        if self.use_fused_mlp(coords.device):
            x = trunk_input(coords, self.pos_freqs, self.plane_pe, compute_dtype(coords.device.type, coords.dtype))
            layers = [m for m in list(self.coeff_mlp)[:-1] if isinstance(m, nn.Linear)]
            return fused_trunk(x, layers, last, self.cfg.lrelu_slope, S)
        n_xy = 4 * self.cfg.pos_level
        pe_xy = encode_frequencies(coords, self.pos_freqs)  # [D, R, n_xy]
        plane_bias = F.linear(self.plane_pe, first.weight[:, n_xy:], first.bias)  # [D, hidden]
        h = F.linear(pe_xy, first.weight[:, :n_xy]) + plane_bias[:, None, :]
        for module in list(self.coeff_mlp)[1:-1]:
            h = module(h)
        return output_heads(last, h, S)

    def use_fused_mlp(self, device: torch.device) -> bool:
        """Whether F_theta runs as :mod:`.fused_mlp` (on CPUs, with a positive leaky-ReLU slope); on GPUs
        the plain autograd form's large kernels are used."""
        return self.fused_mlp and device.type == "cpu" and self.cfg.lrelu_slope > 0

    def k0_images(self) -> Tensor:
        """Base colour per layer after its sigmoid, [L, 3, H', W']."""
        return torch.sigmoid(self.k0)

    def k0_images_and_tv(self) -> tuple[Tensor, Tensor]:
        """(:meth:`k0_images`, :meth:`tv_loss` of them), with the gradient of both in one pass where the CPU
        kernel applies (:mod:`.sigmoid_tv`)."""
        return sigmoid_and_tv(self.k0)

    def basis_values(self, view_dirs: Tensor) -> Tensor:
        """H_n(v) for unit view directions [R, 3] in the reference frame -> [R, N]."""
        return self.basis(view_dirs[..., :2])

    # ---- rendering --------------------------------------------------------------------------------

    def forward(self, origins: Tensor, dirs: Tensor, k0_images: Tensor | None = None) -> Tensor:
        """Render rays (reference frame; origins, dirs [R, 3]) -> RGB [R, 3]."""
        rgb, _ = self.render_rays(origins, dirs, k0_images)
        return rgb

    def render_rays(self, origins: Tensor, dirs: Tensor,
                    k0_images: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Render rays -> (RGB [R, 3], accumulated alpha [R]). ``k0_images``: :meth:`k0_images` when the
        caller has it already (training uses it for the TV term too)."""
        cfg = self.cfg
        L, S, N = cfg.layers, cfg.sublayers, cfg.basis_out
        coords, valid = plane_intersections(self.geom, origins, dirs, self.depths)  # [D, R, 2], [D, R]
        alpha_logit, coeff_raw = self.alpha_and_coefficients(coords)
        D, R = coords.shape[:2]
        alpha = torch.sigmoid(alpha_logit.float() - self.sigmoid_offset) * valid  # [D, R]
        coeff = torch.tanh(coeff_raw.float()).reshape(L, 1, R, 3, N)
        view = F.normalize(dirs, dim=-1)
        basis = self.basis_values(view).float()  # [R, N]
        specular = (coeff * basis[None, None, :, None, :]).sum(-1)  # [L, 1, R, 3]
        specular = specular.expand(L, S, R, 3).reshape(D, R, 3)
        k0_images = self.k0_images() if k0_images is None else k0_images
        k0 = sample_planes(k0_images, coords.reshape(L, S * R, 2).float())  # [L, 3, S * R]
        k0 = k0.reshape(L, 3, S, R).permute(0, 2, 3, 1).reshape(D, R, 3)
        color = torch.clamp(k0 + specular, 0.0, 1.0)
        rgb, acc = composite_in(cfg.compositing, color.permute(0, 2, 1), alpha[:, None, :])
        return rgb.T, acc[0]

    def tv_loss(self, k0_images: Tensor | None = None) -> Tensor:
        """Total variation of sigmoid(k0), as the reference: mean over layers of
        (sum |dy| + sum |dx|) / ((H' - 1)(W' - 1))."""
        return total_variation(self.k0_images() if k0_images is None else k0_images)

    def field_tv_loss(self) -> Tensor | None:
        """The grid field's total variation (:meth:`GridField.tv_loss`); None for the MLP field."""
        return self.grid_field.tv_loss() if self.cfg.field == "grid" else None

    def field_depth_tv_loss(self) -> Tensor | None:
        """The grid field's differences across planes (:meth:`GridField.depth_tv_loss`); None for the MLP."""
        return self.grid_field.depth_tv_loss() if self.cfg.field == "grid" else None

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group: coefficient MLP, basis MLP, explicit k0 (and the grid
        field's feature grids)."""
        if self.cfg.field == "grid":
            return {"mlp": list(self.grid_field.mlp.parameters()), "grid": list(self.grid_field.grids),
                    "basis": list(self.basis.parameters()), "k0": [self.k0]}
        return {"mlp": list(self.coeff_mlp.parameters()), "basis": list(self.basis.parameters()),
                "k0": [self.k0]}
