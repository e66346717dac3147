"""A straightforward NeX training step, computed the way the reference implementation (nex-mpi/nex-code,
``train.py``) computes it: the slow baseline that ``tools/bench.py`` measures ``nex_core`` against (the
library itself never uses it).

Per step, nothing carried over from earlier steps:

* plane-induced 3x3 homographies of every plane, for the step's cameras, applied to the pixel coordinates;
* the positional encoding of (x, y, plane) on every plane x ray, and the *whole* coefficient MLP
  (all ``1 + 3N`` outputs) evaluated on every plane x ray; coefficient sharing by slicing ``[::S]``
  and ``repeat_interleave``;
* ``k0`` read with one 3-D ``grid_sample`` over ``sigmoid(k0)`` of all layers;
* the view direction and the basis MLP evaluated per plane x ray;
* plain fp32, over-compositing with an exclusive cumulative product.

Same parameterisation and initialisation as :class:`nex_core.model.nex_model.NexModel` (same ``ModelConfig`` and
``MPIGeometry``; modules are created in the same order, so the same seed gives the same weights) and the
same pixel conventions, so the two render the same image for the same weights
(``tests/test_reference_trainer.py``). Where it differs from the reference, it follows ``nex_core``:

* pixel centres at ``+0.5`` and ``grid_sample(align_corners=False)`` (the reference: integer centres,
  ``align_corners=True``);
* the first MLP layer reads ``[sin xy, cos xy, sin z, cos z]`` (the reference: ``[sin xy, sin z, cos xy,
  cos z]``: a fixed permutation of the inputs, the same function class and initial distribution);
* alpha is zero where a ray meets a plane behind the camera or outside the padded MPI (``nex_core``'s one
  deliberate change, so renders match the baked textures);
* the plane point is un-projected with the reference camera's intrinsics (the reference uses the target
  camera's, the same when all cameras share intrinsics).

Only the learned basis (the reference's G_phi) is implemented.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.cameras import Camera
from ..io.config import ModelConfig, RunConfig
from ..io.mpi_geometry import MPIGeometry
from ..io.scene import Scene
from ..model.layers import make_mlp
from ..model.mpi import CameraBatch, depths_tensor
from ..model.nex_model import alpha_offset
from ..runtime.setup import build_geometry, load_scene_for
from .budget import decay_factor
from .trainer import psnr_from_mse, sample_l_shaped

Tensor = torch.Tensor

# Parameter names: NexModel's -> the baseline's (the reference's names).
NAME_MAP = (("coeff_mlp.", "seq1."), ("basis.mlp.", "seq_basis."), ("k0", "mpi_c"))


# --------------------------------------------------------------------------------------------------
# Cameras and homographies


@dataclass
class Cameras:
    """Target cameras relative to the reference camera: ``x_cam = R x_ref + t``."""

    K: Tensor  # [C, 3, 3]
    R: Tensor  # [C, 3, 3]
    t: Tensor  # [C, 3]

    @property
    def centres(self) -> Tensor:  # [C, 3] camera centres in the reference frame
        return -torch.einsum("cji,cj->ci", self.R, self.t)

    @classmethod
    def from_batch(cls, batch: CameraBatch) -> "Cameras":
        fx, fy, cx, cy = batch.intrinsics.unbind(-1)
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        K = torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], -1).reshape(-1, 3, 3)
        t = -torch.einsum("cij,cj->ci", batch.rot, batch.origin)
        return cls(K, batch.rot, t)

    @classmethod
    def from_cameras(cls, ref: Camera, cameras: list[Camera], device: torch.device | str = "cpu") -> "Cameras":
        return cls.from_batch(CameraBatch.from_cameras(ref, cameras, device=device))


def homographies(geom: MPIGeometry, cams: Cameras, depths: Tensor) -> Tensor:
    """Plane-induced homographies [C, D, 3, 3] taking homogeneous target pixels to reference pixels:
    ``H = K_ref [o e3^T + (d - o_z) I] R^T K_t^-1`` for plane ``z = d`` and target centre ``o``."""
    dev, dt = depths.device, depths.dtype
    k_ref = torch.tensor([[geom.fx, 0, geom.cx], [0, geom.fy, geom.cy], [0, 0, 1.0]], device=dev, dtype=dt)
    o = cams.centres  # [C, 3]
    o_e3 = torch.zeros(o.shape[0], 3, 3, device=dev, dtype=dt)
    o_e3[:, :, 2] = o
    eye = torch.eye(3, device=dev, dtype=dt)
    middle = o_e3[:, None] + (depths[None, :, None, None] - o[:, None, 2, None, None]) * eye  # [C, D, 3, 3]
    right = cams.R.transpose(1, 2) @ torch.linalg.inv(cams.K)  # [C, 3, 3]
    return k_ref @ middle @ right[:, None]


# --------------------------------------------------------------------------------------------------
# The model


def _freqs(n: int) -> Tensor:
    return 0.5 * math.pi * 2.0 ** torch.arange(n, dtype=torch.float32)


class BaselineNex(nn.Module):
    """NeX as the reference computes it (see the module docstring)."""

    def __init__(self, cfg: ModelConfig, geom: MPIGeometry):
        super().__init__()
        if cfg.basis != "learned":
            raise ValueError("the baseline implements only the learned basis")
        if geom.n_planes != cfg.layers * cfg.sublayers:
            raise ValueError(f"geometry has {geom.n_planes} planes, config wants {cfg.layers}x{cfg.sublayers}")
        self.cfg, self.geom = cfg, geom
        n_in = 4 * cfg.pos_level + 2 * cfg.depth_level
        # Created in NexModel's order (coefficient MLP, basis MLP, k0): the same seed, the same weights.
        self.seq1 = make_mlp(n_in, cfg.hidden, cfg.mlp_layers, 1 + 3 * cfg.basis_out, cfg.lrelu_slope)
        self.seq_basis = make_mlp(4 * cfg.basis_order, cfg.basis_hidden, cfg.basis_mlp_layers, cfg.basis_out,
                              cfg.lrelu_slope)
        self.mpi_c = nn.Parameter(torch.empty(cfg.layers, 3, geom.mpi_height, geom.mpi_width).uniform_(-1.0, 1.0))
        self.register_buffer("depths", depths_tensor(geom), persistent=False)
        self.register_buffer("pos_freq", _freqs(cfg.pos_level), persistent=False)
        self.register_buffer("depth_freq", _freqs(cfg.depth_level), persistent=False)
        self.register_buffer("view_freq", _freqs(cfg.basis_order), persistent=False)
        self.register_buffer("z_coords", torch.linspace(-1.0, 1.0, geom.n_planes) if geom.n_planes > 1
                             else torch.zeros(1), persistent=False)

    def warp(self, cams: Cameras, cam_idx: Tensor, uv: Tensor) -> tuple[Tensor, Tensor]:
        """Homographies applied to pixels: reference pixel coordinates [D, R, 2] and normalised MPI
        coordinates [D, R, 2] (grid_sample, align_corners=False)."""
        H = homographies(self.geom, cams, self.depths)[cam_idx]  # [R, D, 3, 3]
        p = torch.cat([uv, torch.ones_like(uv[:, :1])], -1)  # [R, 3]
        prod = torch.einsum("rdij,rj->dri", H, p)
        ref_xy = prod[..., :2] / prod[..., 2:]
        size = torch.tensor([self.geom.mpi_width, self.geom.mpi_height], device=uv.device, dtype=uv.dtype)
        return ref_xy, (ref_xy + self.geom.offset) * (2.0 / size) - 1.0

    def plane_points(self, ref_xy: Tensor) -> Tensor:
        """Reference pixels on each plane -> 3-D points [D, R, 3] in the reference frame."""
        g = self.geom
        x = (ref_xy[..., 0] - g.cx) / g.fx
        y = (ref_xy[..., 1] - g.cy) / g.fy
        return torch.stack([x, y, torch.ones_like(x)], -1) * self.depths[:, None, None]

    def mlp_input(self, warp: Tensor) -> Tensor:
        """Positional encoding of (x, y, plane) on every plane x ray, [D, R, 4P + 2Q]."""
        D, R = warp.shape[:2]
        vxy = (warp[..., None] * self.pos_freq).flatten(-2)  # [D, R, 2P]
        vz = (self.z_coords[:, None, None] * self.depth_freq).expand(D, R, -1)  # [D, R, Q]
        return torch.cat([torch.sin(vxy), torch.cos(vxy), torch.sin(vz), torch.cos(vz)], -1)

    def sample_k0(self, warp: Tensor) -> Tensor:
        """sigmoid(k0) of each plane's layer at its warped positions: one 3-D grid_sample -> [D, R, 3]."""
        L, S = self.cfg.layers, self.cfg.sublayers
        volume = torch.sigmoid(self.mpi_c).permute(1, 0, 2, 3)[None]  # [1, 3, L, H', W']
        layer_z = (2.0 * torch.arange(L, device=warp.device, dtype=warp.dtype) + 1.0) / L - 1.0
        z = torch.repeat_interleave(layer_z, S)[:, None, None].expand(-1, warp.shape[1], 1)
        grid = torch.cat([warp, z], -1)[None, :, :, None, :]  # [1, D, R, 1, 3]
        samples = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return samples[0, :, :, :, 0].permute(1, 2, 0)

    def illumination(self, view: Tensor, coeff: Tensor) -> Tensor:
        """sum_n k_n H_n(v) per plane x ray: view [D, R, 3], raw coefficients [D, R, 3N] -> [D, R, 3]."""
        big = (view[..., :2, None] * self.view_freq).flatten(-2)
        basis = torch.tanh(self.seq_basis(torch.cat([torch.sin(big), torch.cos(big)], -1)))  # [D, R, N]
        k = torch.tanh(coeff).reshape(*coeff.shape[:2], 3, -1)
        return (k * basis[:, :, None, :]).sum(-1)

    def forward(self, cams: Cameras, cam_idx: Tensor, uv: Tensor) -> Tensor:
        """Render pixels ``uv`` [R, 2] (pixel-centre coordinates) of cameras ``cam_idx`` [R] -> RGB [R, 3]."""
        cfg, S = self.cfg, self.cfg.sublayers
        ref_xy, warp = self.warp(cams, cam_idx, uv)
        out = self.seq1(self.mlp_input(warp))  # [D, R, 1 + 3N]: every output on every plane
        xyz = self.plane_points(ref_xy)
        # In front of the target camera (z in its frame > 0) and inside the padded MPI.
        z_cam = torch.einsum("rj,drj->dr", cams.R[cam_idx, 2], xyz) + cams.t[cam_idx, 2]
        valid = (z_cam > 0) & (warp.abs() <= 1.0).all(-1)
        alpha = torch.sigmoid(out[..., 0] - alpha_offset(cfg, self.geom.n_planes)) * valid  # [D, R]
        coeff = torch.repeat_interleave(out[::S, :, 1:], S, 0)  # [D, R, 3N]
        view = F.normalize(xyz - cams.centres[cam_idx][None], dim=-1)
        rgb = torch.clamp(self.sample_k0(warp) + self.illumination(view, coeff), 0.0, 1.0)
        weight = torch.roll(torch.cumprod(1.0 - alpha, 0), 1, 0)
        weight[0] = 1.0
        return (weight[..., None] * rgb * alpha[..., None]).sum(0)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"mlp": list(self.seq1.parameters()), "basis": list(self.seq_basis.parameters()),
                "k0": [self.mpi_c]}


