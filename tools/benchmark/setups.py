"""The configurations, models and scenes the sections measure: the fast preset on the shipped scene
(bench-s) and the paper's shape on synthetic images."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from nex_core.io import config as config_mod
from nex_core.io.cameras import Camera, opencv_to_llff
from nex_core.io.config import RunConfig
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.nex_model import NexModel

from .machine import mem_available_bytes

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "scenes" / "shiny_demo"
PAPER_W, PAPER_H, PAPER_F = 1008, 756, 820.0


def fast_config(scene: Path, device: str, precision: str = "fp32") -> RunConfig:
    """The fast preset on ``scene`` with its MLP field (bench-s: 8x4 planes, MLP 4x128, 2001 rays), whatever
    the preset's automatic choice on this machine (:func:`with_grid` gives the grid form)."""
    cfg = config_mod.preset("fast")
    cfg.model.field = "mlp"
    cfg.data.scene = str(scene)
    cfg.train.device = device
    cfg.train.precision = precision
    return cfg


def with_precision(cfg: RunConfig, precision: str) -> RunConfig:
    """A copy of ``cfg`` training in ``precision``."""
    out = copy.deepcopy(cfg)
    out.train.precision = precision
    return out


def with_grid(cfg: RunConfig) -> RunConfig:
    """The grid form of F_theta (model.field = "grid"), everything else unchanged."""
    cfg = copy.deepcopy(cfg)
    cfg.model.field = "grid"
    return cfg


def write_synthetic_scene(root: Path, n_views: int = 12, seed: int = 0) -> Path:
    """A forward-facing LLFF scene of random images at the paper's size (1008 x 756), for timing only."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_views):
        c2w = np.eye(4)
        c2w[:3, 3] = [(i % 4) * 0.1 - 0.15, (i // 4) * 0.1 - 0.1, 0.0]
        small = rng.integers(0, 256, (PAPER_H // 12, PAPER_W // 12, 3), dtype=np.uint8)
        Image.fromarray(small).resize((PAPER_W, PAPER_H), Image.BILINEAR).save(root / "images" / f"v{i:03d}.png")
        pose = np.concatenate([opencv_to_llff(c2w), [[PAPER_H], [PAPER_W], [PAPER_F]]], 1)
        rows.append(np.concatenate([pose.ravel(), [2.0, 40.0]]))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


def paper_config(scene: Path, device: str, rays: int) -> RunConfig:
    """The paper preset on ``scene`` in fp32 with ``rays`` rays per step and no checkpoints."""
    cfg = config_mod.preset("paper")
    cfg.data.scene = str(scene)
    cfg.train.device, cfg.train.precision, cfg.train.rays = device, "fp32", rays
    cfg.train.checkpoint_every = 10 ** 9
    return cfg


def paper_model(device: str = "cpu") -> tuple[NexModel, Camera]:
    """A random-weight paper-shape model (16x12 planes, MLP 4x384) over a 1008x756 reference camera."""
    cfg = config_mod.preset("paper").model
    ref = Camera(PAPER_W, PAPER_H, PAPER_F, PAPER_F, PAPER_W / 2, PAPER_H / 2, np.eye(4))
    geom = MPIGeometry.from_camera(ref, round(0.2 * PAPER_W), plane_depths(2.0, 40.0, 192, True))
    torch.manual_seed(0)
    return NexModel(cfg, geom).to(device), ref


def paper_rays_that_fit(requested: int, device: torch.device) -> int:
    """The largest multiple of 3 up to ``requested`` whose training activations (~planes x rays x hidden x
    4 bytes x 14 saved tensors, for each of ours and the baseline) fit in half the free memory."""
    free = torch.cuda.mem_get_info()[0] if device.type == "cuda" else mem_available_bytes()
    per_ray = 192 * 384 * 4 * 14
    fit = int(0.5 * free / per_ray)
    return max(3, min(requested, fit) // 3 * 3)
