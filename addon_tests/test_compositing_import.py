"""Import MPI with the default colour mode (Scene-Linear Colour, Standard view) for both compositing spaces
of the baked format: an MPI trained in linear light renders exactly as nex_core renders it, one trained in
sRGB values gets the advice; the Exact Pixels option sets the render settings it needs."""

from __future__ import annotations

import numpy as np
import pytest
from addon_helpers import addon_compat, exact_render_settings, psnr, render_to_array

from nex_core.io.baked import BakedMPI, MPIInfo, read_baked, write_baked
from nex_core.io.baked.reference_render import render_baked
from nex_core.io.cameras import Camera, look_at_opencv


def _baked(tmp_path, compositing: str) -> tuple:
    """A random baked MPI (3 layers x 2 sublayers; planes so transparent that the stack is about 70 % opaque)
    trained in ``compositing``."""
    rng = np.random.default_rng(11)
    c2w = np.eye(4)
    c2w[:3, 3] = (0.3, -0.2, 1.0)
    info = MPIInfo(width=32, height=24, fx=30.0, fy=31.0, cx=15.2, cy=12.6, offset=6,
                   depths=(1.5, 1.9, 2.5, 3.2, 4.5, 7.0), layers=3, sublayers=2, n_basis=8, basis_kind="learned",
                   lut_width=16, lut_height=12, lut_vx=(-0.6, 0.55), lut_vy=(-0.5, 0.45), ref_c2w=c2w,
                   compositing=compositing)
    h, w = info.mpi_height, info.mpi_width
    baked = BakedMPI(info, rng.uniform(0.05, 0.3, (6, h, w)).astype(np.float32),
                     rng.uniform(0.1, 0.9, (3, h, w, 3)).astype(np.float32),
                     rng.uniform(-0.06, 0.06, (3, h, w, 3, 8)).astype(np.float32),
                     rng.uniform(-1, 1, (8, 12, 16)).astype(np.float32))
    out = write_baked(baked, tmp_path / f"baked-{compositing}", max_texture=100)
    return out, read_baked(out)


def _camera(bpy, scene, addon, info) -> Camera:
    ref = info.ref_camera()
    centre = ref.center + np.array([0.1, -0.06, 0.08])
    cam = Camera(40, 30, 36.0, 36.0, 20.5, 14.8, look_at_opencv(centre, ref.center + 4.0 * ref.c2w[:3, 2],
                                                                 -ref.c2w[:3, 1]), "off")
    obj = bpy.data.objects.new("off", bpy.data.cameras.new("off"))
    scene.collection.objects.link(obj)
    addon.camera_import.apply_camera(obj, cam, scene)
    scene.camera = obj
    return cam


@pytest.mark.smoke
@pytest.mark.parametrize("engine", ["CYCLES", "EEVEE"])
def test_linear_light_mpi_renders_exactly_with_the_default_import(scene, bpy_module, addon, tmp_path, engine,
                                                                   record_property):
    bpy = bpy_module
    baked_dir, baked = _baked(tmp_path, "linear")
    exact_render_settings(scene, display_referred=False)  # Standard view: the default colour mode's
    assert bpy.ops.nex.import_mpi(directory=str(baked_dir)) == {"FINISHED"}  # every option at its default
    rig = bpy.context.view_layer.objects.active
    assert rig["nex_compositing"] == "linear"
    cam = _camera(bpy, scene, addon, baked.info)
    if engine == "EEVEE":
        scene.render.engine = addon_compat().eevee_engine(scene)
        scene.eevee.taa_render_samples = 1
        scene.render.filter_size = 0.0
    try:
        got = render_to_array(scene, tmp_path / f"{engine}.png")
    except RuntimeError as exc:
        pytest.skip(f"{engine} cannot render here: {exc}")
    want = render_baked(baked, cam)[..., :3]  # in the MPI's own (linear-light) compositing
    value = psnr(got, want)
    record_property("psnr_db", value)
    assert value >= 40.0, value
    # The same planes composited in sRGB values are visibly another picture.
    assert psnr(render_baked(baked, cam, linear_light=False)[..., :3], want) < value - 5


@pytest.mark.smoke
def test_import_advice_follows_the_compositing_space(scene, bpy_module, addon, tmp_path):
    bpy = bpy_module
    mpi_import = addon.mpi_import
    srgb_dir, _ = _baked(tmp_path, "srgb")
    linear_dir, _ = _baked(tmp_path, "linear")
    ctx = bpy.context
    result = mpi_import.import_mpi(ctx, mpi_import.MPIImportOptions(srgb_dir))
    assert not result.exact_compositing
    assert any("--compositing linear" in w for w in result.warnings), result.warnings
    result = mpi_import.import_mpi(ctx, mpi_import.MPIImportOptions(linear_dir))
    assert result.exact_compositing and not any("compositing" in w.lower() for w in result.warnings)
    result = mpi_import.import_mpi(ctx, mpi_import.MPIImportOptions(linear_dir, linear_output=False))
    assert not result.exact_compositing
    assert any("Scene-Linear Colour is off" in w for w in result.warnings), result.warnings
    result = mpi_import.import_mpi(ctx, mpi_import.MPIImportOptions(srgb_dir, linear_output=False))
    assert result.exact_compositing


@pytest.mark.smoke
def test_exact_pixels_sets_the_filters_and_keeps_higher_bounces(scene, bpy_module, addon, tmp_path):
    bpy = bpy_module
    baked_dir, baked = _baked(tmp_path, "linear")
    scene.cycles.filter_width = 1.5
    scene.render.filter_size = 1.5
    scene.cycles.transparent_max_bounces = 200
    scene.cycles.use_denoising = True
    result = addon.mpi_import.import_mpi(bpy.context, addon.mpi_import.MPIImportOptions(baked_dir, exact_pixels=True))
    assert scene.cycles.filter_width == pytest.approx(0.01)
    assert scene.render.filter_size == 0.0
    assert scene.cycles.transparent_max_bounces == 200  # the user's higher value stays
    assert scene.cycles.min_transparent_bounces >= baked.info.n_planes
    changed = {path for path, _, _ in result.render_settings}
    assert not scene.cycles.use_denoising
    assert {"cycles.filter_width", "render.filter_size", "cycles.use_denoising"} <= changed
    # Without the option nothing of the user's anti-aliasing changes.
    scene.cycles.filter_width = 1.5
    addon.mpi_import.import_mpi(bpy.context, addon.mpi_import.MPIImportOptions(baked_dir))
    assert scene.cycles.filter_width == pytest.approx(1.5)
