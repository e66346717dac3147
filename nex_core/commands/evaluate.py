"""``nex eval RUN``: PSNR, SSIM and LPIPS of a trained run on its held-out views."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .console import stderr_console

if TYPE_CHECKING:
    from rich.console import Console


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a run on its held-out views (PSNR, SSIM, LPIPS)")
    p.add_argument("run", help="run directory")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    report_evaluation(Path(args.run), with_lpips=not args.no_lpips, console=stderr_console())
    return 0


def report_evaluation(run_dir: Path, with_lpips: bool, console: Console) -> None:
    """Evaluate a run's held-out views (images and metrics.csv into RUN/eval) and print the means."""
    from ..evaluation.evaluate import evaluate_run
    from ..runtime.run import open_run

    run = open_run(run_dir)
    if not run.scene.test_ids:
        console.print("no held-out views (holdout = 0): nothing to evaluate")
        return
    result = evaluate_run(run, with_lpips=with_lpips)
    m = result.mean
    line = f"held-out ({len(result.per_view)} views): PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}"
    line += f"  LPIPS {m['lpips']:.4f}" if m.get("lpips") is not None else f"  LPIPS unavailable: {result.lpips_note}"
    console.print(line)
    console.print(f"PSNR after fitting each view's colour on its other half: {m['psnr_colour_fit']:.2f} dB "
                  f"(the plain PSNR above uses the identity colour, as the bake and renderers do)")
    console.print(f"images and metrics.csv in {result.out_dir}")
