"""Material and object helpers shared by the suite's scenes (bpy)."""

from __future__ import annotations

import math

import bpy
import render_demo_scene as demo
from mathutils import Matrix

Marker = tuple[tuple[float, float, float], tuple[float, float, float]]  # (point, outward surface normal)


def principled(name: str, colour=(0.8, 0.8, 0.8), **inputs) -> tuple[bpy.types.Material, bpy.types.NodeTree,
                                                                     bpy.types.Node]:
    """A Principled BSDF material; ``inputs`` by socket name with spaces as underscores."""
    mat, tree, bsdf = demo.new_material(name)
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    for key, value in inputs.items():
        bsdf.inputs[key.replace("_", " ")].default_value = value
    return mat, tree, bsdf


def textured(name: str, builder, **inputs) -> bpy.types.Material:
    """A Principled material whose base colour is the socket ``builder(tree)`` returns."""
    mat, tree, bsdf = principled(name, **inputs)
    tree.links.new(builder(tree), bsdf.inputs["Base Color"])
    return mat


def plane(name: str, mat, sx: float, sy: float, location, rotation=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """A sx x sy plane (object coordinates in world units, so textures scale with the world)."""
    obj = demo.add_mesh(bpy.ops.mesh.primitive_plane_add, name, mat, size=1.0, location=location,
                        rotation=rotation)
    obj.data.transform(Matrix.Diagonal((sx, sy, 1.0, 1.0)))
    return obj


def wall(name: str, mat, width: float, height: float, y: float, z0: float = 0.0) -> bpy.types.Object:
    """A vertical plane facing -y (towards the cameras) with its bottom edge at ``z0``."""
    return plane(name, mat, width, height, (0.0, y, z0 + height / 2), (math.pi / 2, 0.0, 0.0))


def box(name: str, mat, size, location, yaw_deg: float = 0.0) -> bpy.types.Object:
    obj = demo.add_mesh(bpy.ops.mesh.primitive_cube_add, name, mat, size=1.0, location=location,
                        rotation=(0.0, 0.0, math.radians(yaw_deg)))
    obj.data.transform(Matrix.Diagonal((*size, 1.0)))
    return obj


def area_light(name: str, energy: float, size, location, rotation_deg, colour=(1.0, 1.0, 1.0),
               visible: bool = False) -> bpy.types.Object:
    data = bpy.data.lights.new(name, type="AREA")
    data.shape = "RECTANGLE"
    data.size, data.size_y = size
    data.energy, data.color = energy, colour
    obj = bpy.data.objects.new(name, data)
    obj.location = location
    obj.rotation_euler = tuple(math.radians(a) for a in rotation_deg)
    obj.visible_camera = visible
    bpy.context.scene.collection.objects.link(obj)
    return obj


def world(colour, strength: float) -> None:
    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("world")
    if not scene.world.node_tree:
        scene.world.use_nodes = True
    bg = scene.world.node_tree.nodes.get("Background")
    bg.inputs["Color"].default_value = (*colour, 1.0)
    bg.inputs["Strength"].default_value = strength


def text(name: str, body: str, mat, size: float, location, rotation_deg=(90.0, 0.0, 0.0)) -> bpy.types.Object:
    """A filled text object (Blender's built-in font), upright and facing -y by default."""
    bpy.ops.object.text_add(location=location, rotation=tuple(math.radians(a) for a in rotation_deg))
    obj = bpy.context.active_object
    obj.name = name
    obj.data.body = body
    obj.data.size = size
    obj.data.align_x = "CENTER"
    obj.data.fill_mode = "BOTH"
    obj.data.materials.append(mat)
    return obj


def on_wall(x: float, z: float, y: float, gap: float = 0.004) -> Marker:
    """A marker on a wall at depth y facing -y."""
    return (x, y - gap, z), (0.0, -1.0, 0.0)
