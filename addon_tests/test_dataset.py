"""Dataset from the open scene: a camera grid rendered to a scene folder with exact poses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from addon_helpers import psnr, render_to_array

from nex_core.io.scene.loader import load_cameras


def _toy_scene(bpy, sc):
    """A wall, a floor and three coloured boxes, all emissive (no lighting noise), and a camera."""
    def emissive(name, colour):
        mat = bpy.data.materials.new(name)
        if bpy.app.version < (5, 0, 0):
            mat.use_nodes = True
        nodes = mat.node_tree.nodes
        nodes.clear()
        em = nodes.new("ShaderNodeEmission")
        em.inputs["Color"].default_value = (*colour, 1.0)
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Scale"].default_value = 6.0
        tex.inputs["Color1"].default_value = (*colour, 1.0)
        tex.inputs["Color2"].default_value = (*[0.3 * c for c in colour], 1.0)
        mat.node_tree.links.new(tex.outputs["Color"], em.inputs["Color"])
        out = nodes.new("ShaderNodeOutputMaterial")
        mat.node_tree.links.new(em.outputs[0], out.inputs[0])
        return mat

    def add(op, material, **kw):
        op(**kw)
        obj = bpy.context.active_object
        obj.data.materials.append(material)
        return obj

    add(bpy.ops.mesh.primitive_plane_add, emissive("wall", (0.8, 0.8, 0.7)), size=10, location=(0, 6, 1),
        rotation=(math.pi / 2, 0, 0))
    add(bpy.ops.mesh.primitive_plane_add, emissive("floor", (0.4, 0.5, 0.8)), size=12, location=(0, 2, -0.5))
    for x, y, colour in ((-1.0, 3.0, (0.9, 0.2, 0.1)), (0.6, 2.2, (0.1, 0.8, 0.2)), (1.4, 4.0, (0.9, 0.8, 0.1))):
        add(bpy.ops.mesh.primitive_cube_add, emissive(f"box{x}", colour), size=0.8, location=(x, y, 0))
    cam_data = bpy.data.cameras.new("cam")
    cam_data.lens = 30.0
    cam_data.shift_x = 0.03
    cam = bpy.data.objects.new("cam", cam_data)
    sc.collection.objects.link(cam)
    cam.location = (0.0, -2.0, 0.6)
    cam.rotation_euler = (math.radians(85), 0.0, 0.0)
    sc.camera = cam
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = 40, 30, 100
    sc.cycles.samples = 2
    return cam


def test_render_dataset(scene, bpy_module, addon, tmp_path):
    bpy = bpy_module
    cam = _toy_scene(bpy, scene)
    out = tmp_path / "dataset"
    assert bpy.ops.nex.render_dataset(directory=str(out), cols=4, rows=3, jitter=0.2, angle_jitter=1.5,
                                      seed=3) == {"FINISHED"}
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [f"view_{i:03d}.png" for i in range(12)]
    assert np.load(out / "poses_bounds.npy").shape == (12, 17)
    assert (out / "hwf_cxcy.npy").is_file()  # the lens shift moved the principal point off-centre
    assert scene.camera == cam and "NeX dataset camera" not in bpy.data.objects
    assert scene.nex.scene_dir == str(out)

    # Both pose files describe the same cameras, and nex_core reads them.
    llff = load_cameras(out)
    doc = json.loads((out / "transforms.json").read_text())
    (tmp_path / "blender").mkdir()
    (tmp_path / "blender" / "transforms.json").write_text(json.dumps(doc))
    (tmp_path / "blender" / "images").symlink_to(out / "images")
    nerf = load_cameras(tmp_path / "blender")
    assert llff.format == "llff" and nerf.format == "blender"
    for a, b in zip(llff.cameras, nerf.cameras):
        assert np.allclose(a.c2w, b.c2w, atol=1e-9)
        assert np.allclose([a.fx, a.fy, a.cx, a.cy], [b.fx, b.fy, b.cx, b.cy])
    fx, fy, cx, cy = addon._core.module("addon.cameras").intrinsics_from_blender(cam.data, 40, 30)
    assert np.allclose([llff.cameras[0].fx, llff.cameras[0].cx, llff.cameras[0].cy], [fx, cx, cy])
    centres = np.stack([c.center for c in llff.cameras])
    assert np.linalg.norm(centres.mean(0) - np.array(cam.matrix_world.translation)) < 0.1
    assert np.all(llff.near > 0) and np.all(llff.far > llff.near)

    # The poses are exact: a camera imported from the dataset renders its image again.
    assert bpy.ops.nex.import_cameras(directory=str(out), background_images=False) == {"FINISHED"}
    scene.camera = bpy.data.objects["view_005"]
    again = render_to_array(scene, tmp_path / "again.png")
    import imageio.v3 as iio

    original = iio.imread(out / "images" / "view_005.png")[..., :3].astype(np.float64) / 255.0
    assert psnr(np.round(again * 255) / 255, original) >= 45.0


def test_dataset_needs_a_camera(scene, bpy_module, tmp_path):
    with pytest.raises(RuntimeError, match="no active camera"):
        bpy_module.ops.nex.render_dataset(directory=str(tmp_path / "d"))
