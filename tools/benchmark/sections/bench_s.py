"""bench-s: training steps of the fast preset on the shipped scene, every variant interleaved with the
baseline, then held-out PSNR after the same steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nex_core.io import config as config_mod
from nex_core.runtime.render import render_image
from nex_core.training.reference_trainer import BaselineTrainer
from nex_core.training.trainer import Trainer

from ..results import Section
from ..setups import fast_config, with_grid, with_precision
from ..steps import add_step_rows, interleaved_steps


def section_bench_s(args, device: torch.device, tmp: Path) -> Section:
    """Step times of every variant against the baseline, interleaved, then held-out PSNR after the steps."""
    sec = Section("bench-s" if device.type == "cpu" else "bench-s-cuda")
    cfg = fast_config(args.scene, str(device))
    ours = Trainer(cfg, tmp / f"bs-ours-{device.type}")
    autograd_mlp = Trainer(with_precision(cfg, "bf16"), tmp / f"bs-bf16-autograd-{device.type}")
    autograd_mlp.model.fused_mlp = False  # F_theta under plain autograd: what nex_core.model.fused_mlp buys
    runs = {"ours": ours, "ours-bf16-autograd-mlp": autograd_mlp,
            "ours-bf16": Trainer(with_precision(cfg, "bf16"), tmp / f"bs-bf16-{device.type}"),
            "ours-grid-bf16": Trainer(with_grid(with_precision(cfg, "bf16")), tmp / f"bs-grid-{device.type}"),
            "baseline": BaselineTrainer(cfg, scene=ours.scene, device=device)}
    steps = args.steps or (12 if args.quick else 300)
    rays = 3 * (cfg.train.rays // 3)
    cpu: dict[str, list[float]] = {}
    times = interleaved_steps(runs, steps, min(3, steps - 1), device, cpu if device.type == "cpu" else None)
    add_step_rows(sec, times, rays, cpu)
    for k, run in runs.items():
        sec.add(k, f"held-out PSNR after {steps} steps", run.test_psnr(), "dB",
                "bf16 render" if "bf16" in k else "fp32")
    if not args.quick:
        sec.add("ours-bf16", f"held-out PSNR after {steps} steps", _psnr_fp32(runs["ours-bf16"]), "dB",
                "fp32 render of the bf16-trained model")
    sec.details = {"steps": steps, "rays": rays, "config": config_mod.to_dict(cfg), "times": times,
                   "cpu_times": cpu, "threads": torch.get_num_threads()}
    return sec


def _psnr_fp32(trainer: Trainer) -> float:
    """Held-out PSNR of a Trainer's model rendered in fp32."""
    from nex_core.training.trainer import psnr_from_mse
    s = trainer.scene
    values = [psnr_from_mse(float(np.mean((render_image(trainer.model, trainer.ref_camera, s.cameras[i]) -
                                           s.images[i]) ** 2))) for i in s.test_ids]
    return float(np.mean(values))
