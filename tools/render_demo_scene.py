"""Build and render the shipped forward-facing demo scene ("shiny_demo") with Blender/Cycles on the CPU.

The scene is made entirely procedurally in bpy (no downloaded assets): a polished metal sphere, a glass
sphere refracting a striped cylinder behind it, a glossy clear-coated checker floor, a brick back wall and
textured boxes at several depths.  A jittered 5 x 4 grid of forward-facing cameras renders it at 160 x 120.

Usage (from the repository root, with a Python that has nex_core and Blender as a module, ``bpy``: the
project's ``.venv`` after ``pip install -e ".[blender]"``)::

    .venv/bin/python tools/render_demo_scene.py                       # -> data/scenes/shiny_demo/
    .venv/bin/python tools/render_demo_scene.py --out DIR --grid 6 4
    .venv/bin/python tools/render_demo_scene.py --only-view 0 --out /tmp/check   # one image only

Writes ``images/view_XXX.png`` (row-major over the grid, top row first, left to right),
``poses_bounds.npy`` (LLFF), ``transforms.json`` (NeRF/instant-ngp, plus per-frame ``near``/``far``),
``scene_info.json`` and ``README.md``.  Everything is seeded, so re-running reproduces the images.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

import bpy
from mathutils import Matrix, Vector

from nex_core.io.cameras import look_at_opencv, opencv_to_llff, opencv_to_opengl, opengl_to_opencv

REPO_ROOT = Path(__file__).resolve().parents[1]

GENERATOR_VERSION = "1.0.0"
DEFAULT_OUT = REPO_ROOT / "data" / "scenes" / "shiny_demo"

WIDTH, HEIGHT = 160, 120
FOCAL_PX = 150.0  # horizontal FOV = 2 atan(80 / 150) = 56.1 degrees
SENSOR_WIDTH_MM = 36.0

RENDER_SEED = 1234  # Cycles sampling seed
RIG_SEED = 20240611  # camera jitter seed
SAMPLES = 64
THREADS = 2

# Camera rig (world frame = Blender's, z up; the cameras look roughly along +y).
RIG_CENTER = np.array([0.0, 0.0, 1.25])
RIG_PITCH_DEG = -9.0  # looking slightly down
GRID = (5, 4)  # columns, rows (20 views: keeps the PNGs under ~700 KB in all)
BASELINE_X = 0.40  # total horizontal span of the grid (world units)
BASELINE_Y = 0.30  # total vertical span
POS_JITTER = 0.2  # fraction of the grid spacing (uniform +-)
DEPTH_JITTER = 0.03  # world units along the viewing direction (uniform +-)
ANGLE_JITTER_DEG = (2.5, 2.5, 1.5)  # yaw, pitch, roll (uniform +-)

BOUNDS_GRID = (40, 30)  # ray-cast pixel grid per camera for the depth bounds
NEAR_MARGIN, FAR_MARGIN = 0.9, 1.1  # near = 0.9 * min depth, far = 1.1 * max depth


# --------------------------------------------------------------------------------------------------
# Scene setup
# --------------------------------------------------------------------------------------------------

@dataclass
class SceneObject:
    """Book-keeping for scene_info.json."""

    name: str
    kind: str
    material: str
    location: tuple[float, float, float]
    size: dict


def reset_scene() -> bpy.types.Scene:
    """Start from an empty factory scene."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def new_material(name: str) -> tuple[bpy.types.Material, bpy.types.NodeTree, bpy.types.Node]:
    """A node material with its Principled BSDF (returned for configuration)."""
    mat = bpy.data.materials.new(name)
    if not mat.node_tree:  # Blender < 5 needs use_nodes; 5.x always has a tree
        mat.use_nodes = True
    tree = mat.node_tree
    bsdf = tree.nodes.get("Principled BSDF")
    return mat, tree, bsdf


def object_coords(tree: bpy.types.NodeTree, scale: float = 1.0) -> bpy.types.NodeSocket:
    """Object-space texture coordinates, optionally scaled."""
    tc = tree.nodes.new("ShaderNodeTexCoord")
    mapping = tree.nodes.new("ShaderNodeMapping")
    mapping.inputs["Scale"].default_value = (scale, scale, scale)
    tree.links.new(tc.outputs["Object"], mapping.inputs["Vector"])
    return mapping.outputs["Vector"]


