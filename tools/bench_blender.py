"""Blender against the photographs (issue 16): how the add-on's import of a trained run renders its held-out
views in Cycles and EEVEE, next to nex_core's own render of the same bake, and what each frame costs.

For every run given, it bakes the run (into ``--work``, the run is not touched), renders each held-out view
with the numpy reference renderer (nex_core's render of the bake), then starts Blender as a Python module
in its own process, installs the add-on from its freshly built zip into a throw-away user folder, imports
the scene's cameras and the MPI with the operators' defaults (scene-linear colour) under the Standard view
transform, and renders each held-out camera in four set-ups:

* ``cycles default``: Blender's own render settings (1.5-pixel filter, adaptive sampling, denoising as
  the factory settings have them) at ``--samples`` samples;
* ``cycles exact``: Import MPI's *Exact Pixels* (0.01-pixel filter, a transparent bounce for every plane, no
  early path termination inside the stack) at one sample, which those settings make noise-free;
* ``eevee default`` and ``eevee exact`` likewise (EEVEE's own samples and filter; one sample, no filter).

Each render is scored (PSNR / SSIM) against the photograph and against nex_core's render; the table gives
the means over the held-out views and the median seconds per frame. Example::

    .venv/bin/python tools/bench_blender.py RUN [RUN ...] --json docs/bench/blender.json --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
SETUPS = ("cycles default", "cycles exact", "eevee default", "eevee exact")
DOC_START, DOC_END = "<!-- bench_blender:start -->", "<!-- bench_blender:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="trained run directories (nex train)")
    p.add_argument("--samples", type=int, default=32,
                   help="Cycles samples of the 'cycles default' set-up (default: 32)")
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of: {', '.join(SETUPS)}")
    p.add_argument("--views", type=int, default=0, help="held-out views per run (default 0: all)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "nex-bench-blender",
                   help="bakes, renders and logs (default: a folder in the system's temp directory)")
    p.add_argument("--json", type=Path, default=None, help="write every render's scores and times here")
    p.add_argument("--write-docs", action="store_true", help="put the table into --doc")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--blender-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.blender_child is None and not args.runs:
        p.error("give at least one run directory")
    unknown = [s for s in _setups(args.setups) if s not in SETUPS]
    if unknown:
        p.error(f"--setups: unknown {', '.join(unknown)}; choose from {', '.join(SETUPS)}")
    if args.samples < 1:
        p.error("--samples must be at least 1")
    return args


def _setups(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


# --------------------------------------------------------------------------------------------------
# The Blender side (its own process: ``--blender-child JOB.json``)


def blender_child(job_path: Path) -> None:
    """Render every held-out camera of one job in every set-up; write the frame times beside the job."""
    job = json.loads(job_path.read_text())
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="nex_bench_blender_")
    import bpy

    assert bpy.ops.extensions.package_install_files(filepath=job["zip"], repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    import importlib

    compat = importlib.import_module("bl_ext.user_default.nex_blender.compat")
    out_dir = Path(job["out"])
    times: dict[str, dict[str, float]] = {}
    for setup in job["setups"]:
        engine, mode = setup.split()
        bpy.ops.wm.read_homefile(use_empty=True)  # factory render settings for every set-up
        scene = bpy.context.scene
        scene.render.engine = "CYCLES" if engine == "cycles" else compat.eevee_engine(scene)
        scene.render.resolution_x, scene.render.resolution_y = job["size"]
        scene.render.resolution_percentage = 100
        scene.view_settings.view_transform, scene.view_settings.look = "Standard", "None"
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode, scene.render.image_settings.color_depth = "RGB", "16"
        scene.render.dither_intensity = 0.0  # so the score measures the renderer, not the output dither
        scene.cycles.device = "CPU"
        assert bpy.ops.nex.import_cameras(directory=job["scene"], background_images=False,
                                          set_resolution=False) == {"FINISHED"}
        assert bpy.ops.nex.import_mpi(directory=job["baked"], exact_pixels=(mode == "exact")) == {"FINISHED"}
        if engine == "cycles":
            scene.cycles.samples = 1 if mode == "exact" else job["samples"]
        elif mode == "exact":
            scene.eevee.taa_render_samples = 1
        times[setup] = {}
        for name in job["views"]:
            scene.camera = bpy.data.objects[Path(name).stem]
            scene.render.filepath = str(out_dir / f"{_slug(setup)}-{Path(name).stem}.png")
            t = time.perf_counter()
            bpy.ops.render.render(write_still=True)
            times[setup][name] = time.perf_counter() - t
    (out_dir / "times.json").write_text(json.dumps(times))


def _slug(setup: str) -> str:
    return setup.replace(" ", "_")


# --------------------------------------------------------------------------------------------------
# The driver


def build_zip(work: Path) -> str:
    """The extension zip built from this checkout; its path."""
    dist = work / "dist"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "build_extension.py"), "--out", str(dist)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"building the extension failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def bake(run: Path, out: Path) -> Path:
    """``nex bake`` of the run into ``out`` (reused when it is newer than the run's last checkpoint)."""
    last = max((p.stat().st_mtime for p in (run / "checkpoints").glob("*")), default=0.0)
    if (out / "mpi.json").is_file() and (out / "mpi.json").stat().st_mtime > last:
        return out
    proc = subprocess.run([sys.executable, "-m", "nex_core.cli", "bake", str(run), "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"nex bake {run} failed:\n{proc.stderr[-2000:]}")
    return out


def _read_png(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    img = iio.imread(path)
    return img[..., :3].astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)


def measure_run(run: Path, args: argparse.Namespace, zip_path: str) -> dict:
    """Bake, render with nex_core and in Blender, score: one run's record."""
    from nex_core.evaluation.metrics import psnr, ssim
    from nex_core.io import config as config_mod
    from nex_core.io.baked import read_baked
    from nex_core.io.baked.reference_render import render_baked
    from nex_core.io.scene.loader import load_scene

    cfg = config_mod.load(run / "config.toml")
    scene_dir = Path(cfg.data.scene)
    work = args.work / run.name
    work.mkdir(parents=True, exist_ok=True)
    baked_dir = bake(run, work / "baked")
    baked = read_baked(baked_dir)
    scene = load_scene(scene_dir, width=baked.info.width, holdout=cfg.data.holdout)
    ids = scene.test_ids[:args.views] if args.views else scene.test_ids
    if not ids:
        raise SystemExit(f"{scene_dir} has no held-out views (holdout={cfg.data.holdout})")
    names = [scene.names[i] for i in ids]
    truth = {scene.names[i]: np.asarray(scene.images[i], np.float64) for i in ids}
    core = {}
    for i in ids:
        t = time.perf_counter()
        core[scene.names[i]] = (render_baked(baked, scene.cameras[i])[..., :3], time.perf_counter() - t)

    renders = work / "renders"
    renders.mkdir(exist_ok=True)
    job = {"zip": zip_path, "scene": str(scene_dir), "baked": str(baked_dir), "out": str(renders),
           "views": names, "size": [baked.info.width, baked.info.height], "setups": _setups(args.setups),
           "samples": args.samples}
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    log = work / "blender.log"
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--blender-child", str(job_path)],
                              stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode or not (renders / "times.json").is_file():
        raise SystemExit(f"Blender failed on {run} (exit {proc.returncode}); its log: {log}\n"
                         + log.read_text()[-2000:])
    times = json.loads((renders / "times.json").read_text())

    record = {"run": str(run), "scene": scene_dir.name, "compositing": cfg.model.compositing,
              "planes": baked.info.n_planes, "size": job["size"], "views": names, "setups": {}}
    record["setups"]["nex_core"] = {
        "psnr_photo": float(np.mean([psnr(core[n][0], truth[n]) for n in names])),
        "ssim_photo": float(np.mean([ssim(core[n][0], truth[n]) for n in names])),
        "seconds": float(np.median([core[n][1] for n in names]))}
    for setup in job["setups"]:
        got = {n: _read_png(renders / f"{_slug(setup)}-{Path(n).stem}.png") for n in names}
        record["setups"][setup] = {
            "psnr_photo": float(np.mean([psnr(got[n], truth[n]) for n in names])),
            "ssim_photo": float(np.mean([ssim(got[n], truth[n]) for n in names])),
            "psnr_core": float(np.mean([psnr(got[n], core[n][0]) for n in names])),
            "seconds": float(np.median(list(times[setup].values())))}
    return record


def table(records: list[dict], samples: int) -> str:
    """The markdown table: one row per run and set-up."""
    lines = ["| scene (compositing, planes) | render | vs photographs: PSNR / SSIM | vs nex_core: PSNR | s / frame |",
             "|---|---|---|---|---|"]
    for rec in records:
        label = f"{rec['scene']} ({rec['compositing']}, {rec['planes']})"
        for setup, m in rec["setups"].items():
            name = {"nex_core": "nex_core (numpy, baked)",
                    "cycles default": f"Cycles, defaults, {samples} samples"}.get(setup, setup)
            name = name.replace("cycles exact", "Cycles, Exact Pixels, 1 sample")
            name = name.replace("eevee default", "EEVEE, defaults").replace("eevee exact", "EEVEE, Exact Pixels, 1 sample")
            core = f"{m['psnr_core']:.2f} dB" if "psnr_core" in m else "-"
            lines.append(f"| {label} | {name} | {m['psnr_photo']:.2f} dB / {m['ssim_photo']:.3f} | {core} | "
                         f"{m['seconds']:.2f} |")
    return "\n".join(lines)


def write_docs(doc: Path, section: str) -> None:
    text = doc.read_text()
    block = f"{DOC_START}\n{section}\n{DOC_END}"
    if DOC_START in text and DOC_END in text:
        head, rest = text.split(DOC_START, 1)
        text = head + block + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.blender_child is not None:
        blender_child(args.blender_child)
        return 0
    from benchmark.machine import cpu_model

    for run in args.runs:
        if not (run / "config.toml").is_file():
            raise SystemExit(f"{run}: not a run directory (no config.toml); give folders `nex train` wrote")
    args.work.mkdir(parents=True, exist_ok=True)
    zip_path = build_zip(args.work)
    records = []
    for run in args.runs:
        print(f"[blender] {run.name}", flush=True)
        records.append(measure_run(run, args, zip_path))
    text = table(records, args.samples)
    print(text)
    machine = f"{cpu_model()}, {os.cpu_count()} cores"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "samples": args.samples, "runs": records}, indent=1))
    if args.write_docs:
        command = "tools/bench_blender.py " + " ".join(str(r) for r in args.runs)
        if args.samples != 32:
            command += f" --samples {args.samples}"
        section = (f"## Blender against the photographs (`tools/bench_blender.py`), {time.strftime('%Y-%m-%d')}\n\n"
                   f"Command: `{command}`\n\nMachine: {machine}; held-out views of each scene, means; "
                   f"s / frame is the median.\n\n{text}")
        write_docs(args.doc, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
