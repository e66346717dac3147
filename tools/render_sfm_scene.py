"""Render a matte, richly textured forward-facing scene with known cameras, for structure-from-motion tests.

Unlike the shipped ``shiny_demo`` (mirror and glass, made to show view-dependent effects), every surface
here is a flat-shaded procedural texture (an Emission shader: no lighting, so a few Cycles samples give
clean images) with plenty of corners and blobs for SIFT: a back wall, a floor, boxes and a sphere at
several depths.  Cameras form a jittered forward-facing grid looking along +y.

Usage (from the repository root, with the Python of tools/render_demo_scene.py: nex_core and ``bpy``)::

    .venv/bin/python tools/render_sfm_scene.py --out /tmp/sfm --grid 4 4 --size 320 240
    .venv/bin/python tools/render_sfm_scene.py --out /tmp/sfm100 --grid 10 10 --size 800 600

Writes ``images/view_XXX.png`` (row-major over the grid) and ``truth.json``: image size, pinhole
intrinsics (pixel centres at +0.5, so cx = W/2) and each view's OpenCV camera-to-world matrix.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import bpy
import render_demo_scene as demo  # beside this script: the shared bpy helpers (materials, meshes, cameras)

from nex_core.io.cameras import look_at_opencv

RIG_SEED = 7
RIG_CENTER = np.array([0.0, 0.0, 1.3])
RIG_PITCH_DEG = -8.0
BASELINE = (1.2, 0.8)  # total horizontal / vertical span of the camera grid (world units)
POS_JITTER = 0.15  # fraction of the grid spacing
ANGLE_JITTER_DEG = (2.0, 2.0, 1.0)  # yaw, pitch, roll
FOV_X_DEG = 55.0
SENSOR_WIDTH_MM = 36.0


def emission_material(name: str, colour_socket_builder) -> bpy.types.Material:
    """A flat (Emission) material whose colour comes from ``colour_socket_builder(tree)``."""
    mat, tree, bsdf = demo.new_material(name)
    out = tree.nodes.get("Material Output")
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    tree.links.new(colour_socket_builder(tree), emit.inputs["Color"])
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    if bsdf is not None:
        tree.nodes.remove(bsdf)
    return mat


def _voronoi_cells(scale: float, tint: tuple[float, float, float, float]):
    def build(tree):
        vor = tree.nodes.new("ShaderNodeTexVoronoi")
        vor.inputs["Scale"].default_value = scale
        tree.links.new(demo.object_coords(tree), vor.inputs["Vector"])
        noise = tree.nodes.new("ShaderNodeTexNoise")
        noise.inputs["Scale"].default_value = scale * 3.0
        noise.inputs["Detail"].default_value = 4.0
        tree.links.new(demo.object_coords(tree), noise.inputs["Vector"])
        cells = demo.mix_color(tree, vor.outputs["Color"], tint, 0.3)
        return demo.mix_color(tree, cells, noise.outputs["Color"], 0.35, "OVERLAY")
    return build


def _bricks(scale: float):
    def build(tree):
        coords = demo.object_coords(tree)
        brick = tree.nodes.new("ShaderNodeTexBrick")
        brick.inputs["Scale"].default_value = scale
        brick.inputs["Mortar Size"].default_value = 0.04
        brick.inputs["Mortar"].default_value = (0.9, 0.9, 0.85, 1.0)
        vor = tree.nodes.new("ShaderNodeTexVoronoi")
        vor.inputs["Scale"].default_value = scale * 1.3
        tree.links.new(coords, vor.inputs["Vector"])
        tree.links.new(vor.outputs["Color"], brick.inputs["Color1"])
        brick.inputs["Color2"].default_value = (0.1, 0.2, 0.5, 1.0)
        tree.links.new(coords, brick.inputs["Vector"])
        return brick.outputs["Color"]
    return build


def _checker_noise(scale: float):
    def build(tree):
        coords = demo.object_coords(tree)
        checker = tree.nodes.new("ShaderNodeTexChecker")
        checker.inputs["Scale"].default_value = scale
        checker.inputs["Color1"].default_value = (0.8, 0.6, 0.3, 1.0)
        checker.inputs["Color2"].default_value = (0.1, 0.3, 0.35, 1.0)
        tree.links.new(coords, checker.inputs["Vector"])
        noise = tree.nodes.new("ShaderNodeTexNoise")
        noise.inputs["Scale"].default_value = scale * 2.0
        noise.inputs["Detail"].default_value = 5.0
        tree.links.new(coords, noise.inputs["Vector"])
        return demo.mix_color(tree, checker.outputs["Color"], noise.outputs["Color"], 0.5, "MULTIPLY")
    return build


def _magic(scale: float):
    def build(tree):
        magic = tree.nodes.new("ShaderNodeTexMagic")
        magic.turbulence_depth = 4
        magic.inputs["Scale"].default_value = scale
        magic.inputs["Distortion"].default_value = 2.0
        tree.links.new(demo.object_coords(tree), magic.inputs["Vector"])
        return magic.outputs["Color"]
    return build


def build_scene() -> None:
    """Geometry and flat textured materials; no lights are needed (everything is emissive)."""
    m = bpy.ops.mesh
    mats = {
        "wall": emission_material("wall", _bricks(0.8)),
        "floor": emission_material("floor", _checker_noise(3.0)),
        "cells": emission_material("cells", _voronoi_cells(6.0, (0.9, 0.3, 0.1, 1.0))),
        "magic": emission_material("magic", _magic(3.0)),
        "blue_cells": emission_material("blue_cells", _voronoi_cells(9.0, (0.1, 0.3, 0.9, 1.0))),
    }
    floor = demo.add_mesh(m.primitive_plane_add, "floor", mats["floor"], size=1.0, location=(0.0, 4.0, 0.0))
    floor.data.transform(demo.Matrix.Diagonal((16.0, 14.0, 1.0, 1.0)))
    wall = demo.add_mesh(m.primitive_plane_add, "wall", mats["wall"], size=1.0, location=(0.0, 9.0, 3.0),
                         rotation=(math.pi / 2, 0.0, 0.0))
    wall.data.transform(demo.Matrix.Diagonal((16.0, 8.0, 1.0, 1.0)))
    demo.add_mesh(m.primitive_cube_add, "box_a", mats["cells"], size=1.0, location=(-1.2, 4.0, 0.5),
                  rotation=(0.0, 0.0, math.radians(30.0)))
    demo.add_mesh(m.primitive_cube_add, "box_b", mats["magic"], size=1.2, location=(1.4, 5.5, 0.6),
                  rotation=(0.0, 0.0, math.radians(-20.0)))
    demo.add_mesh(m.primitive_cube_add, "box_c", mats["blue_cells"], size=0.7, location=(0.2, 3.0, 0.35),
                  rotation=(0.0, 0.0, math.radians(10.0)))
    demo.add_mesh(m.primitive_uv_sphere_add, "ball", mats["magic"], smooth=True, segments=48, ring_count=24,
                  radius=0.6, location=(-0.3, 7.0, 1.6))
    demo.add_mesh(m.primitive_cube_add, "pillar", mats["cells"], size=1.0, location=(-2.8, 7.5, 2.0))


def configure(scene: bpy.types.Scene, width: int, height: int, samples: int, threads: int) -> None:
    """Cycles on the CPU, 8-bit sRGB PNG. The emissive scene has no noise to speak of, but the fine textures
    alias: 8 samples (the default) gave about half the SfM pose error of 4."""
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = samples
    cyc.use_adaptive_sampling = False
    cyc.use_denoising = False
    cyc.seed = 1
    cyc.max_bounces = 0
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    r.threads_mode = "FIXED"
    r.threads = threads
    r.film_transparent = False
    r.dither_intensity = 0.0
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    r.image_settings.color_depth = "8"
    r.image_settings.compression = 15
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("world")
    scene.world = world
    if not world.node_tree:
        world.use_nodes = True
    world.node_tree.nodes.get("Background").inputs["Color"].default_value = (0.5, 0.6, 0.8, 1.0)


def add_camera(scene: bpy.types.Scene, width: int) -> tuple[bpy.types.Object, float]:
    """A pinhole camera with FOV_X_DEG horizontal field of view; returns it and its focal in pixels."""
    focal_px = 0.5 * width / math.tan(math.radians(FOV_X_DEG) / 2.0)
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = SENSOR_WIDTH_MM
    data.lens = focal_px * SENSOR_WIDTH_MM / width
    data.clip_start, data.clip_end = 0.05, 100.0
    cam = bpy.data.objects.new("camera", data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam, focal_px


def camera_grid(cols: int, rows: int, seed: int = RIG_SEED) -> list[np.ndarray]:
    """OpenCV c2w poses of a jittered forward-facing grid, row-major."""
    pitch = math.radians(RIG_PITCH_DEG)
    base = look_at_opencv(RIG_CENTER, np.array([0.0, math.cos(pitch), math.sin(pitch)]), np.array([0.0, 0.0, -1.0]))
    rng = np.random.default_rng(seed)
    dx = BASELINE[0] / max(cols - 1, 1)
    dy = BASELINE[1] / max(rows - 1, 1)
    poses = []
    for row in range(rows):
        for col in range(cols):
            jx, jy = rng.uniform(-POS_JITTER, POS_JITTER, 2)
            angles = rng.uniform(-1.0, 1.0, 3) * np.array(ANGLE_JITTER_DEG)
            c2w = base.copy()
            c2w[:3, 3] = (RIG_CENTER + (col - (cols - 1) / 2 + jx) * dx * base[:3, 0]
                          + (row - (rows - 1) / 2 + jy) * dy * base[:3, 1])
            c2w[:3, :3] = base[:3, :3] @ demo.rotation_xyz(*angles)
            poses.append(c2w)
    return poses


def render(out: Path, cols: int, rows: int, width: int, height: int, samples: int = 8, threads: int = 2,
           verbose: bool = False) -> dict:
    """Render the grid into ``out/images`` and write ``out/truth.json``; returns the truth document."""
    scene = demo.reset_scene()
    build_scene()
    configure(scene, width, height, samples, threads)
    cam, focal = add_camera(scene, width)
    views = []
    for i, pose in enumerate(camera_grid(cols, rows)):
        m_gl = demo.place_camera(cam, pose)
        name = f"view_{i:03d}.png"
        demo.render_view(scene, out / "images" / name, quiet=not verbose)
        views.append({"name": name, "c2w": demo.opengl_to_opencv(m_gl).tolist()})
    truth = {"width": width, "height": height, "fx": focal, "fy": focal, "cx": width / 2.0,
             "cy": height / 2.0, "views": views}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--grid", type=int, nargs=2, default=[4, 4], metavar=("COLS", "ROWS"))
    p.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    render(args.out.resolve(), *args.grid, *args.size, samples=args.samples, threads=args.threads,
           verbose=args.verbose)
    print(f"[sfm-scene] {args.grid[0] * args.grid[1]} views {args.size[0]}x{args.size[1]} -> {args.out} "
          f"in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
