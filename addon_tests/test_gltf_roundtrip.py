"""The .glb of ``nex export --gltf`` through Blender's own glTF importer (``io_scene_gltf2``): one textured
plane per MPI plane at its depth, the reference camera, and a Cycles render from it that matches nex_core's
numpy renderer of the baked MPI (``nex_core.io.baked.reference_render``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from addon_helpers import psnr, render_to_array
from support.baked import random_baked

from nex_core.io.baked import MPIInfo, read_baked, write_baked
from nex_core.io.baked.reference_render import render_baked

CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def _pose() -> np.ndarray:
    """A reference camera away from the origin, turned about two axes (OpenCV camera-to-world)."""
    a, b = 0.4, -0.25
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    c2w = np.eye(4)
    c2w[:3, :3] = rz @ rx @ np.diag([1.0, -1.0, -1.0])  # looking down -z of the world, then turned
    c2w[:3, 3] = [0.7, -1.2, 2.5]
    return c2w


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random baked MPI written to disk and exported by the real CLI."""
    tmp = tmp_path_factory.mktemp("gltf")
    info = MPIInfo(width=40, height=30, fx=36.0, fy=36.0, cx=20.0, cy=15.0, offset=3,
                   depths=(1.5, 2.0, 2.8, 4.0, 6.0, 9.0), layers=3, sublayers=2, n_basis=4, basis_kind="learned",
                   lut_width=8, lut_height=8, lut_vx=(-0.7, 0.7), lut_vy=(-0.6, 0.6), ref_c2w=_pose())
    baked = random_baked(info, np.random.default_rng(3))
    baked.alpha *= 0.6  # (every plane shows through)
    write_baked(baked, tmp / "baked")
    glb = tmp / "mpi.glb"
    proc = subprocess.run([sys.executable, "-m", "nex_core.cli", "export", str(tmp / "baked"), "--gltf", str(glb)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return read_baked(tmp / "baked"), glb


def _import(bpy, glb):
    import addon_utils

    if not hasattr(bpy.ops.import_scene, "gltf"):
        addon_utils.enable("io_scene_gltf2", default_set=True)
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
    planes = sorted((o for o in bpy.data.objects if o.name.startswith("NeX_plane_")), key=lambda o: o.name)
    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    return planes, cameras


def test_planes_at_their_depths_and_the_reference_camera(scene, bpy_module, exported):
    bpy = bpy_module
    baked, glb = exported
    info = baked.info
    planes, cameras = _import(bpy, glb)
    assert len(cameras) == 1 and len(planes) == info.n_planes
    cam = cameras[0]
    np.testing.assert_allclose(np.array(cam.matrix_world), info.ref_c2w @ CV_TO_GL, atol=1e-5)
    assert cam.data.type == "PERSP"
    assert cam.data.angle_y == pytest.approx(2 * np.arctan(info.height / (2 * info.fy)), rel=1e-5)
    to_camera = np.linalg.inv(np.array(cam.matrix_world))
    depths = []
    for obj in planes:
        assert obj.type == "MESH" and len(obj.data.polygons) >= 1
        corners = np.array([to_camera @ np.array(obj.matrix_world) @ np.array([*v.co, 1.0]) for v in obj.data.vertices])
        np.testing.assert_allclose(corners[:, 2], corners[0, 2], atol=1e-5)  # parallel to the image plane
        depth = -corners[0, 2]
        depths.append(depth)
        # The quad spans the MPI's texels (offset beyond the image on each side) at that depth.
        width = (corners[:, 0].max() - corners[:, 0].min()) * info.fx / depth
        height = (corners[:, 1].max() - corners[:, 1].min()) * info.fy / depth
        assert (width, height) == pytest.approx((info.mpi_width, info.mpi_height), rel=1e-4)
        images = [n.image for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
        assert len(images) == 1 and tuple(images[0].size) == (info.mpi_width, info.mpi_height)
    assert sorted(depths) == pytest.approx(sorted(info.depths), rel=1e-5)


def _render(bpy, sc, glb, tmp_path, info, view_transform: str, colour_space: str | None) -> np.ndarray:
    planes, cameras = _import(bpy, glb)
    sc.camera = cameras[0]
    sc.render.resolution_x, sc.render.resolution_y = info.width, info.height
    sc.render.resolution_percentage = 100
    sc.cycles.transparent_max_bounces = sc.cycles.min_transparent_bounces = info.n_planes + 2
    sc.view_settings.view_transform = view_transform
    if colour_space is not None:
        for obj in planes:
            for node in obj.active_material.node_tree.nodes:
                if node.type == "TEX_IMAGE":
                    node.image.colorspace_settings.name = colour_space
    return render_to_array(sc, tmp_path / f"{view_transform}.png")


@pytest.mark.parametrize("view_transform, colour_space, linear_light", [
    ("Standard", None, True),  # as imported: sRGB textures, blended in linear light, shown as sRGB
    ("Raw", "Non-Color", False),  # the textures' values blended as they are: NeX's own compositing
])
def test_render_from_the_reference_camera_matches_the_baked_composite(scene, bpy_module, exported, tmp_path,
                                                                      view_transform, colour_space, linear_light,
                                                                      record_property):
    bpy = bpy_module
    baked, glb = exported
    got = _render(bpy, scene, glb, tmp_path, baked.info, view_transform, colour_space)
    want = render_baked(baked, baked.info.ref_camera(), linear_light=linear_light)[..., :3]
    assert want.std() > 0.05 and got.shape == want.shape
    value = psnr(got, want)
    record_property("psnr_db", value)
    print(f"glTF import, {view_transform}: PSNR {value:.2f} dB against the numpy renderer")
    assert value >= 40.0