def mix_color(tree: bpy.types.NodeTree, a, b, factor: float, blend: str = "MIX") -> bpy.types.NodeSocket:
    """Mix two colours (sockets or RGBA tuples) and return the result socket."""
    mix = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.blend_type = blend
    mix.inputs["Factor"].default_value = factor
    for socket_name, value in (("A", a), ("B", b)):
        sock = mix.inputs[socket_name]
        if isinstance(value, bpy.types.NodeSocket):
            tree.links.new(value, sock)
        else:
            sock.default_value = value
    return mix.outputs["Result"]


def color_ramp(tree: bpy.types.NodeTree, source: bpy.types.NodeSocket,
               stops: list[tuple[float, tuple[float, float, float]]]) -> bpy.types.NodeSocket:
    """A colour ramp driven by ``source`` with the given (position, rgb) stops."""
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    elements = ramp.color_ramp.elements
    while len(elements) < len(stops):
        elements.new(0.5)
    for element, (pos, rgb) in zip(elements, stops):
        element.position = pos
        element.color = (*rgb, 1.0)
    tree.links.new(source, ramp.inputs["Fac"])
    return ramp.outputs["Color"]


def build_materials() -> dict[str, bpy.types.Material]:
    """All materials of the scene, by name."""
    mats: dict[str, bpy.types.Material] = {}

    # Polished metal: a near-mirror, reflects the whole surroundings.
    mat, tree, bsdf = new_material("polished_metal")
    bsdf.inputs["Base Color"].default_value = (0.92, 0.90, 0.86, 1.0)
    bsdf.inputs["Metallic"].default_value = 1.0
    bsdf.inputs["Roughness"].default_value = 0.03
    mats[mat.name] = mat

    # Clear glass, IOR 1.45.
    mat, tree, bsdf = new_material("glass")
    bsdf.inputs["Base Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bsdf.inputs["Transmission Weight"].default_value = 1.0
    bsdf.inputs["Roughness"].default_value = 0.0
    bsdf.inputs["IOR"].default_value = 1.45
    mats[mat.name] = mat

    # Glossy floor: noisy two-tone checker under a sharp clear coat.
    mat, tree, bsdf = new_material("glossy_floor")
    coords = object_coords(tree)
    checker = tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 2.5
    checker.inputs["Color1"].default_value = (0.70, 0.55, 0.34, 1.0)
    checker.inputs["Color2"].default_value = (0.08, 0.30, 0.32, 1.0)
    tree.links.new(coords, checker.inputs["Vector"])
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 2.0
    noise.inputs["Detail"].default_value = 3.0
    tree.links.new(coords, noise.inputs["Vector"])
    tint = color_ramp(tree, noise.outputs["Fac"], [(0.3, (0.9, 0.3, 0.2)), (0.5, (0.95, 0.9, 0.6)),
                                                   (0.7, (0.3, 0.5, 0.95))])
    base = mix_color(tree, checker.outputs["Color"], tint, 0.45, "MULTIPLY")
    tree.links.new(base, bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.6
    bsdf.inputs["Coat Weight"].default_value = 1.0
    bsdf.inputs["Coat Roughness"].default_value = 0.02
    bsdf.inputs["Coat IOR"].default_value = 1.5
    mats[mat.name] = mat

    # Back wall: bricks whose colour varies per (large) Voronoi cell.
    mat, tree, bsdf = new_material("brick_wall")
    coords = object_coords(tree)
    cells = tree.nodes.new("ShaderNodeTexVoronoi")
    cells.inputs["Scale"].default_value = 0.9
    tree.links.new(coords, cells.inputs["Vector"])
    brick = tree.nodes.new("ShaderNodeTexBrick")
    brick.inputs["Scale"].default_value = 1.0
    brick.inputs["Brick Width"].default_value = 0.8
    brick.inputs["Row Height"].default_value = 0.4
    brick.inputs["Mortar Size"].default_value = 0.03
    brick.inputs["Mortar"].default_value = (0.85, 0.84, 0.80, 1.0)
    brick.inputs["Color2"].default_value = (0.10, 0.22, 0.55, 1.0)
    brick.offset = 0.5
    tree.links.new(mix_color(tree, cells.outputs["Color"], (0.85, 0.25, 0.05, 1.0), 0.35),
                   brick.inputs["Color1"])
    tree.links.new(coords, brick.inputs["Vector"])
    tree.links.new(brick.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8
    mats[mat.name] = mat

    # Matte box: random-coloured Voronoi cells.
    mat, tree, bsdf = new_material("voronoi_matte")
    voronoi = tree.nodes.new("ShaderNodeTexVoronoi")
    voronoi.inputs["Scale"].default_value = 7.0
    tree.links.new(object_coords(tree), voronoi.inputs["Vector"])
    tree.links.new(voronoi.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.9
    mats[mat.name] = mat

    # Tall box: colourful "magic" pattern.
    mat, tree, bsdf = new_material("magic_matte")
    magic = tree.nodes.new("ShaderNodeTexMagic")
    magic.turbulence_depth = 3
    magic.inputs["Scale"].default_value = 2.5
    magic.inputs["Distortion"].default_value = 1.5
    tree.links.new(object_coords(tree), magic.inputs["Vector"])
    tree.links.new(mix_color(tree, magic.outputs["Color"], (0.5, 0.5, 0.5, 1.0), 0.25), bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.85
    mats[mat.name] = mat

    # Cylinder behind the glass: distorted rainbow bands (seen refracted).
    mat, tree, bsdf = new_material("wave_stripes")
    wave = tree.nodes.new("ShaderNodeTexWave")
    wave.wave_type = "BANDS"
    wave.bands_direction = "Z"
    wave.inputs["Scale"].default_value = 3.0
    wave.inputs["Distortion"].default_value = 3.0
    wave.inputs["Detail"].default_value = 1.0
    tree.links.new(object_coords(tree), wave.inputs["Vector"])
    stripes = color_ramp(tree, wave.outputs["Fac"], [(0.0, (0.8, 0.1, 0.1)), (0.33, (0.85, 0.72, 0.1)),
                                                     (0.66, (0.1, 0.7, 0.3)), (1.0, (0.15, 0.2, 0.9))])
    tree.links.new(stripes, bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.7
    mats[mat.name] = mat

    # Wall behind the cameras: never seen directly, only in reflections.
    mat, tree, bsdf = new_material("reflected_backdrop")
    checker = tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 1.0
    checker.inputs["Color1"].default_value = (0.95, 0.95, 0.9, 1.0)
    checker.inputs["Color2"].default_value = (0.7, 0.1, 0.35, 1.0)
    tree.links.new(object_coords(tree), checker.inputs["Vector"])
    tree.links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.9
    mats[mat.name] = mat
    return mats


def add_mesh(op, name: str, material: bpy.types.Material, smooth: bool = False, **kwargs) -> bpy.types.Object:
    """Run a primitive-add operator, name the new object and assign its material."""
    op(**kwargs)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.materials.append(material)
    if smooth:
        for poly in obj.data.polygons:
            poly.use_smooth = True
    return obj


def build_geometry(mats: dict[str, bpy.types.Material]) -> list[SceneObject]:
    """Create every mesh of the scene; returns their descriptions."""
    objs: list[SceneObject] = []
    m = bpy.ops.mesh

    def record(obj: bpy.types.Object, kind: str, size: dict) -> None:
        objs.append(SceneObject(obj.name, kind, obj.active_material.name,
                                tuple(round(v, 6) for v in obj.location), size))

    floor = add_mesh(m.primitive_plane_add, "floor", mats["glossy_floor"], size=1.0, location=(0.0, 1.5, 0.0))
    floor.data.transform(Matrix.Diagonal((14.0, 13.0, 1.0, 1.0)))  # x in [-7, 7], y in [-5, 8]
    record(floor, "plane", {"x": 14.0, "y": 13.0})

    wall = add_mesh(m.primitive_plane_add, "back_wall", mats["brick_wall"], size=1.0,
                    location=(0.0, 8.0, 3.0), rotation=(math.pi / 2, 0.0, 0.0))
    wall.data.transform(Matrix.Diagonal((14.0, 6.0, 1.0, 1.0)))  # x in [-7, 7], z in [0, 6]
    record(wall, "plane", {"x": 14.0, "z": 6.0})

    backdrop = add_mesh(m.primitive_plane_add, "reflected_backdrop", mats["reflected_backdrop"], size=1.0,
                        location=(0.0, -3.0, 3.0), rotation=(math.pi / 2, 0.0, 0.0))
    backdrop.data.transform(Matrix.Diagonal((14.0, 6.0, 1.0, 1.0)))
    record(backdrop, "plane (behind the cameras)", {"x": 14.0, "z": 6.0})

    sphere = add_mesh(m.primitive_uv_sphere_add, "metal_sphere", mats["polished_metal"], smooth=True,
                      segments=96, ring_count=48, radius=0.5, location=(-0.55, 2.9, 0.5))
    record(sphere, "uv_sphere", {"radius": 0.5})

    glass = add_mesh(m.primitive_uv_sphere_add, "glass_sphere", mats["glass"], smooth=True,
                     segments=96, ring_count=48, radius=0.55, location=(0.75, 3.4, 0.55))
    record(glass, "uv_sphere", {"radius": 0.55})

    cyl = add_mesh(m.primitive_cylinder_add, "striped_cylinder", mats["wave_stripes"], smooth=True,
                   vertices=64, radius=0.45, depth=1.6, location=(1.2, 5.2, 0.8))
    record(cyl, "cylinder", {"radius": 0.45, "height": 1.6})

    box = add_mesh(m.primitive_cube_add, "voronoi_box", mats["voronoi_matte"], size=0.9,
                   location=(-1.9, 4.6, 0.45), rotation=(0.0, 0.0, math.radians(25.0)))
    record(box, "cube", {"edge": 0.9, "rotation_z_deg": 25.0})

    tall = add_mesh(m.primitive_cube_add, "magic_box", mats["magic_matte"], size=1.0,
                    location=(-0.4, 6.3, 0.8), rotation=(0.0, 0.0, math.radians(-15.0)))
    tall.data.transform(Matrix.Diagonal((0.8, 0.8, 1.6, 1.0)))
    record(tall, "box", {"x": 0.8, "y": 0.8, "z": 1.6, "rotation_z_deg": -15.0})
    return objs


def build_lights_and_world(scene: bpy.types.Scene) -> dict:
    """Area lights (key above, hidden glint near the wall), a warm sun, a pale blue world; returns them."""
    area_data = bpy.data.lights.new("area_key", type="AREA")
    area_data.shape = "RECTANGLE"
    area_data.size, area_data.size_y = 3.0, 1.5
    area_data.energy = 220.0
    area_data.color = (1.0, 0.97, 0.92)
    area = bpy.data.objects.new("area_key", area_data)
    area.location = (0.3, 2.2, 4.0)
    area.rotation_euler = (math.radians(-15.0), 0.0, 0.0)
    scene.collection.objects.link(area)

    # Low light between the spheres and the tall box, hidden from camera rays: its mirror image glints on the floor.
    glint_data = bpy.data.lights.new("floor_glint", type="AREA")
    glint_data.shape = "RECTANGLE"
    glint_data.size, glint_data.size_y = 1.0, 0.3
    glint_data.energy = 10.0
    glint_data.color = (1.0, 0.85, 0.9)
    glint = bpy.data.objects.new("floor_glint", glint_data)
    glint.location = (0.15, 5.4, 0.9)
    glint.rotation_euler = (math.radians(-80.0), 0.0, 0.0)  # faces the cameras, tilted down
    glint.visible_camera = False
    scene.collection.objects.link(glint)

    sun_data = bpy.data.lights.new("sun", type="SUN")
    sun_data.energy = 1.2
    sun_data.angle = math.radians(3.0)
    sun_data.color = (1.0, 0.9, 0.75)
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (math.radians(50.0), 0.0, math.radians(-35.0))
    scene.collection.objects.link(sun)

    world = bpy.data.worlds.new("world")
    scene.world = world
    if not world.node_tree:
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    background.inputs["Color"].default_value = (0.45, 0.55, 0.75, 1.0)
    background.inputs["Strength"].default_value = 0.4
    return {
        "area_key": {"energy_W": 220.0, "size": [3.0, 1.5], "location": list(area.location)},
        "floor_glint": {"energy_W": 10.0, "size": [1.0, 0.3], "location": list(glint.location),
                        "visible_to_camera": False},
        "sun": {"strength": 1.2, "angle_deg": 3.0, "rotation_euler_deg": [50.0, 0.0, -35.0]},
        "world": {"color": [0.45, 0.55, 0.75], "strength": 0.4},
    }


def configure_render(scene: bpy.types.Scene, samples: int) -> dict:
    """Deterministic Cycles CPU settings, Standard view transform, 8-bit RGB PNG; returns them."""
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = samples
    cyc.use_adaptive_sampling = False
    cyc.seed = RENDER_SEED
    cyc.use_animated_seed = False
    cyc.use_guiding = False
    cyc.max_bounces = 12
    cyc.diffuse_bounces = 3
    cyc.glossy_bounces = 6
    cyc.transmission_bounces = 10
    cyc.transparent_max_bounces = 8
    cyc.caustics_reflective = False
    cyc.caustics_refractive = False
    cyc.blur_glossy = 0.5
    cyc.sample_clamp_indirect = 10.0
    cyc.use_denoising = True
    cyc.denoiser = "OPENIMAGEDENOISE"
    cyc.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    cyc.denoising_prefilter = "ACCURATE"
    cyc.denoising_use_gpu = False

    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = WIDTH, HEIGHT, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.threads_mode = "FIXED"
    r.threads = THREADS
    r.film_transparent = False
    r.dither_intensity = 0.0
    for prop in r.bl_rna.properties:  # no date/time/render-time metadata: keeps the PNGs byte-stable
        if prop.identifier.startswith("use_stamp"):
            setattr(r, prop.identifier, False)
    img = r.image_settings
    img.file_format = "PNG"
    img.color_mode = "RGB"
    img.color_depth = "8"
    img.compression = 100

    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    return {
        "engine": "CYCLES", "device": "CPU", "samples": samples, "adaptive_sampling": False,
        "seed": RENDER_SEED, "denoiser": "OPENIMAGEDENOISE (albedo+normal, accurate prefilter)",
        "threads_mode": "FIXED", "threads": THREADS, "max_bounces": 12, "diffuse_bounces": 3,
        "glossy_bounces": 6, "transmission_bounces": 10, "caustics": False, "blur_glossy": 0.5,
        "sample_clamp_indirect": 10.0, "pixel_filter": f"{cyc.pixel_filter_type} {cyc.filter_width} px",
        "view_transform": "Standard", "look": "None", "exposure": 0.0, "gamma": 1.0, "dither": 0.0,
        "output": "PNG 8-bit RGB",
    }


# --------------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------------

def rotation_xyz(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """A small rotation in OpenCV camera axes: yaw about y (down), pitch about x, roll about z."""
    a, b, c = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def camera_grid(cols: int, rows: int, seed: int = RIG_SEED) -> list[np.ndarray]:
    """OpenCV c2w poses of a jittered forward-facing grid, row-major (top row first, left to right)."""
    pitch = math.radians(RIG_PITCH_DEG)
    forward = np.array([0.0, math.cos(pitch), math.sin(pitch)])
    base = look_at_opencv(RIG_CENTER, forward, np.array([0.0, 0.0, -1.0]))
    right, down, fwd = base[:3, 0], base[:3, 1], base[:3, 2]
    dx = BASELINE_X / max(cols - 1, 1)
    dy = BASELINE_Y / max(rows - 1, 1)
    rng = np.random.default_rng(seed)
    poses = []
    for row in range(rows):
        for col in range(cols):
            jx, jy = rng.uniform(-POS_JITTER, POS_JITTER, 2)
            jz = rng.uniform(-DEPTH_JITTER, DEPTH_JITTER)
            angles = rng.uniform(-1.0, 1.0, 3) * np.array(ANGLE_JITTER_DEG)
            x = (col - (cols - 1) / 2 + jx) * dx
            y = (row - (rows - 1) / 2 + jy) * dy
            c2w = base.copy()
            c2w[:3, 3] = RIG_CENTER + x * right + y * down + jz * fwd
            c2w[:3, :3] = base[:3, :3] @ rotation_xyz(*angles)
            poses.append(c2w)
    return poses


def add_camera(scene: bpy.types.Scene) -> bpy.types.Object:
    """The render camera: principal point at the image centre, square pixels, focal FOCAL_PX pixels."""
    cam_data = bpy.data.cameras.new("camera")
    cam_data.type = "PERSP"
    cam_data.lens_unit = "MILLIMETERS"
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = SENSOR_WIDTH_MM
    cam_data.lens = FOCAL_PX * SENSOR_WIDTH_MM / WIDTH
    cam_data.shift_x = cam_data.shift_y = 0.0
    cam_data.clip_start, cam_data.clip_end = 0.05, 100.0
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def place_camera(cam: bpy.types.Object, c2w_cv: np.ndarray) -> np.ndarray:
    """Put the camera at an OpenCV pose; returns its evaluated Blender (OpenGL-axes) matrix_world."""
    cam.matrix_world = Matrix(opencv_to_opengl(c2w_cv).tolist())
    bpy.context.view_layer.update()
    m = np.array(cam.matrix_world, dtype=np.float64)
    assert np.allclose(np.linalg.norm(m[:3, :3], axis=0), 1.0, atol=1e-6), "camera must not be scaled"
    return m


# --------------------------------------------------------------------------------------------------
# Depth bounds, rendering, metadata
# --------------------------------------------------------------------------------------------------

def depth_bounds(scene: bpy.types.Scene, c2w_cv: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(near, far, depths) from ray casts on a BOUNDS_GRID of pixel centres; z-depth along the optical axis.

    near = NEAR_MARGIN * min depth, far = FAR_MARGIN * max depth.  Every ray must hit geometry.
    """
    depsgraph = bpy.context.evaluated_depsgraph_get()
    nx, ny = BOUNDS_GRID
    us = (np.arange(nx) + 0.5) * WIDTH / nx
    vs = (np.arange(ny) + 0.5) * HEIGHT / ny
    rot, origin = c2w_cv[:3, :3], c2w_cv[:3, 3]
    depths = []
    for v in vs:
        for u in us:
            d_cam = np.array([(u - WIDTH / 2) / FOCAL_PX, (v - HEIGHT / 2) / FOCAL_PX, 1.0])
            d_world = rot @ d_cam
            hit, loc, *_ = scene.ray_cast(depsgraph, Vector(origin), Vector(d_world / np.linalg.norm(d_world)))
            if not hit:
                raise RuntimeError(f"ray through pixel ({u:.1f}, {v:.1f}) hit nothing: the scene is not closed")
            depths.append(float(np.dot(np.array(loc) - origin, rot[:, 2])))
    depths = np.array(depths)
    return NEAR_MARGIN * float(depths.min()), FAR_MARGIN * float(depths.max()), depths


@contextlib.contextmanager
def quiet_stdout(enabled: bool = True) -> Iterator[None]:
    """Silence Cycles' per-sample progress lines (C-level stdout) while rendering."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def render_view(scene: bpy.types.Scene, path: Path, quiet: bool = True) -> None:
    """Render the current camera to ``path``: 8-bit RGB PNG without metadata (so the bytes are stable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(path.stem + ".blender.png")
    scene.render.filepath = str(raw)
    with quiet_stdout(quiet):
        bpy.ops.render.render(write_still=True)
    if not raw.exists():
        raise RuntimeError(f"Blender did not write {raw}")
    # Blender stores render times in PNG text chunks; re-encode the pixels alone, as compactly as possible.
    with Image.open(raw) as im:
        pixels = np.asarray(im.convert("RGB"))
    Image.fromarray(pixels).save(path, format="PNG", optimize=True)
    raw.unlink()


def write_poses_bounds(path: Path, c2ws_cv: list[np.ndarray], bounds: list[tuple[float, float]]) -> None:
    """LLFF poses_bounds.npy: [N, 17] = flattened 3x5 [down, right, backward, centre | (H, W, f)] + near, far."""
    hwf = np.array([[HEIGHT], [WIDTH], [FOCAL_PX]], dtype=np.float64)
    rows = [np.concatenate([np.hstack([opencv_to_llff(c), hwf]).ravel(), b]) for c, b in zip(c2ws_cv, bounds)]
    np.save(path, np.array(rows, dtype=np.float64))


def write_transforms(path: Path, c2ws_gl: list[np.ndarray], bounds: list[tuple[float, float]]) -> None:
    """NeRF / instant-ngp transforms.json (OpenGL camera axes), plus per-frame near/far (NeX extension)."""
    doc = {
        "camera_angle_x": 2.0 * math.atan(WIDTH / (2.0 * FOCAL_PX)),
        "camera_angle_y": 2.0 * math.atan(HEIGHT / (2.0 * FOCAL_PX)),
        "fl_x": FOCAL_PX, "fl_y": FOCAL_PX, "cx": WIDTH / 2.0, "cy": HEIGHT / 2.0,
        "w": WIDTH, "h": HEIGHT,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": [
            {"file_path": f"images/view_{i:03d}.png", "transform_matrix": m.tolist(),
             "near": near, "far": far}
            for i, (m, (near, far)) in enumerate(zip(c2ws_gl, bounds))
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_scene_info(path: Path, objects: list[SceneObject], lights: dict, render: dict,
                     grid: tuple[int, int], n_views: int) -> None:
    """scene_info.json: everything needed to trace how the data was made."""
    metal = next(o for o in objects if o.name == "metal_sphere")
    glass = next(o for o in objects if o.name == "glass_sphere")
    doc = {
        "name": "shiny_demo",
        "generator": "tools/render_demo_scene.py",
        "generator_version": GENERATOR_VERSION,
        "blender_version": bpy.app.version_string,
        "resolution": {"width": WIDTH, "height": HEIGHT},
        "intrinsics": {"fx": FOCAL_PX, "fy": FOCAL_PX, "cx": WIDTH / 2.0, "cy": HEIGHT / 2.0,
                       "fov_x_deg": math.degrees(2 * math.atan(WIDTH / (2 * FOCAL_PX))),
                       "lens_mm": FOCAL_PX * SENSOR_WIDTH_MM / WIDTH, "sensor_width_mm": SENSOR_WIDTH_MM,
                       "sensor_fit": "HORIZONTAL"},
        "samples": render["samples"],
        "seed": RENDER_SEED,
        "rig_seed": RIG_SEED,
        "render_settings": render,
        "world_frame": "Blender world (z up); cameras look roughly along +y",
        "cameras": {
            "n_views": n_views, "grid_cols_rows": list(grid), "order": "row-major, top row first, left to right",
            "rig_center": RIG_CENTER.tolist(), "pitch_deg": RIG_PITCH_DEG,
            "baseline_xy": [BASELINE_X, BASELINE_Y], "position_jitter_fraction_of_spacing": POS_JITTER,
            "depth_jitter": DEPTH_JITTER, "angle_jitter_deg_yaw_pitch_roll": list(ANGLE_JITTER_DEG),
        },
        "bounds": {"method": "scene.ray_cast on a grid of pixel centres; z-depth along the optical axis",
                   "grid": list(BOUNDS_GRID), "near": f"{NEAR_MARGIN} * min depth",
                   "far": f"{FAR_MARGIN} * max depth"},
        "objects": [o.__dict__ | {"location": list(o.location)} for o in objects],
        "lights": lights,
        "landmarks": {"metal_sphere_center": list(metal.location), "metal_sphere_radius": metal.size["radius"],
                      "glass_sphere_center": list(glass.location), "glass_sphere_radius": glass.size["radius"]},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


README_TEXT = """# shiny_demo — procedural forward-facing scene for NeX

A small synthetic scene with strong view-dependent effects, made to test NeX end to end:
a polished metal sphere (mirror-like reflections of a checkered backdrop behind the cameras), a glass
sphere (IOR 1.45) refracting a striped cylinder behind it, a glossy clear-coated checker floor, a brick
back wall and matte textured boxes at several depths. Everything is procedural (Blender shader nodes:
Checker, Noise, Voronoi, Brick, Magic, Wave); no external assets.

* `images/view_000.png` ... : {n} views, {w} x {h}, 8-bit sRGB PNG ("Standard" view transform).
  Jittered {cols} x {rows} forward-facing grid, row-major (top row first, left to right).
* `poses_bounds.npy`: LLFF layout, float64 [{n}, 17]: 3x5 matrix per view (camera-to-world rotation
  columns down, right, backward, then the camera centre; 5th column height, width, focal in pixels),
  then near and far depth bounds.
* `transforms.json`: NeRF / instant-ngp layout (`camera_angle_x`, `fl_x`, `fl_y`, `cx`, `cy`, `w`, `h`,
  `frames[].transform_matrix` = camera-to-world with OpenGL/Blender camera axes: x right, y up, z back).
  NeX extension: every frame also has `near` and `far` (the same bounds as in `poses_bounds.npy`).
* `scene_info.json`: generator version, Blender version, render settings, seeds, objects, lights.

World frame: Blender's (z up); the cameras look roughly along +y. Pinhole camera, square pixels,
principal point at the image centre (cx = W/2, cy = H/2 with pixel centres at +0.5), no distortion.

Depth bounds come from the true geometry: rays are cast (`scene.ray_cast`) through a {bx} x {by} grid of
pixel centres of each camera; near = {nm} x the smallest z-depth, far = {fm} x the largest.

Rendered with Cycles on the CPU ({samples} samples, fixed seed {seed}, OpenImageDenoise, {threads} fixed
threads). Re-render (from the repository root):

    .venv/bin/python tools/render_demo_scene.py --out data/scenes/shiny_demo

One view only (reproducibility check): `tools/render_demo_scene.py --only-view 0 --out /tmp/view0`.

Determinism: the seeds, sample count and thread count are fixed and the PNGs carry no metadata. The
path-traced pixels are bit-exact from run to run; OpenImageDenoise is not quite (a handful of pixels
change by 1/255 between processes on the same machine), and other CPUs / Blender builds may differ a
little more. `tests/test_demo_scene.py` therefore compares a re-render with a small tolerance.
"""


def write_readme(path: Path, n_views: int, grid: tuple[int, int], samples: int) -> None:
    path.write_text(README_TEXT.format(n=n_views, w=WIDTH, h=HEIGHT, cols=grid[0], rows=grid[1],
                                       bx=BOUNDS_GRID[0], by=BOUNDS_GRID[1], nm=NEAR_MARGIN, fm=FAR_MARGIN,
                                       samples=samples, seed=RENDER_SEED, threads=THREADS))


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------

def build_scene(samples: int) -> tuple[bpy.types.Scene, bpy.types.Object, list[SceneObject], dict, dict]:
    """Everything but the camera poses: geometry, materials, lights, render settings and the camera."""
    scene = reset_scene()
    objects = build_geometry(build_materials())
    lights = build_lights_and_world(scene)
    render = configure_render(scene, samples)
    cam = add_camera(scene)
    return scene, cam, objects, lights, render


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output scene directory")
    p.add_argument("--grid", type=int, nargs=2, default=list(GRID), metavar=("COLS", "ROWS"),
                   help="camera grid size (default %(default)s)")
    p.add_argument("--views", type=int, nargs="+", default=None, metavar="I",
                   help="render only these view indices (metadata is still written for all views)")
    p.add_argument("--only-view", type=int, default=None, metavar="I",
                   help="render view I alone into OUT/view_00I.png; writes no poses or metadata")
    p.add_argument("--samples", type=int, default=SAMPLES, help="Cycles samples per pixel")
    p.add_argument("--verbose", action="store_true", help="show Cycles' own progress output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    grid = (args.grid[0], args.grid[1])
    poses_cv = camera_grid(*grid)
    n = len(poses_cv)
    out: Path = args.out.resolve()
    t0 = time.perf_counter()
    scene, cam, objects, lights, render = build_scene(args.samples)
    print(f"[demo] scene built in {time.perf_counter() - t0:.1f}s: {len(objects)} objects, {n} cameras")

    if args.only_view is not None:
        i = args.only_view
        if not 0 <= i < n:
            raise SystemExit(f"--only-view {i}: there are {n} views")
        place_camera(cam, poses_cv[i])
        t = time.perf_counter()
        render_view(scene, out / f"view_{i:03d}.png", quiet=not args.verbose)
        print(f"[demo] view {i} -> {out / f'view_{i:03d}.png'} in {time.perf_counter() - t:.1f}s")
        return

    to_render = set(range(n)) if args.views is None else set(args.views)
    c2ws_gl, c2ws_cv, bounds = [], [], []
    t_render = 0.0
    for i, pose in enumerate(poses_cv):
        m_gl = place_camera(cam, pose)
        m_cv = opengl_to_opencv(m_gl)  # the pose as Blender renders it
        near, far, _ = depth_bounds(scene, m_cv)
        c2ws_gl.append(m_gl)
        c2ws_cv.append(m_cv)
        bounds.append((near, far))
        if i in to_render:
            t = time.perf_counter()
            render_view(scene, out / "images" / f"view_{i:03d}.png", quiet=not args.verbose)
            t_render += time.perf_counter() - t
            print(f"[demo] view {i + 1}/{n} rendered in {time.perf_counter() - t:.1f}s "
                  f"(near {near:.3f}, far {far:.3f})", flush=True)

    write_poses_bounds(out / "poses_bounds.npy", c2ws_cv, bounds)
    write_transforms(out / "transforms.json", c2ws_gl, bounds)
    write_scene_info(out / "scene_info.json", objects, lights, render, grid, n)
    write_readme(out / "README.md", n, grid, args.samples)
    print(f"[demo] wrote {out} in {time.perf_counter() - t0:.1f}s total ({t_render:.1f}s rendering)")


if __name__ == "__main__":
    main()
