"""bake: ``bake_run`` of a trained fast run, and a paper-shape estimate, in worker processes."""

from __future__ import annotations

from pathlib import Path

import torch

from nex_core.training.trainer import Trainer

from ..results import Section
from ..setups import fast_config
from ..workers import run_worker


def ensure_run_dir(args, tmp: Path) -> Path:
    """A trained fast-preset run directory: the fast section's, or a 2-step one."""
    existing = getattr(args, "fast_run_dir", None)
    if existing and Path(existing, "config.toml").exists():
        return Path(existing)
    cfg = fast_config(args.scene, "cpu")
    cfg.train.steps = 2
    Trainer(cfg, tmp / "bake-run").train()
    return tmp / "bake-run"


def section_bake(args, device: torch.device, tmp: Path) -> Section:
    """Bake time and peak memory of a trained fast run and (full run) of the paper shape, each in a worker."""
    sec = Section("bake" if device.type == "cpu" else "bake-cuda")
    try:
        import nex_core.export.bake  # noqa: F401
    except ImportError as exc:
        sec.skipped = f"not available: nex_core.export.bake cannot be imported ({exc})"
        return sec
    run_dir = ensure_run_dir(args, tmp)
    spec = {"device": str(device), "run_dir": str(run_dir), "out_dir": str(tmp / f"baked-{device.type}")}
    res = run_worker("bake", spec, args.threads)
    sec.details["fast"] = res
    if "error" in res:
        sec.add("bake_run", "bake", None, note=f"failed: {res['error']}")
    else:
        sec.add("bake_run (fast run)", "bake time", res["seconds"], "s",
                f"MPI {res['mpi']}, PNG atlases {res['bytes_on_disk'] / 2**20:.1f} MiB")
        sec.add("bake_run (fast run)", "bake peak memory (delta)", res["peak_delta_mb"], "MiB",
                f"process peak {res['peak_rss_mb']:.0f} MiB")
    if not args.quick:
        planes = 2 if device.type == "cpu" else 10 ** 6
        res = run_worker("bake-paper", {"device": str(device), "planes": planes,
                                        "out_dir": str(tmp / f"baked-paper-{device.type}")}, args.threads)
        sec.details["paper"] = res
        if "error" in res:
            sec.add("paper shape", "bake", None, note=f"failed: {res['error']}")
        else:
            what = "whole bake" if res["complete"] else (
                f"bake_to_dir stopped after {res['planes_done']} of {res['planes']} planes, extrapolated")
            sec.add(f"bake_to_dir (paper {res['mpi']})", "bake time" + ("" if res["complete"] else " (est.)"),
                    res["bake_estimate_s"], "s", what)
            sec.add(f"bake_to_dir (paper {res['mpi']})", "bake peak memory (delta)", res["peak_delta_mb"], "MiB",
                    f"over the planes baked; process peak {res['peak_rss_mb']:.0f} MiB")
    return sec
