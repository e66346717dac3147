"""The CUDA-only paths, run where a GPU is (``pytest -m cuda``; tools/gpu_check.sh runs them): the renderer
and compositor on the GPU against the CPU reference, autocast training, fp16 loss scaling, and the
out-of-memory fallback of whole-image rendering under a forced small memory cap. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
from support.configs import tiny_config
import torch
from support.models import random_model
from support.poses import random_pose

from nex_core.io.cameras import Camera
from nex_core.io.events import read_events
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.mpi import render_explicit_mpi
from nex_core.model.reference_render import render_reference
from nex_core.runtime.render import render_image
from nex_core.training import trainer as trainer_mod
from nex_core.training.trainer import Trainer


pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available())")]



def test_compositor_on_the_gpu_matches_the_cpu_reference():
    rng = np.random.default_rng(3)
    ref = Camera(16, 12, 14.0, 13.0, 8.3, 5.7, random_pose(rng, 20, 1.0))
    depths = plane_depths(1.5, 6.0, 5, invz=True)
    geom = MPIGeometry.from_camera(ref, 3, depths)
    rgba = rng.uniform(0, 1, (5, 4, geom.mpi_height, geom.mpi_width))
    target = Camera(13, 11, 12.0, 12.5, 6.1, 5.4, ref.c2w @ random_pose(rng))
    expected = render_reference(rgba, list(depths), 3, ref, target)
    got = render_explicit_mpi(torch.tensor(rgba, device="cuda"), geom, ref, target).cpu().numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_model_render_on_the_gpu_matches_the_cpu():
    model, _, ref, cams = random_model()
    cpu = render_image(model, ref, cams[0])
    gpu = render_image(model.to("cuda"), ref, cams[0])
    assert np.abs(gpu - cpu).max() < 1e-3


def test_autocast_training_on_the_gpu_learns(tmp_path):
    trainer = Trainer(tiny_config(device="cuda", steps=60, checkpoint_every=1000), tmp_path / "run")
    assert trainer.device.type == "cuda" and trainer.amp_dtype in (torch.bfloat16, torch.float16)
    trainer.train()
    losses = [e["loss"] for e in read_events(tmp_path / "run" / "events.jsonl") if e["kind"] == "progress"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_fp16_loss_scaling_on_the_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(trainer_mod, "autocast_dtype", lambda precision, device: torch.float16)
    trainer = Trainer(tiny_config(device="cuda", steps=40, checkpoint_every=1000), tmp_path / "fp16")
    assert trainer.grad_scaler.is_enabled()
    trainer.train()
    losses = [e["loss"] for e in read_events(tmp_path / "fp16" / "events.jsonl") if e["kind"] == "progress"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] and trainer.grad_scaler.get_scale() > 1.0


def test_render_halves_its_chunk_under_a_small_memory_cap():
    """With the process held to a small share of the GPU, a large first chunk runs out of memory and the
    renderer retries smaller: same picture as an unconstrained render."""
    model, _, ref, cams = random_model()
    model = model.to("cuda")
    target = cams[1].resized(800)  # 480,000 rays: one chunk of them needs about a gigabyte
    want = render_image(model, ref, target, chunk=4096)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    in_use = torch.cuda.memory_reserved()
    cap = (in_use + (64 << 20)) / total  # what is held now plus 64 MiB
    torch.cuda.set_per_process_memory_fraction(cap)
    try:
        got = render_image(model, ref, target, chunk=1 << 24)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert np.abs(got - want).max() < 1e-4
