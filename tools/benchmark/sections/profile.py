"""profile: torch.profiler of one bench-s training step of ours, in labelled phases."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from nex_core.model.mpi import rays_in_reference_frame
from nex_core.training.trainer import Trainer, gradient_loss, sample_l_shaped

from ..results import Section
from ..setups import fast_config


def profiled_step(trainer: Trainer) -> None:
    """Trainer.train_step's work (a copy, for the profile), in labelled phases."""
    from torch.profiler import record_function
    t = trainer.cfg.train
    with record_function("## sample rays"):
        n, h, w, _ = trainer.train_images.shape
        batch = sample_l_shaped(trainer.gen, n, h, w, t.rays, t.images_per_step)
        idx, rows, cols = batch.image_index, batch.rows, batch.cols
        target = trainer.train_images[idx, rows, cols]
        uv = torch.stack([cols, rows], -1).float() + 0.5
        origins, dirs = rays_in_reference_frame(trainer.train_cams, idx, uv)
    ctx = torch.autocast("cpu", dtype=trainer.amp_dtype) if trainer.amp_dtype else nullcontext()
    with record_function("## forward"), ctx:
        pred = trainer.model(origins, dirs).float()
    with record_function("## loss"):
        mse = ((pred - target) ** 2).mean()
        loss = mse + t.tv_weight * trainer.model.tv_loss() + t.grad_weight * gradient_loss(pred, target)
    with record_function("## backward"):
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    with record_function("## adam"):
        trainer.optimizer.step()


def section_profile(args, device: torch.device, tmp: Path) -> Section:
    """Per-phase CPU time of one profiled bench-s step, in fp32 and bf16."""
    from torch.profiler import ProfilerActivity, profile
    sec = Section("profile")
    for precision in ("fp32", "bf16"):
        trainer = Trainer(fast_config(args.scene, "cpu", precision), tmp / f"profile-{precision}")
        for _ in range(3):
            trainer.train_step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            profiled_step(trainer)
        averages = prof.key_averages()
        phases = {e.key: e.cpu_time_total / 1e6 for e in averages if e.key.startswith("## ")}
        for key, value in phases.items():
            sec.add(f"ours {precision}", key[3:], value, "s", "one profiled step")
        sec.details[precision] = {"phases_s": phases,
                                  "table": averages.table(sort_by="self_cpu_time_total", row_limit=30)}
    return sec
