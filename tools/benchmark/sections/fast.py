"""fast: held-out PSNR against training wall clock, nex_core's Trainer against the baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from nex_core.io import config as config_mod
from nex_core.io.config import RunConfig
from nex_core.model.nex_model import alpha_offset
from nex_core.training.reference_trainer import BaselineTrainer, reference_settings
from nex_core.training.trainer import Trainer

from ..measure import release_memory
from ..results import Section
from ..setups import fast_config, with_grid


def _timed_test_psnr(trainer: Any, spent: list[float]) -> Callable[[], float | None]:
    """Wrap a trainer's test_psnr so that the seconds it takes are added to ``spent``."""
    original = trainer.test_psnr

    def wrapper() -> float | None:
        t0 = time.perf_counter()
        value = original()
        spent.append(time.perf_counter() - t0)
        return value
    return wrapper


def train_ours_for(cfg: RunConfig, run_dir: Path, seconds: float) -> tuple[list[dict], Trainer, float]:
    """nex_core's Trainer on ``cfg`` until done or ``seconds`` of training (evaluation excluded)
    -> (curve, trainer, evaluation seconds)."""
    curve: list[dict] = []
    spent: list[float] = []
    start = [0.0]

    def listener(event: dict) -> None:
        if event.get("kind") == "test_psnr":
            curve.append({"step": event["step"], "train_s": event["elapsed_s"] - sum(spent),
                          "test_psnr": event["test_psnr"]})

    trainer = Trainer(cfg, run_dir, listeners=[listener],
                      should_stop=lambda: time.perf_counter() - start[0] - sum(spent) > seconds)
    trainer.test_psnr = _timed_test_psnr(trainer, spent)
    start[0] = time.perf_counter()
    result = trainer.train()
    if result.cancelled and (not curve or curve[-1]["step"] != trainer.step):  # evaluate where it stopped
        train_s = time.perf_counter() - start[0] - sum(spent)
        curve.append({"step": trainer.step, "train_s": train_s, "test_psnr": trainer.test_psnr()})
    return curve, trainer, sum(spent)


def train_baseline_for(cfg: RunConfig, seconds: float, eval_every: int, scene: Any,
                       device: torch.device) -> tuple[list[dict], BaselineTrainer, float]:
    """The baseline on ``cfg`` for ``seconds`` of training (evaluation excluded)
    -> (curve, trainer, evaluation seconds)."""
    trainer = BaselineTrainer(cfg, scene=scene, device=device)
    spent: list[float] = []
    trainer.test_psnr = _timed_test_psnr(trainer, spent)
    curve: list[dict] = []
    t0 = time.perf_counter()
    train_s = lambda: time.perf_counter() - t0 - sum(spent)  # noqa: E731
    while train_s() < seconds and trainer.step < cfg.train.steps:
        trainer.train_step()
        if eval_every and trainer.step % eval_every == 0:
            now = train_s()
            curve.append({"step": trainer.step, "train_s": now, "test_psnr": trainer.test_psnr()})
    if not curve or curve[-1]["step"] != trainer.step:
        now = train_s()
        curve.append({"step": trainer.step, "train_s": now, "test_psnr": trainer.test_psnr()})
    return curve, trainer, sum(spent)


def section_fast(args, device: torch.device, tmp: Path) -> Section:
    """Held-out PSNR after the same training wall clock (evaluation time excluded from the budget): ours
    (the fast preset, nex_core's Trainer) against the baseline with the reference's settings (the same
    network and step count; its alpha offset, one image per step, its learning rates) and, in a full run,
    the baseline with the reference's rates but nex_core's alpha offset (which of the two changes gains)."""
    sec = Section("fast")
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 5.0)
    seconds = 60.0 * minutes
    cfg = fast_config(args.scene, str(device), precision="auto")  # what `nex train --preset fast` does
    cfg.train.eval_every = args.eval_every
    ours_curve, ours, ours_eval = train_ours_for(cfg, tmp / "fast-ours", seconds)
    args.fast_run_dir = tmp / "fast-ours"
    o = ours_curve[-1]
    sec.add("ours (fast preset)", f"held-out PSNR after {minutes:g} min", o["test_psnr"], "dB",
            f"step {o['step']} of {cfg.train.steps}; {o['train_s']:.0f} s training + {ours_eval:.0f} s eval")
    sec.details.update({"minutes": minutes, "eval_every": args.eval_every, "ours_curve": ours_curve,
                        "ours_train": config_mod.to_dict(cfg)["train"]})
    if not args.quick:
        grid_curve, grid, grid_eval = train_ours_for(with_grid(cfg), tmp / "fast-grid", seconds)
        g = grid_curve[-1]
        sec.add("ours, grid field (fast preset + --field grid)", f"held-out PSNR after {minutes:g} min",
                g["test_psnr"], "dB", f"step {g['step']} of {cfg.train.steps}; {g['train_s']:.0f} s training + "
                f"{grid_eval:.0f} s eval")
        sec.details["grid_curve"] = grid_curve
        del grid
    variants = {"reference settings": 5.0}
    if not args.quick:
        variants["reference rates, our alpha offset"] = cfg.model.sigmoid_offset
    for label, offset in variants.items():
        base_cfg = reference_settings(cfg, offset)
        curve, base, base_eval = train_baseline_for(base_cfg, seconds, args.eval_every, ours.scene, device)
        b = curve[-1]
        what = "alpha offset 5" if offset >= 0 else f"alpha offset {alpha_offset(base_cfg.model, base.geom.n_planes):.2f} (auto)"
        sec.add(f"baseline ({label})", f"held-out PSNR after {minutes:g} min", b["test_psnr"], "dB",
                f"step {b['step']}; {b['train_s']:.0f} s training + {base_eval:.0f} s eval; {what}, 1 image/step, "
                f"lr_k0 {base_cfg.train.lr_k0:g}, lr_basis {base_cfg.train.lr_basis:g}")
        sec.add(f"ours - baseline ({label})", "PSNR gain", o["test_psnr"] - b["test_psnr"], "dB",
                "issue target: >= +1 dB at 5 min")
        sec.details[f"baseline_curve ({label})"] = curve
        sec.details[f"baseline_train ({label})"] = config_mod.to_dict(base_cfg)["train"]
        del base
    del ours
    release_memory()
    return sec
