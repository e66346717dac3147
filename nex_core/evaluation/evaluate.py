"""Held-out evaluation of a trained run: renders, per-view metrics, ``eval/metrics.csv``.

Every view is rendered as the bake and renderers show it, with the identity colour transform (a run
trained with per-photo appearance compensation has no transform for a held-out photo): that is ``psnr``.
``psnr_colour_fit`` is the score appearance-compensated methods report besides it: the render after an
affine colour correction fitted on the other half of the same photo (``metrics.colour_fitted_psnr``).
It is computed for every run, so runs with and without compensation compare on both.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np

from ..io.output_paths import check_output_dir, replacing_dir
from ..io.run_files import RunFiles
from ..runtime.plane_render import render_views
from ..runtime.run import TrainedRun


@dataclass
class EvalResult:
    per_view: list[dict]
    mean: dict
    lpips_note: str  # why LPIPS is missing, or ""
    out_dir: Path


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def evaluate_run(run: TrainedRun, out_dir: Path | None = None, with_lpips: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Render every held-out view, compare with its photo, write images, metrics.csv and metrics.json."""
    from .metrics import evaluate_images, lpips_status, mean_metrics

    out_dir = check_eval_dir(Path(out_dir or RunFiles(run.run_dir).eval))
    scene = run.scene
    use_lpips, note = lpips_status() if with_lpips else (False, "LPIPS disabled")
    rows = []
    # Everything goes to a temporary folder that replaces the old eval folder only once complete.
    with replacing_dir(out_dir, EVAL_WHAT, looks_like_eval) as tmp:
        # Each plane evaluated once for all held-out views (runtime/plane_render.py), not per view.
        renders = render_views(run.model, run.ref_camera, [scene.cameras[i] for i in scene.test_ids])
        for k, (i, pred) in enumerate(zip(scene.test_ids, renders)):
            stem = Path(scene.names[i]).stem
            iio.imwrite(tmp / f"{stem}.png", to_uint8(pred))
            iio.imwrite(tmp / f"{stem}_gt.png", to_uint8(scene.images[i]))
            scores = evaluate_images(pred, scene.images[i], with_lpips=use_lpips)
            rows.append({"view": stem, **scores})
            if progress:
                progress(k + 1, len(scene.test_ids))
        mean = mean_metrics([{k: r[k] for k in METRIC_KEYS} for r in rows]) if rows else dict.fromkeys(METRIC_KEYS)
        _write_csv(tmp / "metrics.csv", rows, mean)
        (tmp / "metrics.json").write_text(json.dumps(
            {"step": run.step, "views": rows, "mean": mean, "lpips_note": "" if use_lpips else note,
             "appearance": run.cfg.train.appearance, "psnr_colour_fit_note": COLOUR_FIT_NOTE},
            indent=2, allow_nan=True), encoding="utf-8")
    return EvalResult(rows, mean, "" if use_lpips else note, out_dir)


METRIC_KEYS = ("psnr", "ssim", "lpips", "psnr_colour_fit")
COLOUR_FIT_NOTE = ("PSNR after a least-squares affine colour transform (3x3 + bias) fitted on the other half of "
                   "the photo: left half fitted, right half scored, and the reverse; both halves pooled")
EVAL_WHAT = "held-out evaluation folder"
_EVAL_SUFFIXES = {".png", ".csv", ".json"}


def looks_like_eval(path: Path) -> bool:
    """Whether an existing folder holds only what an evaluation writes (images and metrics files), so
    replacing it loses nothing else."""
    return all(p.is_file() and not p.is_symlink() and p.suffix.lower() in _EVAL_SUFFIXES for p in path.iterdir())


def check_eval_dir(path: Path) -> Path:
    """Check up front that the evaluation can write (or replace) the folder ``path``."""
    return check_output_dir(path, EVAL_WHAT, looks_like_eval)


def _write_csv(path: Path, rows: list[dict], mean: dict) -> None:
    def fmt(v) -> str:
        return "" if v is None else f"{v:.6f}"

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["view", *METRIC_KEYS])
        for r in rows:
            writer.writerow([r["view"], *(fmt(r.get(k)) for k in METRIC_KEYS)])
        writer.writerow(["mean", *(fmt(mean.get(k)) for k in METRIC_KEYS)])
