"""(b) Deep matte: flat-lit (emissive) procedural textures on cards, boxes and a floor from 1.5 to 30
world units, before a far background at 120 units: a large depth range for inverse-depth planes, and
plenty of texture for structure from motion."""

from __future__ import annotations

import math

import bpy
import render_demo_scene as demo
import render_sfm_scene as sfm  # beside: its emissive texture builders

from suite.rig import Rig
from suite.scenes import materials as M

SUMMARY = "matte rich textures from 1.5 to 30 units before a background at 120 (inverse-depth planes)"
RIG = Rig(center=(0.0, 0.0, 1.2), pitch_deg=-4.0, baseline=(0.5, 0.35), target_depth=4.0)
FAR = 120.0
CARDS = (  # (x, depth y, bottom z, width, height, texture)
    (-0.9, 1.6, 0.3, 0.6, 0.8, "cells"), (0.75, 2.4, 0.0, 0.8, 1.4, "magic"), (-1.6, 4.0, 0.0, 1.2, 2.0, "bricks"),
    (1.9, 6.5, 0.0, 1.8, 3.0, "checker"), (-3.5, 11.0, 0.0, 3.0, 5.0, "blue"), (5.0, 18.0, 0.0, 5.0, 8.0, "cells"),
    (-2.0, 30.0, 0.0, 10.0, 12.0, "magic"),
)


def build() -> list[M.Marker]:
    """The scene; returns its markers."""
    tex = {"cells": sfm._voronoi_cells(6.0, (0.9, 0.3, 0.1, 1.0)), "magic": sfm._magic(2.5),
           "bricks": sfm._bricks(2.0), "checker": sfm._checker_noise(3.0),
           "blue": sfm._voronoi_cells(3.0, (0.1, 0.3, 0.9, 1.0))}
    mats = {name: sfm.emission_material(name, b) for name, b in tex.items()}
    markers: list[M.Marker] = []
    for k, (x, y, z0, w, h, name) in enumerate(CARDS):
        card = M.plane(f"card_{k}", mats[name], w, h, (x, y, z0 + h / 2), (math.pi / 2, 0.0, 0.0))
        if k < 5:
            markers.append(M.on_wall(x + 0.25 * w, z0 + 0.7 * h, y, gap=0.002 * y))
    floor = M.plane("floor", sfm.emission_material("floor", sfm._checker_noise(1.5)), 400.0, FAR, (0.0, FAR / 2, 0.0))
    far_mat = sfm.emission_material("far", sfm._voronoi_cells(0.08, (0.3, 0.5, 0.8, 1.0)))
    M.wall("background", far_mat, 400.0, 200.0, FAR, z0=0.0)
    demo.add_mesh(bpy.ops.mesh.primitive_cube_add, "box", mats["bricks"], size=0.5, location=(0.1, 3.2, 0.25),
                  rotation=(0.0, 0.0, math.radians(25.0)))
    demo.add_mesh(bpy.ops.mesh.primitive_uv_sphere_add, "ball", mats["checker"], smooth=True, segments=48,
                  ring_count=24, radius=0.35, location=(-0.2, 5.0, 0.35))
    M.world((0.5, 0.6, 0.8), 1.0)
    return markers + [M.on_wall(12.0, 40.0, FAR, gap=0.1)]
