"""(c) Refraction: a glass of amber liquid standing in front of a printed page, so the text is seen
bent through glass and liquid (two interfaces, IOR 1.5 and 1.33)."""

from __future__ import annotations

import bpy
import render_demo_scene as demo
import render_sfm_scene as sfm

from suite.rig import Rig
from suite.scenes import materials as M

SUMMARY = "a glass of liquid in front of printed text (refraction through two interfaces)"
RIG = Rig(center=(0.0, 0.0, 0.55), pitch_deg=-6.0, baseline=(0.3, 0.2), target_depth=1.6)
PAGE_Y = 2.2
LINES = ("NeX SCENE SUITE - REFRACTION", "The quick brown fox jumps over", "the lazy dog 0123456789",
         "LIQUID IN GLASS BEFORE TEXT", "multiplane images learn it")


def build() -> list[M.Marker]:
    """The scene; returns its markers."""
    paper, _, _ = M.principled("paper", (0.85, 0.83, 0.78), Roughness=0.9)
    ink, _, _ = M.principled("ink", (0.02, 0.02, 0.03), Roughness=0.6)
    M.wall("page", paper, 2.4, 1.4, PAGE_Y, z0=0.0)
    for k, line in enumerate(LINES):
        M.text(f"line_{k}", line, ink, 0.13, (0.0, PAGE_Y - 0.003, 1.15 - 0.2 * k))
    table = M.textured("table", sfm._checker_noise(4.0), Roughness=0.7)
    M.plane("table", table, 6.0, 6.0, (0.0, 2.0, 0.0))
    M.wall("back", M.textured("back", sfm._bricks(1.5), Roughness=0.8), 12.0, 6.0, 4.0)
    glass, _, _ = M.principled("glass", (1.0, 1.0, 1.0), Transmission_Weight=1.0, Roughness=0.0, IOR=1.5)
    cup = demo.add_mesh(bpy.ops.mesh.primitive_cylinder_add, "glass", glass, smooth=True, vertices=96, radius=0.2,
                        depth=0.55, location=(0.1, 1.55, 0.275))
    cup.modifiers.new("wall", "SOLIDIFY").thickness = 0.01
    liquid, _, _ = M.principled("liquid", (1.0, 0.7, 0.35), Transmission_Weight=1.0, Roughness=0.0, IOR=1.33)
    demo.add_mesh(bpy.ops.mesh.primitive_cylinder_add, "liquid", liquid, smooth=True, vertices=96, radius=0.187,
                  depth=0.36, location=(0.1, 1.55, 0.195))
    M.area_light("key", 60.0, (2.0, 1.0), (0.0, 0.6, 2.2), (-30.0, 0.0, 0.0))
    M.world((0.6, 0.65, 0.7), 0.6)
    return [M.on_wall(-0.95, 0.25, PAGE_Y), M.on_wall(0.95, 0.3, PAGE_Y), M.on_wall(-1.0, 1.3, PAGE_Y),
            M.on_wall(1.0, 1.3, PAGE_Y), M.on_wall(-2.5, 1.5, 4.0)]
