"""Helpers shared by the add-on tests (imported by name: pyproject.toml puts addon_tests/ on sys.path)."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO_SCENE = REPO / "data" / "scenes" / "shiny_demo"
ADDON_MODULE = "bl_ext.user_default.nex_blender"


def addon_compat():
    """The installed add-on's ``compat`` module (EEVEE's engine id, node materials in this Blender)."""
    return importlib.import_module(f"{ADDON_MODULE}.compat")


def exact_render_settings(sc, display_referred: bool = True) -> None:
    """Cycles, 1 sample at the pixel centre, no denoising or dithering, black world; the Raw view
    transform (display-referred MPI) or Standard (scene-linear MPI); 16-bit PNG output."""
    import bpy

    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = 1
    sc.cycles.use_adaptive_sampling = False
    sc.cycles.use_denoising = False
    sc.cycles.pixel_filter_type = "BOX"
    sc.cycles.filter_width = 0.01
    sc.cycles.seed = 0
    sc.render.threads_mode = "FIXED"
    sc.render.threads = 2
    sc.render.dither_intensity = 0.0
    sc.render.film_transparent = False
    sc.view_settings.view_transform = "Raw" if display_referred else "Standard"
    sc.view_settings.look = "None"
    sc.view_settings.exposure = 0.0
    sc.view_settings.gamma = 1.0
    sc.render.image_settings.file_format = "PNG"
    sc.render.image_settings.color_mode = "RGB"
    sc.render.image_settings.color_depth = "16"
    if sc.world is None:
        sc.world = bpy.data.worlds.new("black")
    sc.world.color = (0.0, 0.0, 0.0)
    if sc.world.node_tree is not None:
        for node in sc.world.node_tree.nodes:
            if node.type == "BACKGROUND":
                node.inputs["Strength"].default_value = 0.0


def render_to_array(sc, path: Path) -> np.ndarray:
    """Render the scene camera to ``path`` and return float RGB [H, W, 3]."""
    import bpy
    import imageio.v3 as iio

    sc.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = iio.imread(path)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img[..., :3].astype(np.float64) / scale


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


def wait_job(addon, sc, timeout: float = 300.0, until=None):
    """Advance the scene's background job with the worker's poll step (what the timer does) until it
    ends, or until ``until(status)`` is true. Returns the last status."""
    job = addon.worker.get(sc.name)
    assert job is not None, "no job was started"
    end = time.time() + timeout
    while True:
        addon.worker.poll_step()
        status = job.status
        if not status.running or (until is not None and until(status)):
            return status
        if time.time() > end:
            job.kill()
            raise AssertionError(f"{job.kind} job still running after {timeout} s: {status}")
        time.sleep(0.1)
