"""Import MPI's Merge Planes option: fewer planes, their alpha composited, rendered by Cycles as
``nex_core.io.addon.planes.merged_baked`` predicts; exact from the reference view, a stated cost elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from addon_helpers import ADDON_MODULE, psnr, render_to_array

pytest.importorskip("torch", reason="the MPI is baked from a random-weight model (the smoke venvs have no torch)")

from support.models import random_model  # noqa: E402  (needs torch)

from nex_core.export.bake import bake_model  # noqa: E402
from nex_core.io.addon.planes import merged_baked  # noqa: E402
from nex_core.io.baked import read_baked, write_baked  # noqa: E402
from nex_core.io.baked.reference_render import render_baked  # noqa: E402


@pytest.fixture(scope="module")
def baked_dir(tmp_path_factory):
    model, geom, ref, cams = random_model("learned", sublayers=4, seed=11)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=32)
    out = write_baked(baked, tmp_path_factory.mktemp("merge") / "baked", compress_level=1)
    return out, cams


def _import(bpy, path, **options):
    assert bpy.ops.nex.import_mpi(directory=str(path), linear_output=False, **options) == {"FINISHED"}
    return bpy.context.view_layer.objects.active


def _planes(rig):
    return sorted((o for o in rig.children if "nex_mpi_plane" in o.keys()), key=lambda o: o["nex_mpi_plane"])


def test_merged_import_has_fewer_planes_at_the_merged_depths(scene, bpy_module, baked_dir):
    path, _ = baked_dir
    baked = read_baked(path)
    rig = _import(bpy_module, path, merge_planes=2)
    want = merged_baked(baked, 2).info
    planes = _planes(rig)
    assert len(planes) == want.n_planes == baked.info.n_planes // 2 == rig["nex_planes"]
    assert rig["nex_merge_planes"] == 2 and rig["nex_planes_before_merging"] == baked.info.n_planes
    for p, depth in zip(planes, want.depths):
        local = np.array([(p.matrix_local @ v.co)[:] for v in p.data.vertices])
        assert np.allclose(local[:, 2], -depth, atol=1e-5)
    assert len({p.data.materials[0].name for p in planes}) == baked.info.layers


def test_cycles_renders_the_merged_mpi(scene, bpy_module, baked_dir, tmp_path, record_property):
    bpy = bpy_module
    path, cams = baked_dir
    baked = read_baked(path)
    merged = merged_baked(baked, 4)  # one plane per layer
    rig = _import(bpy, path, merge_planes=4)
    assert len(_planes(rig)) == baked.info.layers
    ref = baked.info.ref_camera()
    assert bpy.ops.nex.render_reference(filepath=str(tmp_path / "ref.png")) == {"FINISHED"}
    import imageio.v3 as iio

    img = iio.imread(tmp_path / "ref.png")
    got_ref = img[..., :3].astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)
    assert psnr(got_ref, render_baked(baked, ref)[..., :3]) >= 30.0  # from the reference view: the full MPI
    cam = cams[0]
    data = bpy.data.cameras.new("off")
    obj = bpy.data.objects.new("off", data)
    scene.collection.objects.link(obj)
    addon = __import__(ADDON_MODULE, fromlist=["camera_import"])
    addon.camera_import.apply_camera(obj, cam, scene)
    scene.camera = obj
    got = render_to_array(scene, tmp_path / "off.png")
    assert psnr(got, render_baked(merged, cam)[..., :3]) >= 30.0  # what the merged MPI predicts
    cost = psnr(render_baked(merged, cam)[..., :3], render_baked(baked, cam)[..., :3])
    record_property("merge_psnr_vs_full_db", cost)
    print(f"one plane per layer vs the full stack, off the reference view: {cost:.2f} dB")


def test_a_count_that_does_not_divide_the_layers_is_refused_before_building(scene, bpy_module, baked_dir):
    bpy = bpy_module
    path, _ = baked_dir
    objects, images = len(bpy.data.objects), len(bpy.data.images)
    with pytest.raises(RuntimeError, match="merge planes 3: choose a number that divides"):
        bpy.ops.nex.import_mpi(directory=str(path), merge_planes=3)
    assert len(bpy.data.objects) == objects and len(bpy.data.images) == images
