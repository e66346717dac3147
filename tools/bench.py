"""Benchmarks of nex_core against a straightforward implementation of the same algorithm
(``nex_core/training/reference_trainer.py``): training-step time, quality per step and per wall-clock
minute, full-image render time and memory, bake time and memory.

    /work/venv/bin/python tools/bench.py [--quick] [--json out.json] [--only NAME ...] [--threads N]

Sections (``--only``): ``bench-s`` (the 160x120 scene, 8x4 planes, MLP 4x128, 2001 rays: ours fp32,
ours bf16 autocast with F_theta fused and under plain autograd, the grid field and the baseline, interleaved
step by step, then held-out PSNR after the same steps),
``paper`` (1008x756, 16x12 planes, MLP 4x384, synthetic images), ``fast`` (held-out PSNR against wall
clock: the ``fast`` preset with nex_core's Trainer vs the baseline with the reference's settings),
``render`` (``render_image`` of a random-weight paper model at 1008x756 x 192 planes), ``bake``
(``bake_run`` of a trained fast run; a paper-shape estimate), ``profile`` (torch.profiler of one bench-s
step of ours), ``cuda`` (the timing sections on CUDA with synchronised timing, when there is a GPU).

Every timing is reported as min / median / max over its repeats; on the CPU the process CPU time is
reported beside the wall clock (steadier on a shared machine). Memory is measured in a separate process
per measurement (its peak resident size, VmHWM, minus its resident size just before the measured call),
so peaks do not mask each other. Machine information and the load average at start and end go into the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from nex_core.io import config as config_mod
from nex_core.io.cameras import Camera, opencv_to_llff
from nex_core.io.config import RunConfig
from nex_core.model.cpuinfo import first_processor_fields
from nex_core.model.mpi import MPIGeometry, plane_depths, rays_in_reference_frame
from nex_core.model.nex_model import NexModel, alpha_offset
from nex_core.runtime.allocator import keep_freed_memory
from nex_core.runtime.render import chunk_for_budget, render_image
from nex_core.training.reference_trainer import BaselineTrainer, reference_settings
from nex_core.training.trainer import Trainer, cpu_flags_and_vendor, gradient_loss, sample_l_shaped

DEMO = REPO / "data" / "scenes" / "shiny_demo"
SECTIONS = ("bench-s", "paper", "fast", "render", "bake", "profile", "cuda")
RESULT_TAG = "BENCH_RESULT "
PAPER_W, PAPER_H, PAPER_F = 1008, 756, 820.0


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One line of the table: a metric of a variant, as min / median / max (or a single value)."""

    section: str
    variant: str
    metric: str
    median: float | None
    min: float | None = None
    max: float | None = None
    unit: str = ""
    note: str = ""


@dataclass
class Section:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""

    def add(self, variant: str, metric: str, values: list[float] | float | None, unit: str = "",
            note: str = "") -> None:
        """Add a row; a list of values becomes min / median / max."""
        if isinstance(values, list):
            s = stats(values)
            self.rows.append(Row(self.name, variant, metric, s["median"], s["min"], s["max"], unit, note))
        else:
            self.rows.append(Row(self.name, variant, metric, values, unit=unit, note=note))


def stats(values: list[float]) -> dict[str, float]:
    """min / median / max / n of a list of numbers."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (synchronised on CUDA)."""
    return timed_cpu(fn, device)[0]


