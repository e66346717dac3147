"""Opening a trained run directory: its config, scene, MPI geometry and model from the newest checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import config as config_mod
from ..io.cameras import Camera
from ..io.config import RunConfig
from ..io.errors import CheckpointError, ConfigError
from ..io.mpi_geometry import MPIGeometry
from ..io.run_files import RunFiles
from ..io.scene import Scene
from ..model.nex_model import NexModel
from .checkpoint import fingerprint, list_checkpoints, load_checkpoint
from .device import render_autocast_dtype, resolve_device
from .setup import build_geometry, load_scene_for, model_settings


@dataclass
class TrainedRun:
    run_dir: Path
    cfg: RunConfig
    scene: Scene
    geom: MPIGeometry
    model: NexModel
    step: int
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast for renders (CUDA only)

    @property
    def ref_camera(self) -> Camera:
        return self.scene.cameras[self.scene.ref_id]


def open_run(run_dir: Path, device: str | None = None) -> TrainedRun:
    """Load a run directory's newest checkpoint; clear errors when it has none or does not match."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory (train one with `nex train SCENE --out {run_dir}`)")
    cfg = config_mod.load(RunFiles(run_dir).config)
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: no checkpoint yet; train (or resume) this run first")
    dev = resolve_device(device or cfg.train.device)
    scene = load_scene_for(cfg)
    geom = build_geometry(scene, cfg)
    model = NexModel(cfg.model, geom).to(dev)
    step, path = found[-1]
    data = load_checkpoint(path, fingerprint(model_settings(cfg, geom)), map_location=dev)
    model.load_state_dict(data["model"])
    model.eval()
    return TrainedRun(run_dir, cfg, scene, geom, model, int(data["step"]), dev,
                      render_autocast_dtype(cfg.train.precision, dev))