def state_from_nex(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A NexModel state dict renamed for :class:`BaselineNex`."""
    out = {}
    for name, value in state.items():
        for ours, theirs in NAME_MAP:
            if name.startswith(ours):
                out[theirs + name[len(ours):]] = value
                break
        else:
            raise KeyError(f"no baseline name for {name!r}")
    return out


# --------------------------------------------------------------------------------------------------
# Loss and rendering


def total_variation(images: Tensor) -> Tensor:
    """Per image: (sum |dy| + sum |dx|) / ((H - 1)(W - 1))."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().sum((1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().sum((1, 2, 3))
    return (dy + dx) / (images.shape[2] - 1) / (images.shape[3] - 1)


def baseline_loss(model: BaselineNex, pred: Tensor, target: Tensor, tv_weight: float,
                  grad_weight: float) -> tuple[Tensor, Tensor]:
    """(total loss, mse): MSE + tv_weight * TV(sigmoid(k0)) + grad_weight * L1 of the L-triples'
    finite differences (rays [R, 3] interleaved as pixel, right, lower)."""
    mse = ((pred - target) ** 2).mean()
    loss = mse + tv_weight * total_variation(torch.sigmoid(model.mpi_c)).mean()
    ox, oy = pred[1::3] - pred[0::3], pred[2::3] - pred[0::3]
    gx, gy = target[1::3] - target[0::3], target[2::3] - target[0::3]
    return loss + grad_weight * ((ox - gx).abs().mean() + (oy - gy).abs().mean()), mse


@torch.no_grad()
def render_image(model: BaselineNex, ref: Camera, camera: Camera, chunk: int = 4096) -> np.ndarray:
    """Render a whole view in pixel chunks -> float32 RGB [H, W, 3]."""
    device = model.depths.device
    cams = Cameras.from_cameras(ref, [camera], device)
    v, u = torch.meshgrid(torch.arange(camera.height, device=device, dtype=torch.float32) + 0.5,
                          torch.arange(camera.width, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    uv = torch.stack([u.reshape(-1), v.reshape(-1)], -1)
    parts = [model(cams, torch.zeros(len(p), dtype=torch.long, device=device), p) for p in uv.split(chunk)]
    return torch.cat(parts).reshape(camera.height, camera.width, 3).cpu().numpy()


# --------------------------------------------------------------------------------------------------
# Training


REFERENCE_SIGMOID_OFFSET = 5.0  # the reference's -sigmoid_offset default


def reference_settings(cfg: RunConfig, sigmoid_offset: float = REFERENCE_SIGMOID_OFFSET) -> RunConfig:
    """The reference's own settings on a copy of ``cfg`` (same network shape and step count): alpha =
    sigmoid(logit - 5) whatever the plane count (``sigmoid_offset``; < 0: nex_core's automatic offset),
    rays from one image per step, k0 at 10x the MLP rate, the basis MLP at the MLP rate (the reference's
    name-based parameter grouping puts G_phi with F_theta), the rates decayed every third of the steps, the
    planes composited in sRGB values, F_theta an MLP."""
    m = replace(cfg.model, sigmoid_offset=sigmoid_offset, compositing="srgb", field="mlp")
    t = replace(cfg.train, images_per_step=1, lr_k0=10.0 * cfg.train.lr, lr_basis=cfg.train.lr,
                decay_at=[1 / 3, 2 / 3])
    return replace(cfg, model=m, train=t)


class BaselineTrainer:
    """Trains :class:`BaselineNex` with ``nex_core.training.trainer.Trainer``'s data, ray sampler (same seed: the same
    rays step for step), loss weights, Adam groups and learning-rate schedule; no files written."""

    def __init__(self, cfg: RunConfig, scene: Scene | None = None, device: torch.device | str = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.scene = scene or load_scene_for(cfg)
        self.geom = build_geometry(self.scene, cfg)
        torch.manual_seed(cfg.train.seed)
        self.model = BaselineNex(cfg.model, self.geom).to(self.device)
        groups = self.model.parameter_groups()
        t = cfg.train
        lrs = {"mlp": t.lr, "basis": t.lr_basis, "k0": t.lr_k0}
        self.optimizer = torch.optim.Adam([{"params": groups[k], "lr": lrs[k], "base_lr": lrs[k]}
                                           for k in ("mlp", "basis", "k0")])
        self.gen = torch.Generator().manual_seed(t.seed)
        self.step = 0
        s = self.scene
        self.ref_camera = s.cameras[s.ref_id]
        self.train_images = torch.from_numpy(np.ascontiguousarray(s.images[s.train_ids])).to(self.device)
        self.train_cams = CameraBatch.from_cameras(self.ref_camera, [s.cameras[i] for i in s.train_ids],
                                                   device=self.device)

    def learning_rate_factor(self, step: int) -> float:
        t = self.cfg.train
        return decay_factor(step / t.steps, t.decay_at, t.decay_rate)

    def train_step(self) -> tuple[float, float]:
        """One optimisation step; returns (total loss, mse)."""
        t = self.cfg.train
        factor = self.learning_rate_factor(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        n, h, w, _ = self.train_images.shape
        batch = sample_l_shaped(self.gen, n, h, w, t.rays, t.images_per_step)
        idx = batch.image_index.to(self.device)
        rows, cols = batch.rows.to(self.device), batch.cols.to(self.device)
        target = self.train_images[idx, rows, cols]
        uv = torch.stack([cols, rows], -1).float() + 0.5
        # The cameras are rebuilt (and their homographies recomputed) every step, as the reference does.
        pred = self.model(Cameras.from_batch(self.train_cams), idx, uv)
        loss, mse = baseline_loss(self.model, pred, target, t.tv_weight, t.grad_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach()), float(mse.detach())

    def test_psnr(self) -> float | None:
        """Mean held-out PSNR over the test views."""
        s = self.scene
        if not s.test_ids:
            return None
        values = [psnr_from_mse(float(np.mean((render_image(self.model, self.ref_camera, s.cameras[i])
                                               - s.images[i]) ** 2))) for i in s.test_ids]
        return float(np.mean(values))


def load_into_nex(nex_model: nn.Module, baseline: BaselineNex) -> None:
    """Copy the baseline's weights into a NexModel (the inverse of :func:`state_from_nex`)."""
    inverse = {v: k for k, v in NAME_MAP}
    state = {}
    for name, value in baseline.state_dict().items():
        prefix = next(p for p in inverse if name.startswith(p))
        state[inverse[prefix] + name[len(prefix):]] = value
    nex_model.load_state_dict(state)


__all__ = ["BaselineNex", "BaselineTrainer", "Cameras", "baseline_loss", "homographies", "load_into_nex",
           "reference_settings", "render_image", "state_from_nex"]

# A quick smoke run from a checkout: python -m nex_core.training.reference_trainer [STEPS]
if __name__ == "__main__":  # pragma: no cover
    import sys

    from ..io import config as config_mod
    cfg = config_mod.preset("fast")
    cfg.data.scene = str(Path(__file__).resolve().parents[2] / "data" / "scenes" / "shiny_demo")
    trainer = BaselineTrainer(cfg)
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        t0 = time.perf_counter()
        loss, _ = trainer.train_step()
        print(f"step {trainer.step}: loss {loss:.4f}  {time.perf_counter() - t0:.3f} s")
