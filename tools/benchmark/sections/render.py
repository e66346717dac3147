"""render: ``render_image`` of a random-weight paper-shape model, timed and measured in a worker process."""

from __future__ import annotations

from pathlib import Path

import torch

from ..results import Section
from ..setups import PAPER_H, PAPER_W
from ..workers import run_worker


def section_render(args, device: torch.device, tmp: Path) -> Section:
    """Full-image render time and peak memory, each precision in a worker (a strip, extrapolated, on the CPU)."""
    sec = Section("render" if device.type == "cpu" else "render-cuda")
    rows = args.render_rows or (2 if args.quick and device.type == "cpu" else 8 if device.type == "cpu" else PAPER_H)
    precisions = ["fp32"] if args.quick else ["fp32", "bf16"]
    for precision in precisions:
        res = run_worker("render", {"device": str(device), "rows": rows, "precision": precision}, args.threads)
        sec.details[precision] = res
        if "error" in res:
            sec.add(f"ours {precision}", "render", None, note=f"failed: {res['error']}")
            continue
        partial = res["pixels"] < PAPER_W * PAPER_H
        note = (f"{res['pixels']} px ({rows} rows, {res['chunks']} chunks of {res['chunk']} rays) measured, "
                "linear extrapolation" if partial else "whole image")
        sec.add(f"ours {precision}", "1008x756x192 render", res["full_image_s"], "s", note)
        sec.add(f"ours {precision}", "render peak memory (delta)", res["peak_delta_mb"], "MiB",
                f"process peak {res['peak_rss_mb']:.0f} MiB" +
                (f"; CUDA peak {res['cuda_peak_mb']:.0f} MiB" if "cuda_peak_mb" in res else ""))
    return sec
