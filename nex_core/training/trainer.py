"""Training NeX: ray sampling, losses, optimiser and schedule, checkpoints, progress events.

A run directory holds ``config.toml`` (written first), ``events.jsonl``, ``checkpoints/`` and, after
evaluation, ``eval/``. :class:`Trainer` resumes from the newest checkpoint of its run directory and
continues the same loss curve: model, optimiser and ray-sampler states are all checkpointed. A resume may
change only ``config.RESUMABLE`` (more steps or minutes, another device or precision, other intervals;
see ``resume.py``). The learning-rate schedule, the evaluations and the checkpoints are placed at fractions
of the run (``budget.py``): of ``train.steps``, or of the steps that fit in ``train.minutes``.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..io import config as config_mod
from ..io.cameras import Camera
from ..io.config import RunConfig
from ..io.errors import DamagedCheckpointError, TrainingError
from ..io.events import EventLog, Listener
from ..io.run_files import PREVIEW_FILE
from ..model.appearance import AppearanceTransform, parameter_group
from ..model.mpi import CameraBatch, rays_in_reference_frame
from ..model.nex_model import NexModel
from ..runtime.checkpoint import (checkpoint_dir, fingerprint, list_checkpoints, load_checkpoint,
                                  remove_partial_checkpoints, save_checkpoint)
from ..runtime.device import (autocast_dtype, is_out_of_memory, render_autocast_dtype, resolve_device,
                              resolve_field)
from ..runtime.memory_plan import plan_training_memory
from ..runtime.plane_render import RenderStopped, render_views
from ..runtime.render import render_image
from ..runtime.setup import build_geometry, load_scene_for, model_settings
from .budget import decay_factor
from .distributed import (DistInfo, init_distributed, mean_across_ranks, rank_device, shard_triples,
                          shutdown, wrap_model)
from .loop import TrainResult, make_length, psnr_from_mse, run_loop, spent_s
from .resume import prepare_config_file

Tensor = torch.Tensor
PREVIEW_WIDTH = 256


# --------------------------------------------------------------------------------------------------
# Ray sampling


@dataclass
class RayBatch:
    image_index: Tensor  # [R] index into the training images
    rows: Tensor  # [R]
    cols: Tensor  # [R]


def sample_l_shaped(gen: torch.Generator, n_images: int, height: int, width: int, n_rays: int,
                    images_per_step: int) -> RayBatch:
    """Rays in L-shaped triples (a pixel, its right and its lower neighbour), as the reference, drawn
    from ``images_per_step`` random training images. Returns 3 * (n_rays // 3) rays, triple-interleaved."""
    n_triples = n_rays // 3
    k = min(images_per_step, n_images)
    chosen = torch.randperm(n_images, generator=gen)[:k]
    image = chosen[torch.randint(0, k, (n_triples,), generator=gen)]
    row = torch.randint(0, height - 1, (n_triples,), generator=gen)
    col = torch.randint(0, width - 1, (n_triples,), generator=gen)
    rows = torch.stack([row, row, row + 1], 1).reshape(-1)
    cols = torch.stack([col, col + 1, col], 1).reshape(-1)
    return RayBatch(image.repeat_interleave(3), rows, cols)


def gradient_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between predicted and true finite differences over the L-shaped triples ([R, 3] each)."""
    p = pred.reshape(-1, 3, pred.shape[-1])
    t = target.reshape(-1, 3, target.shape[-1])
    dx = (p[:, 1] - p[:, 0]) - (t[:, 1] - t[:, 0])
    dy = (p[:, 2] - p[:, 0]) - (t[:, 2] - t[:, 0])
    return dx.abs().mean() + dy.abs().mean()


class TrainingObjective(torch.nn.Module):
    """The render in each ray's photo's colours and the weighted field regularisers (k0's total variation,
    and the feature grids' where ``grid_tv_weight`` or ``grid_depth_tv_weight`` is set) in one forward pass
    (what DDP wraps)."""

    def __init__(self, model: NexModel, appearance: AppearanceTransform, tv_weight: float = 0.0,
                 grid_tv_weight: float = 0.0, grid_depth_tv_weight: float = 0.0):
        super().__init__()
        self.model, self.appearance = model, appearance
        self.tv_weight, self.grid_tv_weight = tv_weight, grid_tv_weight
        self.grid_depth_tv_weight = grid_depth_tv_weight

    def forward(self, origins: Tensor, dirs: Tensor, image_index: Tensor,
                regularise: bool = True) -> tuple[Tensor, Tensor | float]:
        """(rgb, regulariser); the regulariser is 0.0 unless ``regularise`` (it is added once per step)."""
        # Once per step: the render and the TV term share k0's sigmoid (and, on a CPU, one gradient pass).
        with_tv = regularise and bool(self.tv_weight)
        k0_images, tv = self.model.k0_images_and_tv() if with_tv else (self.model.k0_images(), None)
        rgb = self.appearance(self.model(origins, dirs, k0_images), image_index)
        reg: Tensor | float = 0.0
        if regularise:
            if tv is not None:
                reg = self.tv_weight * tv
            field_tv = self.model.field_tv_loss() if self.grid_tv_weight else None
            if field_tv is not None:
                reg = reg + self.grid_tv_weight * field_tv
            depth_tv = self.model.field_depth_tv_loss() if self.grid_depth_tv_weight else None
            if depth_tv is not None:
                reg = reg + self.grid_depth_tv_weight * depth_tv
        return rgb, reg


# --------------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Trains a NeX model on a scene into a run directory.

    ``should_stop`` is polled every step (e.g. set by a signal handler); when it returns True the trainer
    writes a checkpoint and returns with ``cancelled=True``, so the run can be resumed. A time budget
    (``train.minutes``) counts from ``started`` (a ``time.monotonic()``; default: the trainer's creation).
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, listeners: list[Listener] | None = None,
                 should_stop: Callable[[], bool] | None = None, started: float | None = None):
        # A time budget counts from ``started`` (time.monotonic(); the command's start), else from here.
        self.started = time.monotonic() if started is None else started
        config_mod.validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = DistInfo.from_env()
        self.device = rank_device(self.dist, resolve_device(cfg.train.device))
        init_distributed(self.dist, self.device)
        chosen_field = resolve_field(cfg, self.device)  # before config.toml is written: it records the choice
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        # Only rank 0 writes to the run directory; the other ranks' events go nowhere.
        self.events = EventLog(self.run_dir if self.dist.is_main else None,
                               (listeners or []) if self.dist.is_main else [])
        self.should_stop = should_stop or (lambda: False)
        if self.dist.is_main:
            prepare_config_file(cfg, self.run_dir, self.events)
        self.amp_dtype = autocast_dtype(cfg.train.precision, self.device)
        # fp16 (GPUs without bf16) needs loss scaling, or small gradients flush to zero; bf16 and fp32 don't.
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.events.emit("setup", "start", device=str(self.device), preset=cfg.preset,
                         world_size=self.dist.world_size, field=cfg.model.field, field_auto=chosen_field is not None)
        self.scene = load_scene_for(cfg)
        self.geom = build_geometry(self.scene, cfg)
        torch.manual_seed(cfg.train.seed)
        self.model = NexModel(cfg.model, self.geom).to(self.device)
        self.appearance = AppearanceTransform.from_config(cfg.train, len(self.scene.train_ids)).to(self.device)
        self.optimizer = self._make_optimizer()
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        self.step = 0
        self.lr_scale = 1.0  # lowered after a non-finite loss
        self.rollbacks = 0
        self.micro_batches = 1  # raised after running out of memory
        self.saved_budget: dict = {}  # the budget state of the checkpoint resumed from
        self.checkpoint_s: float | None = None  # how long the last checkpoint took (with its preview)
        self.preview_s: float | None = None  # ... the last preview render, per pixel
        self.eval_s: float | None = None  # ... the last held-out evaluation
        self.settings = model_settings(cfg, self.geom)
        self.fingerprint = fingerprint(self.settings)
        self._upload_data()
        # Start only what fits: micro-batches and render chunk from the estimated peak (or a refusal).
        self.memory_plan = plan_training_memory(cfg, self.model, self.device, self.amp_dtype, self.dist, self.events)
        self.micro_batches, cfg.train.render_chunk = self.memory_plan.micro_batches, self.memory_plan.render_chunk
        self._resume_if_possible()
        self.length = make_length(self)
        self.objective = wrap_model(TrainingObjective(self.model, self.appearance, cfg.train.tv_weight,
                                                      cfg.train.grid_tv_weight, cfg.train.grid_depth_tv_weight),
                                    self.dist, self.device)

    # ---- setup ------------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        groups = self.model.parameter_groups()
        lrs = {"mlp": t.lr, "grid": t.lr_grid, "basis": t.lr_basis, "k0": t.lr_k0}
        param_groups = [{"params": groups[name], "lr": lrs[name], "name": name, "base_lr": lrs[name]}
                        for name in ("mlp", "grid", "basis", "k0") if groups.get(name)]
        param_groups += parameter_group(self.appearance, t.lr_appearance)
        # The fused kernel updates each tensor in one pass (the k0 images and feature grids are large);
        # the same arithmetic as the default loop up to rounding.
        try:
            return torch.optim.Adam(param_groups, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            return torch.optim.Adam(param_groups)

    def _upload_data(self) -> None:
        s = self.scene
        train_cams = [s.cameras[i] for i in s.train_ids]
        self.ref_camera: Camera = s.cameras[s.ref_id]
        self.train_images = torch.from_numpy(np.ascontiguousarray(s.images[s.train_ids])).to(self.device)
        self.train_cams = CameraBatch.from_cameras(self.ref_camera, train_cams, device=self.device)

    def _resume_if_possible(self) -> None:
        """Continue from the newest checkpoint that loads; a damaged newer one is skipped with a warning
        (it is overwritten when training passes its step again)."""
        if self.dist.is_main:
            remove_partial_checkpoints(self.run_dir)
        found = list_checkpoints(self.run_dir)
        for _, path in reversed(found):
            try:
                self._load_state(path)
            except DamagedCheckpointError as exc:
                self.events.emit("setup", "warning", message=f"{exc} -- trying an older checkpoint")
                continue
            self.events.emit("setup", "resume", step=self.step, checkpoint=str(path))
            return
        if found:
            names = ", ".join(p.name for _, p in found)
            raise DamagedCheckpointError(f"{checkpoint_dir(self.run_dir)}: every checkpoint is damaged ({names}); "
                                         f"start a new run (choose another --out directory)")

    def _load_state(self, path: Path) -> Path:
        """Model, optimiser, sampler and step from a checkpoint."""
        data = load_checkpoint(path, self.fingerprint, map_location=self.device)
        self.model.load_state_dict(data["model"])
        self.appearance.load_from_checkpoint(data)
        self.optimizer.load_state_dict(data["optimizer"])
        self.gen.set_state(data["generator"])
        self.step = int(data["step"])
        self.lr_scale = float(data.get("lr_scale", 1.0))
        self.saved_budget = dict(data.get("budget") or {})
        if self.grad_scaler.is_enabled() and data.get("grad_scaler"):
            self.grad_scaler.load_state_dict(data["grad_scaler"])
        return path

    # ---- the loop ---------------------------------------------------------------------------------

    def learning_rate_factor(self, step: int) -> float:
        """``decay_rate ** k``, ``k`` the decay points of ``train.decay_at`` (fractions of the run) at or
        before the run's progress after ``step`` steps: of the current ``train.steps``, or of the budget
        run's current plan (never below the progress it has reached). A run extended from N to M steps
        takes, from step N on, the rate an M-step run has there (it can step back up at N; resume warns)."""
        t = self.cfg.train
        return decay_factor(self.length.progress_at(step), t.decay_at, t.decay_rate)

    def train_step(self) -> tuple[float, float]:
        """One optimisation step; returns (total loss, mse), averaged over ranks.

        The step's rays are processed in ``self.micro_batches`` pieces whose gradients add up to the
        full batch's; running out of memory doubles the pieces and retries the same step.
        """
        t = self.cfg.train
        factor = self.learning_rate_factor(self.step) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        if self.cfg.model.field == "grid" and t.grid_coarse_to_fine > 0:
            self.model.grid_field.set_progress(self.length.progress_at(self.step), t.grid_coarse_to_fine)
        n, h, w, _ = self.train_images.shape
        batch = sample_l_shaped(self.gen, n, h, w, t.rays, t.images_per_step)
        mine = shard_triples(t.rays, self.dist) if self.dist.enabled else slice(None)
        triples = [x.reshape(-1, 3)[mine].to(self.device) for x in (batch.image_index, batch.rows, batch.cols)]
        while True:
            self.optimizer.zero_grad(set_to_none=True)
            try:
                loss, mse = self._accumulate_gradients(*triples)
                break
            except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or self.micro_batches >= triples[0].shape[0]:
                    raise
                self.micro_batches *= 2
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.events.emit("train", "warning", step=self.step,
                                 message=f"out of memory: splitting each step into {self.micro_batches} "
                                         f"micro-batches (same result, slower)")
        self.grad_scaler.step(self.optimizer)  # skips the update when fp16 gradients overflowed
        self.grad_scaler.update()
        self.step += 1
        return (mean_across_ranks(loss, self.dist, self.device), mean_across_ranks(mse, self.dist, self.device))

    def _accumulate_gradients(self, image_index: Tensor, rows: Tensor, cols: Tensor) -> tuple[float, float]:
        """Forward and backward over the triples [T, 3] in micro-batches; returns (loss, mse) of the whole."""
        t = self.cfg.train
        total = image_index.shape[0]
        pieces = torch.arange(total, device=self.device).tensor_split(min(self.micro_batches, total))
        ctx = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        loss_sum = mse_sum = 0.0
        for k, piece in enumerate(pieces):
            idx, r, c = (x[piece].reshape(-1) for x in (image_index, rows, cols))
            target = self.train_images[idx, r, c]
            uv = torch.stack([c, r], -1).float() + 0.5
            origins, dirs = rays_in_reference_frame(self.train_cams, idx, uv)
            last = k == len(pieces) - 1
            sync = nullcontext() if last or not self.dist.enabled else self.objective.no_sync()
            with sync:
                with ctx:
                    pred, reg = self.objective(origins, dirs, idx, k == 0)
                pred = pred.float()
                share = piece.shape[0] / total
                mse = ((pred - target) ** 2).mean()
                loss = share * mse
                if t.grad_weight:
                    loss = loss + share * t.grad_weight * gradient_loss(pred, target)
                if k == 0:  # once per step: the fields' TV and the pull of the colour transforms to the identity
                    loss = loss + reg + self.appearance.regulariser()
                self.grad_scaler.scale(loss).backward()
            loss_sum += float(loss.detach())
            mse_sum += share * float(mse.detach())
        return loss_sum, mse_sum

    MAX_ROLLBACKS = 3

    def _roll_back(self, loss: float) -> None:
        """After a non-finite loss: reload the last good checkpoint and halve the learning rates."""
        found = list_checkpoints(self.run_dir)
        bad_step = self.step
        if not found or self.rollbacks >= self.MAX_ROLLBACKS:
            message = (f"the loss became {loss} at step {bad_step}"
                       + (f" again after {self.rollbacks} roll-backs" if found else " before any checkpoint")
                       + "; try a lower --lr or check the scene's poses and plane range")
            self.events.emit("failed", "error", step=bad_step, message=message)
            raise TrainingError(message)
        self.rollbacks += 1
        scale = self.lr_scale * 0.5
        self._load_state(found[-1][1])
        self.lr_scale = scale
        self.events.emit("train", "warning", step=self.step,
                         message=f"non-finite loss at step {bad_step}: rolled back to step {self.step} with "
                                 f"the learning rates x{self.lr_scale:g}")

    def checkpoint(self) -> Path | None:
        """Write a checkpoint (rank 0 only; the sampler state is the same on every rank)."""
        if not self.dist.is_main:
            return None
        began = time.monotonic()
        length = getattr(self, "length", None)
        spent = spent_s(self)
        if length is not None and length.is_budget and length.total is not None and self.step >= length.total:
            spent = max(spent, 60.0 * self.cfg.train.minutes)  # the end of a budget run: its budget is used up
        budget = {"minutes": self.cfg.train.minutes, "spent_s": spent,
                  "progress": length.progress_at(self.step) if length is not None else 0.0}
        payload = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "generator": self.gen.get_state(), "fingerprint": self.fingerprint,
                   "lr_scale": self.lr_scale, "grad_scaler": self.grad_scaler.state_dict(),
                   "settings": repr(self.settings), "budget": budget, "appearance": self.appearance.state_dict()}
        path = save_checkpoint(self.run_dir, self.step, payload, keep=self.cfg.train.keep_checkpoints)
        self.events.emit("train", "checkpoint", step=self.step, path=str(path))
        self.write_preview()
        self.checkpoint_s = time.monotonic() - began
        return path

    def write_preview(self, max_width: int = PREVIEW_WIDTH) -> Path:
        """Render the reference view (at most ``max_width`` pixels wide) to ``RUN/preview.png``, atomically,
        and emit a ``preview`` event: the Blender add-on shows it while training runs."""
        from PIL import Image

        cam = self.ref_camera
        if cam.width > max_width:
            cam = cam.resized(max_width)
        began = time.monotonic()
        img = render_image(self.model, self.ref_camera, cam, self.cfg.train.render_chunk,
                           render_autocast_dtype(self.cfg.train.precision, self.device))
        path = self.run_dir / PREVIEW_FILE
        tmp = path.with_name(path.name + ".tmp")
        self.preview_s = (time.monotonic() - began) / (cam.width * cam.height)  # seconds a pixel
        Image.fromarray(np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)).save(tmp, format="PNG")
        tmp.replace(path)
        self.events.emit("train", "preview", step=self.step, path=str(path))
        return path

    def test_psnr(self) -> float | None:
        """Mean held-out PSNR over the test views, rendered as ``nex eval`` does: each plane evaluated once
        for all the views (a per-view render costs minutes at 1008 x 756 on a CPU). None when there are no
        test views, or when ``should_stop`` asks to stop during the render (at most one plane later)."""
        s = self.scene
        if not s.test_ids or not self.dist.is_main:
            return None
        try:
            renders = list(render_views(self.model, self.ref_camera, [s.cameras[i] for i in s.test_ids],
                                        should_stop=self.should_stop))
        except RenderStopped:
            return None
        values = [psnr_from_mse(float(np.mean((img - s.images[i]) ** 2))) for i, img in zip(s.test_ids, renders)]
        return float(np.mean(values))

    def train(self) -> TrainResult:
        """Train to ``train.steps`` or for ``train.minutes`` (or until stopped); checkpoints along the way and
        at the end."""
        try:
            result = self._train()
        except BaseException:
            shutdown(self.dist)
            raise
        # Every rank waits for rank 0's final evaluation, so no process leaves the group early (gloo
        # aborts a process whose peer has already closed its connections).
        shutdown(self.dist, wait_for_all=True)
        return result

    def _train(self) -> TrainResult:
        return run_loop(self)
