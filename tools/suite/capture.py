"""Render one suite scene into a folder: the plain forward-facing grid (PNG images + LLFF poses) or a
phone-like hand-held capture (JPEG photos through the phone lens and pipeline). Needs bpy."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import bpy
import render_demo_scene as demo

from nex_core.io.cameras import opencv_to_llff, opengl_to_opencv
from suite import phone, rig, render
from suite.scenes import load


@dataclass
class Request:
    """What to render."""

    scene: str
    width: int
    height: int
    views: int
    phone: bool = False
    seed: int = 0
    samples: int = 32
    denoise: bool = True
    threads: int = 2


def _write_png(path: Path, linear: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(phone.srgb_encode(linear) * 255.0).astype(np.uint8)).save(path, compress_level=6)


def _write_poses_bounds(path: Path, poses: list[np.ndarray], bounds: list[tuple[float, float]], w: int, h: int,
                        focal: float) -> None:
    """LLFF [N, 17]: the 3x5 [down, right, backward, centre | (H, W, f)] per view, then near, far."""
    hwf = np.array([[h], [w], [focal]], dtype=np.float64)
    rows = [np.concatenate([np.hstack([opencv_to_llff(c), hwf]).ravel(), b]) for c, b in zip(poses, bounds)]
    np.save(path, np.asarray(rows, dtype=np.float64))


def render_capture(req: Request, out: Path, quiet: bool = True, log=print) -> dict:
    """Render ``req`` into ``out``; returns the truth document (also written as ``out/truth.json``)."""
    module = load(req.scene)
    scene = demo.reset_scene()
    markers = module.build()
    focal = phone.focal_px_for(req.width, req.height)
    eye = np.asarray(module.RIG.center, dtype=np.float64)
    render.add_markers(markers, eye, focal)
    if req.phone:
        poses = rig.handheld_path(module.RIG, req.views, req.seed)
        rw, rh = phone.wide_frame(req.width, req.height, focal)
    else:
        poses = rig.camera_grid(module.RIG, req.views, req.seed)
        rw, rh = req.width, req.height
    render.configure(scene, rw, rh, req.samples, req.denoise, req.threads, seed=1 + req.seed)
    cam = render.set_camera(scene, rw, focal)
    rng = np.random.default_rng(req.seed + 1000)
    points = [list(map(float, p)) for p, _ in markers]
    views, c2ws, bounds, times = [], [], [], []
    for i, pose in enumerate(poses):
        c2w = opengl_to_opencv(demo.place_camera(cam, pose))  # the pose exactly as Blender renders it
        near, far = render.depth_bounds(scene, c2w, req.width, req.height, focal)
        t = time.perf_counter()
        linear = render.render_linear(scene, out / ".render" / f"view_{i:03d}.exr", quiet=quiet)
        times.append(time.perf_counter() - t)
        view = {"c2w": c2w.tolist(), "near": near, "far": far,
                "visible_points": render.marker_visibility(scene, c2w[:3, 3], markers)}
        if req.phone:
            frame = phone.apply_lens(linear, req.width, req.height, focal)
            shot = phone.draw_shot(rng, frame)
            view["name"] = f"IMG_{i + 1:04d}.jpg"
            data = phone.jpeg_bytes(phone.develop(frame, shot), shot.orientation, focal)
            (out / "photos").mkdir(parents=True, exist_ok=True)
            (out / "photos" / view["name"]).write_bytes(data)
            view["shot"] = shot.to_dict()
        else:
            view["name"] = f"view_{i:03d}.png"
            _write_png(out / "images" / view["name"], linear)
        views.append(view)
        c2ws.append(c2w)
        bounds.append((near, far))
        log(f"[suite] {req.scene} view {i + 1}/{len(poses)} {rw}x{rh} in {times[-1]:.1f}s")
    (out / ".render").rmdir()
    if not req.phone:
        _write_poses_bounds(out / "poses_bounds.npy", c2ws, bounds, req.width, req.height, focal)
    truth = {
        "scene": req.scene, "summary": module.SUMMARY, "variant": "phone" if req.phone else "grid",
        "width": req.width, "height": req.height, "fx": focal, "fy": focal,
        "cx": req.width / 2.0, "cy": req.height / 2.0,
        "k1": phone.K1 if req.phone else 0.0, "k2": phone.K2 if req.phone else 0.0,
        "render_size": [rw, rh], "seed": req.seed, "samples": req.samples, "denoise": req.denoise,
        "blender": bpy.app.version_string, "render_s_per_view": round(float(np.mean(times)), 3),
        "conventions": "c2w: OpenCV camera-to-world (x right, y down, z forward), world z up; pixel centres "
                       "at +0.5; k1, k2: OpenCV radial on normalised coordinates; photos are stored with "
                       "their EXIF orientation, truth is for the upright frame",
        "points": points, "views": views,
    }
    if req.phone:
        truth["phone"] = {"jpeg_quality": phone.JPEG_QUALITY, "focal_35mm": phone.FOCAL_35MM,
                          "full_well": phone.FULL_WELL, "read_noise": phone.READ_NOISE,
                          "ev_range": phone.EV_RANGE, "wb_range": phone.WB_RANGE}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
