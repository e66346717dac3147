"""(e) Low light: a dim room lit by one small, very bright bulb (seen directly) next to a glossy metal
kettle-like body and a clear-coated floor, so a strong highlight and its reflections sit in a dark frame."""

from __future__ import annotations

import bpy
import render_demo_scene as demo
import render_sfm_scene as sfm

from suite.render import flat_material
from suite.rig import Rig
from suite.scenes import materials as M

SUMMARY = "a dark room, one small very bright bulb: a strong highlight and glossy reflections"
RIG = Rig(center=(0.0, 0.0, 1.1), pitch_deg=-10.0, baseline=(0.4, 0.3), target_depth=2.8)


def build() -> list[M.Marker]:
    """The scene; returns its markers."""
    floor = M.textured("floor", sfm._checker_noise(2.0), Roughness=0.5, Coat_Weight=1.0, Coat_Roughness=0.02)
    M.plane("floor", floor, 10.0, 10.0, (0.0, 3.0, 0.0))
    M.wall("wall", M.textured("wall", sfm._bricks(1.2), Roughness=0.85), 10.0, 5.0, 4.5)
    metal, _, _ = M.principled("copper", (0.95, 0.64, 0.54), Metallic=1.0, Roughness=0.12)
    body = demo.add_mesh(bpy.ops.mesh.primitive_uv_sphere_add, "kettle", metal, smooth=True, segments=64,
                         ring_count=32, radius=0.35, location=(-0.3, 2.6, 0.3))
    body.scale = (1.0, 1.0, 0.85)
    M.box("crate", M.textured("crate", sfm._voronoi_cells(5.0, (0.6, 0.4, 0.2, 1.0)), Roughness=0.8),
          (0.6, 0.6, 0.6), (1.0, 3.3, 0.3), 20)
    bulb = demo.add_mesh(bpy.ops.mesh.primitive_uv_sphere_add, "bulb", flat_material("bulb", (1.0, 0.85, 0.6), 60.0),
                         smooth=True, segments=24, ring_count=12, radius=0.04, location=(0.35, 2.4, 0.9))
    light = bpy.data.lights.new("bulb_light", type="POINT")
    light.energy, light.shadow_soft_size, light.color = 40.0, 0.04, (1.0, 0.85, 0.6)
    lamp = bpy.data.objects.new("bulb_light", light)
    lamp.location = bulb.location
    bpy.context.scene.collection.objects.link(lamp)
    bulb.visible_shadow = False
    M.area_light("fill", 4.0, (2.0, 1.0), (0.0, 0.5, 2.5), (-30.0, 0.0, 0.0), (0.6, 0.7, 1.0))
    M.world((0.05, 0.06, 0.09), 0.05)
    return [M.on_wall(-1.8, 1.2, 4.5), M.on_wall(1.9, 1.5, 4.5), M.on_wall(0.2, 2.3, 4.5)]
