"""(d) Fine detail: layers of foliage-like cut-outs (leaf masks from a Voronoi texture, alpha-cut) at
several depths in front of a sheet of small print and a finely patterned wall."""

from __future__ import annotations

import bpy
import render_demo_scene as demo

from suite.rig import Rig
from suite.scenes import materials as M

SUMMARY = "foliage-like alpha cut-outs in layers, small print, fine patterns (high frequencies)"
RIG = Rig(center=(0.0, 0.0, 1.0), pitch_deg=-3.0, baseline=(0.35, 0.25), target_depth=3.0)
SHEET_Y = 3.2


def _foliage(name: str, scale: float, tint: tuple[float, float, float]) -> bpy.types.Material:
    """Leaves: Voronoi cells shrunk to blobs (distance < threshold) are opaque green, the rest transparent."""
    mat, tree, bsdf = M.principled(name, tint, Roughness=0.55)
    coords = demo.object_coords(tree)
    vor = tree.nodes.new("ShaderNodeTexVoronoi")
    vor.feature = "F1"
    vor.inputs["Scale"].default_value = scale
    tree.links.new(coords, vor.inputs["Vector"])
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale * 4.0
    tree.links.new(coords, noise.inputs["Vector"])
    edge = tree.nodes.new("ShaderNodeMath")
    edge.operation = "LESS_THAN"
    edge.inputs[1].default_value = 0.42
    warp = tree.nodes.new("ShaderNodeMath")
    warp.operation = "MULTIPLY_ADD"
    warp.inputs[1].default_value = 0.25
    tree.links.new(noise.outputs["Fac"], warp.inputs[0])
    tree.links.new(vor.outputs["Distance"], warp.inputs[2])
    tree.links.new(warp.outputs["Value"], edge.inputs[0])
    tree.links.new(demo.mix_color(tree, vor.outputs["Color"], (*tint, 1.0), 0.75), bsdf.inputs["Base Color"])
    tree.links.new(edge.outputs["Value"], bsdf.inputs["Alpha"])
    return mat


def _fine(tree):
    brick = tree.nodes.new("ShaderNodeTexBrick")
    brick.inputs["Scale"].default_value = 12.0
    brick.inputs["Mortar Size"].default_value = 0.05
    tree.links.new(demo.object_coords(tree), brick.inputs["Vector"])
    return brick.outputs["Color"]


def build() -> list[M.Marker]:
    """The scene; returns its markers."""
    paper, _, _ = M.principled("paper", (0.9, 0.88, 0.82), Roughness=0.9)
    ink, _, _ = M.principled("ink", (0.03, 0.03, 0.05), Roughness=0.6)
    M.wall("sheet", paper, 2.2, 1.6, SHEET_Y, z0=0.2)
    for k in range(8):
        M.text(f"print_{k}", "small print: NeX multiplane images, fine detail %d" % k, ink, 0.06,
               (0.0, SHEET_Y - 0.002, 1.6 - 0.15 * k))
    M.wall("wall", M.textured("fine_wall", _fine, Roughness=0.8), 14.0, 7.0, 6.0)
    M.plane("ground", M.textured("ground", _fine, Roughness=0.9), 14.0, 8.0, (0.0, 3.0, 0.0))
    for k, (y, x, scale, tint) in enumerate(((1.3, -0.35, 9.0, (0.15, 0.45, 0.1)), (2.0, 0.45, 6.0, (0.3, 0.55, 0.1)),
                                             (2.7, -0.8, 5.0, (0.1, 0.35, 0.15)))):
        M.wall(f"leaves_{k}", _foliage(f"leaves_{k}", scale, tint), 1.0, 1.1, y, z0=0.1).location.x = x
    M.area_light("key", 120.0, (2.0, 2.0), (0.5, 0.5, 3.5), (-20.0, 0.0, 0.0), (1.0, 0.97, 0.9))
    M.world((0.55, 0.6, 0.7), 0.5)
    # above the foliage (its planes end at z 1.2), so every camera sees them whole
    return [M.on_wall(-0.9, 1.72, SHEET_Y), M.on_wall(0.9, 1.72, SHEET_Y), M.on_wall(-2.6, 3.0, 6.0),
            M.on_wall(2.8, 2.5, 6.0), M.on_wall(0.3, 2.9, 6.0)]
