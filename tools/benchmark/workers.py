"""Measurements that run in a fresh Python process each (``tools/bench.py --worker KIND SPEC``), so that
their memory peaks do not mask each other."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nex_core.io.cameras import Camera
from nex_core.runtime.render import chunk_for_budget, render_image

from .measure import memory_fields, rss_bytes, sync, timed
from .setups import PAPER_F, PAPER_H, PAPER_W, paper_model

BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "bench.py"
RESULT_TAG = "BENCH_RESULT "


def worker_render(spec: dict) -> dict:
    """Render a centre strip of ``rows`` rows of a 1008x756 view of a random paper model."""
    device = torch.device(spec["device"])
    model, ref = paper_model(spec["device"])
    rows = spec["rows"]
    c2w = np.eye(4)
    c2w[:3, 3] = [0.05, -0.03, 0.0]
    strip = Camera(PAPER_W, rows, PAPER_F, PAPER_F, PAPER_W / 2, PAPER_H / 2 - (PAPER_H - rows) // 2, c2w)
    amp = torch.bfloat16 if spec["precision"] == "bf16" else None
    chunk = chunk_for_budget(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = rss_bytes()
    seconds = timed(lambda: render_image(model, ref, strip, chunk, amp), device)
    pixels = PAPER_W * rows
    return {"seconds": seconds, "pixels": pixels, "chunk": chunk, "chunks": -(-pixels // chunk),
            "full_image_s": seconds * PAPER_W * PAPER_H / pixels, **memory_fields(before, device)}


def worker_bake(spec: dict) -> dict:
    """bake_run of a trained run directory into a fresh folder."""
    from nex_core.export.bake import bake_run
    from nex_core.runtime.run import open_run

    device = torch.device(spec["device"])
    run = open_run(Path(spec["run_dir"]), spec["device"])
    before = rss_bytes()
    out = Path(spec["out_dir"])
    seconds = timed(lambda: bake_run(run, out), device)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    g = run.geom
    return {"seconds": seconds, "texels": g.mpi_width * g.mpi_height, "planes": g.n_planes,
            "mpi": f"{g.mpi_width}x{g.mpi_height}x{g.n_planes}", "bytes_on_disk": size,
            **memory_fields(before, device)}


class _Enough(Exception):
    """Raised from a progress callback to end a bake after the planes that were to be timed."""


def worker_bake_paper(spec: dict) -> dict:
    """``bake_to_dir`` of a random paper-shape model, stopped after ``planes`` planes (CPU) or run to the
    end; the whole bake extrapolated from the per-plane pace."""
    from nex_core.export.bake import bake_to_dir

    device = torch.device(spec["device"])
    model, ref = paper_model(spec["device"])
    n, stop_after = model.geom.n_planes, spec["planes"]
    marks: list[float] = []

    def progress(done: int, total: int) -> None:
        sync(device)
        marks.append(time.perf_counter())
        if done >= stop_after and done < total:
            raise _Enough

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = rss_bytes()
    t0 = time.perf_counter()
    try:
        bake_to_dir(model, model.geom, ref, [ref], Path(spec["out_dir"]), progress=progress)
    except _Enough:
        pass
    total = time.perf_counter() - t0
    per_plane = [b - a for a, b in zip(marks, marks[1:])] or [marks[0] - t0]
    complete = len(marks) == n
    estimate = total if complete else (marks[0] - t0) + (n - 1) * statistics.median(per_plane)
    return {"seconds": total, "planes_done": len(marks), "planes": n, "complete": complete,
            "first_plane_s": marks[0] - t0, "per_plane_s": per_plane, "bake_estimate_s": estimate,
            "mpi": f"{model.geom.mpi_width}x{model.geom.mpi_height}x{n}", **memory_fields(before, device)}


WORKERS = {"render": worker_render, "bake": worker_bake, "bake-paper": worker_bake_paper}


def run_worker(kind: str, spec: dict, threads: int, timeout: float = 3600) -> dict:
    """Run a worker in a fresh Python process; return its result (or {"error": ...})."""
    cmd = [sys.executable, str(BENCH_SCRIPT), "--worker", kind, json.dumps(spec)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
