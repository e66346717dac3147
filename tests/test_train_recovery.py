"""Training survives a non-finite loss (roll back, lower learning rate), running out of memory (split the
step into micro-batches with the same gradient) and a full disk (clear error, last checkpoint kept)."""

import errno
from pathlib import Path

import pytest
import torch

from nex_core.io import config as config_mod
from nex_core.io.errors import CheckpointError, TrainingError
from nex_core.io.events import read_events
from nex_core.runtime import checkpoint as checkpoint_mod
from nex_core.runtime.checkpoint import list_checkpoints
from nex_core.training.trainer import Trainer

DEMO = Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"


def cfg(**train) -> config_mod.RunConfig:
    c = config_mod.preset("tiny")
    c.data.scene = str(DEMO)
    c.train.steps, c.train.checkpoint_every = 12, 4
    for k, v in train.items():
        setattr(c.train, k, v)
    return c


def test_micro_batches_give_the_same_step(tmp_path):
    a = Trainer(cfg(precision="fp32"), tmp_path / "a")  # fp32: compare sums, not bf16 rounding
    b = Trainer(cfg(precision="fp32"), tmp_path / "b")
    b.micro_batches = 4
    la, ma = a.train_step()
    lb, mb = b.train_step()
    assert la == pytest.approx(lb, rel=1e-5) and ma == pytest.approx(mb, rel=1e-5)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=name)


def test_out_of_memory_splits_the_step(tmp_path):
    trainer = Trainer(cfg(), tmp_path / "run")
    forward = trainer.objective.forward

    def small_memory(origins, dirs, image_index, *rest):
        if origins.shape[0] > 200:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(origins, dirs, image_index, *rest)

    trainer.objective.forward = small_memory
    trainer.train_step()
    assert trainer.micro_batches == 4 and trainer.step == 1
    warnings = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["kind"] == "warning"]
    assert "micro-batches" in warnings[-1]["message"]


def test_non_finite_loss_rolls_back(tmp_path):
    trainer = Trainer(cfg(), tmp_path / "run")
    step = trainer.train_step
    poisoned = {"done": False}

    def sometimes_nan():
        loss, mse = step()
        if trainer.step == 6 and not poisoned["done"]:
            poisoned["done"] = True
            return float("nan"), mse
        return loss, mse

    trainer.train_step = sometimes_nan
    result = trainer.train()
    assert result.step == 12 and trainer.lr_scale == 0.5
    events = read_events(tmp_path / "run" / "events.jsonl")
    warning = [e for e in events if e["kind"] == "warning"][0]
    assert "rolled back to step 4" in warning["message"]


def test_non_finite_loss_before_any_checkpoint_is_a_clear_error(tmp_path):
    trainer = Trainer(cfg(), tmp_path / "run")
    trainer.train_step = lambda: (float("nan"), float("nan"))
    with pytest.raises(TrainingError, match="before any checkpoint"):
        trainer.train()


def test_full_disk_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(cfg(), tmp_path / "run")
    trainer.train_step()
    good = trainer.checkpoint()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_mod.os, "fsync", no_space)  # where a full disk surfaces on Linux
    trainer.train_step()
    with pytest.raises(CheckpointError, match="free some disk space.*step_00000001"):
        trainer.checkpoint()
    assert [p for _, p in list_checkpoints(tmp_path / "run")] == [good]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_render_retries_smaller_chunks_when_out_of_memory(tmp_path):
    from nex_core.runtime.render import render_image

    trainer = Trainer(cfg(), tmp_path / "run")
    cam = trainer.scene.cameras[0]
    expected = render_image(trainer.model, trainer.ref_camera, cam, chunk=4096)
    forward = trainer.model.forward
    sizes = []

    def small_memory(origins, dirs):
        sizes.append(origins.shape[0])
        if origins.shape[0] > 1000:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory (simulated)")
        return forward(origins, dirs)

    trainer.model.forward = small_memory
    got = render_image(trainer.model, trainer.ref_camera, cam, chunk=4096)
    assert max(s for s in sizes if s <= 1000) <= 1000 and sizes[0] == 4096
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected))


def test_bf16_autocast_path_trains(tmp_path):
    """The mixed-precision path CUDA uses, exercised on the CPU."""
    trainer = Trainer(cfg(precision="bf16"), tmp_path / "run")
    assert trainer.amp_dtype == torch.bfloat16
    losses = [trainer.train_step()[0] for _ in range(3)]
    assert all(l == l and l < 1.0 for l in losses)