def timed_cpu(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call of ``fn``. On a shared machine the CPU
    time is the steadier figure: it does not count time the process waited for a core."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


# --------------------------------------------------------------------------------------------------
# Machine information


def cpu_model() -> str:
    return first_processor_fields().get("model name") or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The matrix-relevant feature flags of this CPU (nex_core.training.trainer reads them for the precision choice)."""
    flags, _ = cpu_flags_and_vendor()
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def mem_available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "mem_available_gb": round(mem_available_bytes() / 2 ** 30, 1),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return info


# --------------------------------------------------------------------------------------------------
# Configurations and scenes


def fast_config(scene: Path, device: str, precision: str = "fp32") -> RunConfig:
    """The fast preset on ``scene`` (bench-s: 8x4 planes, MLP 4x128, 2001 rays)."""
    cfg = config_mod.preset("fast")
    cfg.data.scene = str(scene)
    cfg.train.device = device
    cfg.train.precision = precision
    return cfg


def with_precision(cfg: RunConfig, precision: str) -> RunConfig:
    out = copy.deepcopy(cfg)
    out.train.precision = precision
    return out


def with_grid(cfg: RunConfig) -> RunConfig:
    """The opt-in grid form of F_theta (model.field = "grid"), everything else unchanged."""
    cfg = copy.deepcopy(cfg)
    cfg.model.field = "grid"
    return cfg


def write_synthetic_scene(root: Path, n_views: int = 12, seed: int = 0) -> Path:
    """A forward-facing LLFF scene of random images at the paper's size (1008 x 756), for timing only."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_views):
        c2w = np.eye(4)
        c2w[:3, 3] = [(i % 4) * 0.1 - 0.15, (i // 4) * 0.1 - 0.1, 0.0]
        small = rng.integers(0, 256, (PAPER_H // 12, PAPER_W // 12, 3), dtype=np.uint8)
        Image.fromarray(small).resize((PAPER_W, PAPER_H), Image.BILINEAR).save(root / "images" / f"v{i:03d}.png")
        pose = np.concatenate([opencv_to_llff(c2w), [[PAPER_H], [PAPER_W], [PAPER_F]]], 1)
        rows.append(np.concatenate([pose.ravel(), [2.0, 40.0]]))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


def paper_config(scene: Path, device: str, rays: int) -> RunConfig:
    cfg = config_mod.preset("paper")
    cfg.data.scene = str(scene)
    cfg.train.device, cfg.train.precision, cfg.train.rays = device, "fp32", rays
    cfg.train.checkpoint_every = 10 ** 9
    return cfg


def paper_model(device: str = "cpu") -> tuple[NexModel, Camera]:
    """A random-weight paper-shape model (16x12 planes, MLP 4x384) over a 1008x756 reference camera."""
    cfg = config_mod.preset("paper").model
    ref = Camera(PAPER_W, PAPER_H, PAPER_F, PAPER_F, PAPER_W / 2, PAPER_H / 2, np.eye(4))
    geom = MPIGeometry.from_camera(ref, round(0.2 * PAPER_W), plane_depths(2.0, 40.0, 192, True))
    torch.manual_seed(0)
    return NexModel(cfg, geom).to(device), ref


def paper_rays_that_fit(requested: int, device: torch.device) -> int:
    """The largest multiple of 3 up to ``requested`` whose training activations (~planes x rays x hidden x
    4 bytes x 14 saved tensors, for each of ours and the baseline) fit in half the free memory."""
    free = torch.cuda.mem_get_info()[0] if device.type == "cuda" else mem_available_bytes()
    per_ray = 192 * 384 * 4 * 14
    fit = int(0.5 * free / per_ray)
    return max(3, min(requested, fit) // 3 * 3)


# --------------------------------------------------------------------------------------------------
# Subprocess workers (one measurement each, so memory peaks are separable)


def _status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Resident set size now."""
    return _status_bytes("VmRSS") or 0


def maxrss_bytes() -> int:
    """Peak resident set size of this process. VmHWM where there is one: ``ru_maxrss`` survives exec on
    Linux, so a child started from a large parent would report the parent's size."""
    hwm = _status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def release_memory() -> None:
    """Give freed heap back to the OS (so later sections and other users see it)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def memory_fields(rss_before: int, device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": maxrss_bytes() / 2 ** 20, "peak_delta_mb": (maxrss_bytes() - rss_before) / 2 ** 20}
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


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
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}


# --------------------------------------------------------------------------------------------------
# Sections


def interleaved_steps(runs: dict[str, Any], steps: int, warmup: int, device: torch.device,
                      cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Step every run in turn (rotating the order each round); wall seconds per step after ``warmup``
    (and CPU seconds into ``cpu_times`` when given)."""
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(steps):
        order = names[i % len(names):] + names[: i % len(names)]
        for k in order:
            wall, cpu = timed_cpu(runs[k].train_step, device)
            if i >= warmup:
                times[k].append(wall)
                if cpu_times is not None:
                    cpu_times.setdefault(k, []).append(cpu)
    return times


def add_step_rows(sec: Section, times: dict[str, list[float]], rays: int,
                  cpu_times: dict[str, list[float]] | None = None, base: str = "baseline") -> None:
    """Rows: wall s / step, rays / s, CPU s / step, and ratios to ``base`` paired round by round."""
    for k, ts in times.items():
        sec.add(k, "s / step", ts, "s", "wall clock")
        sec.add(k, "rays / s", [rays / t for t in ts], "rays/s", "wall clock")
        if cpu_times and k in cpu_times:
            sec.add(k, "CPU s / step", cpu_times[k], "s", "process CPU time (not waiting for a core)")
    for label, table in (("wall", times), ("CPU", cpu_times or {})):
        for k, ts in table.items():
            if k != base and table.get(base):
                paired = [a / b for a, b in zip(ts, table[base])]
                sec.add(f"{k} / {base}", f"step time ratio ({label})", paired, "x", "paired per round")


def section_bench_s(args, device: torch.device, tmp: Path) -> Section:
    sec = Section("bench-s" if device.type == "cpu" else "bench-s-cuda")
    cfg = fast_config(args.scene, str(device))
    ours = Trainer(cfg, tmp / f"bs-ours-{device.type}")
    autograd_mlp = Trainer(with_precision(cfg, "bf16"), tmp / f"bs-bf16-autograd-{device.type}")
    autograd_mlp.model.fused_mlp = False  # F_theta under plain autograd: what nex_core.model.fused_mlp buys
    runs = {"ours": ours, "ours-bf16-autograd-mlp": autograd_mlp,
            "ours-bf16": Trainer(with_precision(cfg, "bf16"), tmp / f"bs-bf16-{device.type}"),
            "ours-grid-bf16": Trainer(with_grid(with_precision(cfg, "bf16")), tmp / f"bs-grid-{device.type}"),
            "baseline": BaselineTrainer(cfg, scene=ours.scene, device=device)}
    steps = args.steps or (12 if args.quick else 300)
    rays = 3 * (cfg.train.rays // 3)
    cpu: dict[str, list[float]] = {}
    times = interleaved_steps(runs, steps, min(3, steps - 1), device, cpu if device.type == "cpu" else None)
    add_step_rows(sec, times, rays, cpu)
    for k, run in runs.items():
        sec.add(k, f"held-out PSNR after {steps} steps", run.test_psnr(), "dB",
                "bf16 render" if "bf16" in k else "fp32")
    if not args.quick:
        sec.add("ours-bf16", f"held-out PSNR after {steps} steps", _psnr_fp32(runs["ours-bf16"]), "dB",
                "fp32 render of the bf16-trained model")
    sec.details = {"steps": steps, "rays": rays, "config": config_mod.to_dict(cfg), "times": times,
                   "cpu_times": cpu, "threads": torch.get_num_threads()}
    return sec


def _psnr_fp32(trainer: Trainer) -> float:
    """Held-out PSNR of a Trainer's model rendered in fp32."""
    from nex_core.training.trainer import psnr_from_mse
    s = trainer.scene
    values = [psnr_from_mse(float(np.mean((render_image(trainer.model, trainer.ref_camera, s.cameras[i]) -
                                           s.images[i]) ** 2))) for i in s.test_ids]
    return float(np.mean(values))


def set_rays(runs: dict[str, Any], rays: int) -> None:
    for run in runs.values():
        run.cfg.train.rays = rays


def section_paper(args, device: torch.device, tmp: Path) -> Section:
    """Paper shape. Each variant, interleaved: one untimed step (Adam's state and the activations' memory
    are allocated), steps at ``rays``, then (full run) steps at 3 rays: the cost that does not grow with
    rays (k0's sigmoid, TV, their gradients, Adam over 79M k0 values); 8001 rays estimated as
    fixed + (t - fixed) * 8001 / rays."""
    sec = Section("paper" if device.type == "cpu" else "paper-cuda")
    cpu = device.type == "cpu"
    requested = args.paper_rays or (501 if args.quick and cpu else 1002 if cpu else 8001)
    rays = paper_rays_that_fit(requested, device)
    scene = write_synthetic_scene(tmp / f"paper-scene-{device.type}")
    cfg = paper_config(scene, str(device), rays)
    ours = Trainer(cfg, tmp / f"paper-ours-{device.type}")
    runs = {"ours": ours, "ours-grid": Trainer(with_grid(cfg), tmp / f"paper-grid-{device.type}"),
            "baseline": BaselineTrainer(copy.deepcopy(cfg), scene=ours.scene, device=device)}
    interleaved_steps(runs, 1, 1, device)  # untimed: allocates Adam's state and the activations' memory
    steps = 1 if args.quick else 3
    cpu: dict[str, list[float]] = {}
    times = interleaved_steps(runs, steps, 0, device, cpu if device.type == "cpu" else None)
    set_rays(runs, 3)
    fixed = {} if args.quick else interleaved_steps(runs, 2, 0, device)
    add_step_rows(sec, times, rays, cpu)
    for k, ts in fixed.items():
        sec.add(k, "s / step at 3 rays (fixed cost)", ts, "s")
    for k, ts in times.items() if fixed else ():
        a = statistics.median(fixed[k])
        sec.add(k, "s / step at 8001 rays (est.)", [a + (t - a) * 8001 / rays for t in ts], "s",
                f"from {rays} rays and the fixed cost" if rays < 8001 else "")
    g = ours.geom
    sec.details = {"rays": rays, "requested_rays": requested, "steps": steps, "times": times, "fixed": fixed,
                   "cpu_times": cpu,
                   "mpi": f"{g.mpi_width}x{g.mpi_height}x{g.n_planes}",
                   "activation_estimate_gib_at_8001": 8001 * 192 * 384 * 4 * 14 / 2 ** 30,
                   "process_peak_rss_mb": maxrss_bytes() / 2 ** 20}
    del runs, ours
    release_memory()
    return sec


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


def section_render(args, device: torch.device, tmp: Path) -> Section:
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


def section_cuda(args, tmp: Path) -> Section:
    if not torch.cuda.is_available():
        return Section("cuda", skipped="no CUDA (torch.cuda.is_available() is False)")
    device = torch.device("cuda")
    sec = Section("cuda")
    for fn in (section_bench_s, section_paper, section_render, section_bake):
        sub = fn(args, device, tmp)
        sec.rows += sub.rows
        sec.details[sub.name] = sub.details
    return sec


def run_section(name: str, args, tmp: Path) -> Section:
    cpu = torch.device("cpu")
    table = {"bench-s": section_bench_s, "paper": section_paper, "fast": section_fast,
             "render": section_render, "bake": section_bake, "profile": section_profile}
    t0 = time.perf_counter()
    try:
        sec = section_cuda(args, tmp) if name == "cuda" else table[name](args, cpu, tmp)
    except Exception as exc:  # a failed section is reported, the others still run
        sec = Section(name, skipped=f"failed: {type(exc).__name__}: {exc}")
    sec.details["section_seconds"] = time.perf_counter() - t0
    sec.details["load_average_after"] = load_average()
    return sec


# --------------------------------------------------------------------------------------------------
# Output


def fmt(x: float | None) -> str:
    if x is None:
        return ""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if abs(x) < 10 else f"{x:.1f}"


def print_table(sections: list[Section]) -> None:
    header = ["section", "variant", "metric", "min", "median", "max", "unit", "note"]
    lines = [[r.section, r.variant, r.metric, fmt(r.min), fmt(r.median), fmt(r.max), r.unit, r.note]
             for s in sections for r in s.rows]
    lines += [[s.name, "-", "skipped", "", "", "", "", s.skipped] for s in sections if s.skipped]
    try:
        from rich.console import Console
        from rich.table import Table
        table = Table(*header)
        for line in lines:
            table.add_row(*line)
        Console(width=200).print(table)
    except ImportError:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
        for line in [header] + lines:
            print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))


def to_json(machine: dict, args, sections: list[Section]) -> dict:
    return {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
            "sections": {s.name: {"rows": [r.__dict__ for r in s.rows], "details": s.details,
                                  "skipped": s.skipped} for s in sections}}


# --------------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 2-3 minute run with fewer steps and repeats")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                   help="tuned: keep freed memory for reuse, as nex train does (default); default: glibc's")
    p.add_argument("--steps", type=int, default=0, help="bench-s steps (default 300; --quick 12)")
    p.add_argument("--minutes", type=float, help="fast-section training budget per variant (default 5; --quick 0.5)")
    p.add_argument("--eval-every", type=int, default=100, help="fast section: steps between held-out PSNRs")
    p.add_argument("--paper-rays", type=int, default=0, help="paper-shape rays (CPU 1002, --quick 501; CUDA 8001; capped to fit memory)")
    p.add_argument("--render-rows", type=int, default=0, help="rows of the 1008x756 render to time (CPU 8, --quick 2; CUDA all)")
    p.add_argument("--scene", type=Path, default=DEMO, help="the scene of bench-s and fast")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(RESULT_TAG + json.dumps(WORKERS[args.worker](json.loads(args.spec))), flush=True)
        return 0
    machine = machine_info()
    # What `nex train` does (nex_core.runtime.allocator); it applies to ours and the baseline alike.
    machine["allocator"] = "glibc default" if args.allocator == "default" else (
        "freed memory kept" if keep_freed_memory() else "glibc default (mallopt unavailable)")
    machine["load_average_start"] = load_average()
    names = args.only or [s for s in SECTIONS if not (args.quick and s == "profile")]
    # bake reuses the fast section's run when both run: keep that order.
    names = sorted(names, key=SECTIONS.index)
    sections = []
    with tempfile.TemporaryDirectory(prefix="nex-bench-") as tmp:
        for name in names:
            print(f"[bench] {name} ... (load {load_average()})", flush=True)
            sections.append(run_section(name, args, Path(tmp)))
    machine["load_average_end"] = load_average()
    machine["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"{machine['cpu']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
          f"({torch.get_num_threads()} threads, allocator: {machine['allocator']}); "
          f"load average {machine['load_average_start']} -> {machine['load_average_end']}")
    print_table(sections)
    if args.json:
        args.json.write_text(json.dumps(to_json(machine, args, sections), indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
