"""(a) Shiny tabletop: a polished metal sphere, a glass tumbler and a thin-film (CD-like) iridescent disc on
a varnished wooden table before a patterned wall, under a soft key light and a bright window light."""

from __future__ import annotations

import math

import bpy
import render_demo_scene as demo

from suite.rig import Rig
from suite.scenes import materials as M

SUMMARY = "polished metal, glass and a thin-film iridescent disc on a glossy wooden table"
RIG = Rig(center=(0.0, 0.0, 1.25), pitch_deg=-14.0, baseline=(0.45, 0.3), target_depth=2.6)
TABLE_Z = 0.75


def _wood(tree):
    coords = demo.object_coords(tree)
    wave = tree.nodes.new("ShaderNodeTexWave")
    wave.wave_type, wave.rings_direction = "RINGS", "X"
    wave.inputs["Scale"].default_value = 1.2
    wave.inputs["Distortion"].default_value = 6.0
    wave.inputs["Detail"].default_value = 4.0
    tree.links.new(coords, wave.inputs["Vector"])
    return demo.color_ramp(tree, wave.outputs["Fac"], [(0.0, (0.12, 0.05, 0.02)), (0.6, (0.3, 0.14, 0.05)),
                                                       (1.0, (0.42, 0.22, 0.09))])


def _wallpaper(tree):
    coords = demo.object_coords(tree)
    magic = tree.nodes.new("ShaderNodeTexMagic")
    magic.inputs["Scale"].default_value = 1.5
    tree.links.new(coords, magic.inputs["Vector"])
    vor = tree.nodes.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = 4.0
    tree.links.new(coords, vor.inputs["Vector"])
    return demo.mix_color(tree, magic.outputs["Color"], vor.outputs["Color"], 0.5)


def build() -> list[M.Marker]:
    """The scene; returns its markers."""
    table = M.textured("varnished_wood", _wood, Roughness=0.45, Coat_Weight=0.6, Coat_Roughness=0.05)
    M.box("table", table, (8.0, 5.2, 0.05), (0.0, 2.7, TABLE_Z - 0.025))
    M.wall("wall", M.textured("wallpaper", _wallpaper, Roughness=0.8), 12.0, 6.0, 5.3)
    metal, _, _ = M.principled("polished_metal", (0.93, 0.91, 0.88), Metallic=1.0, Roughness=0.04)
    demo.add_mesh(bpy.ops.mesh.primitive_uv_sphere_add, "metal_sphere", metal, smooth=True, segments=64,
                  ring_count=32, radius=0.28, location=(-0.75, 2.5, TABLE_Z + 0.28))
    glass, _, _ = M.principled("glass", (1.0, 1.0, 1.0), Transmission_Weight=1.0, Roughness=0.0, IOR=1.5)
    tumbler = demo.add_mesh(bpy.ops.mesh.primitive_cylinder_add, "glass_tumbler", glass, smooth=True,
                            vertices=64, radius=0.2, depth=0.45, location=(0.7, 2.9, TABLE_Z + 0.225))
    solid = tumbler.modifiers.new("wall", "SOLIDIFY")
    solid.thickness = 0.012
    disc, _, _ = M.principled("thin_film_disc", (0.9, 0.9, 0.92), Metallic=1.0, Roughness=0.06,
                              Thin_Film_Thickness=420.0, Thin_Film_IOR=1.6)
    demo.add_mesh(bpy.ops.mesh.primitive_cylinder_add, "cd", disc, smooth=True, vertices=96, radius=0.3,
                  depth=0.004, location=(0.05, 2.0, TABLE_Z + 0.3), rotation=(math.radians(40.0), 0.0, 0.3))
    hole, _, _ = M.principled("cd_hole", (0.05, 0.05, 0.05), Roughness=0.5)
    demo.add_mesh(bpy.ops.mesh.primitive_cylinder_add, "cd_hub", hole, vertices=32, radius=0.04, depth=0.006,
                  location=(0.05, 1.998, TABLE_Z + 0.3), rotation=(math.radians(40.0), 0.0, 0.3))
    M.box("book", M.textured("book", _wallpaper, Roughness=0.6), (0.5, 0.35, 0.08), (-0.2, 3.6, TABLE_Z + 0.04), 15)
    M.area_light("key", 90.0, (3.0, 1.5), (0.3, 1.8, 4.0), (-15.0, 0.0, 0.0), (1.0, 0.97, 0.92))
    M.area_light("window", 150.0, (1.5, 2.0), (-3.5, 2.5, 2.0), (0.0, -70.0, 0.0), (0.85, 0.9, 1.0), visible=True)
    M.world((0.5, 0.55, 0.65), 0.2)
    return [M.on_wall(-1.6, 1.7, 5.3), M.on_wall(1.8, 2.1, 5.3), M.on_wall(0.2, 2.6, 5.3),
            ((-1.4, 1.4, TABLE_Z + 0.004), (0.0, 0.0, 1.0)), ((1.5, 1.6, TABLE_Z + 0.004), (0.0, 0.0, 1.0))]
