"""Baking: the baked format (round trip, atlases, refusals), the torch-free renderer against the model
and against the explicit-MPI renderer, the LUT range, atomic writes, `nex bake`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from support.images import psnr
from support.models import random_model
from support.poses import random_pose

from nex_core.export.bake import bake_model, view_direction_range
from nex_core.io import config as config_mod
from nex_core.io.baked import (MANIFEST, MAX_TEXELS, BakedMPI, BakedWriter, MPIInfo, plan_atlases, read_baked,
                               read_layout, write_baked)
from nex_core.io.baked.reference_render import render_baked
from nex_core.io.cameras import Camera
from nex_core.io.errors import FormatError, NexError
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.mpi import render_explicit_mpi
from nex_core.model.nex_model import NexModel
from nex_core.runtime.render import render_image

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "scenes" / "shiny_demo"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: on the shared 2-core machine two OpenMP threads were 5-60x slower than one
    (threads waiting on each other whenever the other cores are busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def baked_random() -> tuple[BakedMPI, NexModel, Camera, list[Camera]]:
    model, geom, ref, cams = random_model()
    return bake_model(model, geom, ref, cams + [ref], lut_size=64, metadata={"note": "test"}), model, ref, cams


# --------------------------------------------------------------------------------------------------
# Format


def test_round_trip_is_exact_after_one_quantisation(baked_random, tmp_path):
    baked = baked_random[0]
    out = write_baked(baked, tmp_path / "baked", max_texture=120)
    back = read_baked(out)
    q = baked.quantized()
    for name in ("alpha", "k0", "coeffs", "basis_lut"):
        assert getattr(back, name).dtype == np.float32
        np.testing.assert_array_equal(getattr(back, name), getattr(q, name), err_msg=name)
        assert np.abs(getattr(back, name) - getattr(baked, name)).max() <= 1 / 255 + 1e-6
    a, b = baked.info, back.info
    for field in ("width", "height", "fx", "fy", "cx", "cy", "offset", "depths", "layers", "sublayers",
                  "n_basis", "basis_kind", "lut_width", "lut_height", "lut_vx", "lut_vy", "metadata"):
        assert getattr(a, field) == getattr(b, field), field
    np.testing.assert_array_equal(a.ref_c2w, b.ref_c2w)
    raw = json.loads((out / MANIFEST).read_text())
    assert raw["format"] == "nex-baked-mpi" and raw["version"] == 2
    assert raw["mpi"]["coefficient_lookup"] == "layer_first_plane"
    np.testing.assert_allclose(raw["reference_camera"]["c2w_blender"], a.ref_c2w @ np.diag([1, -1, -1, 1]))
    # No temporary directories left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baked"]


@pytest.mark.parametrize("max_texture", [120, 300, 4096])
def test_atlases_respect_max_texture(baked_random, tmp_path, max_texture):
    baked = baked_random[0]
    layout = read_layout(write_baked(baked, tmp_path / "b", max_texture=max_texture, compress_level=1))
    assert all(t.width <= max_texture and t.height <= max_texture for t in layout.textures)
    assert len(layout.tiles["alpha"]) == baked.info.n_planes and len(layout.tiles["coeff"]) == 3 * 8
    for kind, tiles in layout.tiles.items():
        rects = {(t.texture, t.x, t.y) for t in tiles}
        assert len(rects) == len(tiles), f"{kind} tiles overlap"
    if max_texture == 120:
        assert sum(t.kind == "coeff" for t in layout.textures) > 1


def test_plan_atlases_packs_without_overlap():
    plans = plan_atlases(192, 1408, 1156, 4096)
    assert sum(len(c) for _, _, c in plans) == 192
    for w, h, corners in plans:
        assert w <= 4096 and h <= 4096
        assert all(x >= 1 and y >= 1 and x + 1408 + 1 <= w and y + 1156 + 1 <= h for x, y in corners)
    with pytest.raises(NexError, match="does not fit"):
        plan_atlases(4, 5000, 100, 4096)


def _corrupt(out: Path, edit) -> None:
    path = out / MANIFEST
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def _set_texture_file(raw, name):
    raw["textures"][0]["file"] = name


def _tile_outside(raw):
    raw["tiles"]["alpha"][0]["x"] = raw["textures"][0]["width"] - 5


def _huge(raw):
    raw["textures"][0]["width"] = raw["textures"][0]["height"] = 60000


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(version=3), r"version 3 is not supported.*bake the run again"),
    (lambda r: r["mpi"].update(compositing="log"), r"mpi.compositing 'log' is not one of srgb, linear"),
    (lambda r: r["mpi"].pop("compositing"), r"missing field mpi.compositing"),
    (lambda r: r.update(format="something-else"), r"not a NeX baked MPI"),
    (lambda r: _set_texture_file(r, "../outside.png"), r"escapes the baked directory"),
    (lambda r: _set_texture_file(r, "/etc/passwd"), r"absolute"),
    (lambda r: _set_texture_file(r, "C:/x.png"), r"absolute"),
    (_tile_outside, r"outside its atlas"),
    (lambda r: r["mpi"].update(planes=7), r"mpi.planes = 7 but layers x sublayers = 6"),
    (lambda r: r["mpi"].update(sublayers=3), r"6 plane depths for layers x sublayers = 3 x 3 = 9"),
    (lambda r: r["tiles"]["alpha"].pop(), r"tiles.alpha lists 5 tiles, the MPI needs 6"),
    (_huge, r"more than .* texels"),
    (lambda r: r["reference_camera"].update(width=10 ** 9), r"width = 1000000000 is out of range"),
    (lambda r: r["mpi"].pop("depths"), r"missing field mpi.depths"),
    (lambda r: r["reference_camera"]["c2w_opencv"][0].__setitem__(0, 2.0), r"pose is unusable"),
])
def test_reader_refuses_bad_manifests(baked_random, tmp_path, edit, match):
    out = write_baked(baked_random[0], tmp_path / "b", max_texture=4096, compress_level=1)
    _corrupt(out, edit)
    with pytest.raises(FormatError, match=match) as exc:
        read_baked(out)
    assert str(out / MANIFEST) in str(exc.value)


def test_reader_refuses_symlink_out_and_wrong_png(baked_random, tmp_path):
    out = write_baked(baked_random[0], tmp_path / "b", max_texture=4096, compress_level=1)
    outside = tmp_path / "elsewhere.png"
    (out / "alpha_00.png").rename(outside)
    (out / "alpha_00.png").symlink_to(outside)
    with pytest.raises(FormatError, match="resolves outside"):
        read_layout(out)
    (out / "alpha_00.png").unlink()
    with pytest.raises(FormatError, match="texture alpha_00.png is missing"):
        read_layout(out)
    shutil.copy(out / "k0_00.png", out / "alpha_00.png")  # an RGB PNG of another size where L is expected
    with pytest.raises(FormatError, match=r"alpha_00.png: expected a \d+x\d+ PNG"):
        read_baked(out)


def test_writes_are_atomic(baked_random, tmp_path):
    baked = baked_random[0]
    out = tmp_path / "baked"
    with pytest.raises(RuntimeError):
        with BakedWriter(out, baked.info, 4096) as writer:
            writer.add_alpha(0, baked.alpha[0])
            raise RuntimeError("crash in the middle")
    assert list(tmp_path.iterdir()) == []  # neither the output nor a partial directory
    write_baked(baked, out)
    before = read_baked(out)
    with pytest.raises(RuntimeError):
        with BakedWriter(out, baked.info, 4096) as writer:
            raise RuntimeError("second bake fails")
    np.testing.assert_array_equal(read_baked(out).alpha, before.alpha)  # the old bake is intact
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    with pytest.raises(NexError, match="not a baked MPI"):
        write_baked(baked, tmp_path / "precious")


def test_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "import nex_core.io.baked, nex_core.io.baked.reference_render, nex_core.io.mpi_geometry\n"
            "assert 'PIL' not in sys.modules, 'Pillow is imported only to read or write pixels'\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# --------------------------------------------------------------------------------------------------
# Renderer


def test_baked_renderer_equals_explicit_mpi_without_view_dependence():
    rng = np.random.default_rng(3)
    ref = Camera(16, 12, 15.0, 14.0, 8.3, 5.7, random_pose(rng, 20, 1.0))
    layers, sub, offset = 3, 2, 3
    depths = plane_depths(1.5, 6.0, layers * sub, invz=True)
    info = MPIInfo(16, 12, 15.0, 14.0, 8.3, 5.7, offset, depths, layers, sub, 4, "learned", 8, 8,
                   (-0.5, 0.5), (-0.5, 0.5), ref.c2w)
    h, w = info.mpi_height, info.mpi_width
    baked = BakedMPI(info, rng.uniform(0, 1, (6, h, w)).astype(np.float32),
                     rng.uniform(0, 1, (layers, h, w, 3)).astype(np.float32),
                     np.zeros((layers, h, w, 3, 4), np.float32), rng.uniform(-1, 1, (4, 8, 8)).astype(np.float32))
    rgba = np.concatenate([np.repeat(baked.k0, sub, 0).transpose(0, 3, 1, 2), baked.alpha[:, None]], 1)
    geom = MPIGeometry.from_camera(ref, offset, depths)
    for k in range(3):
        target = Camera(13, 11, 12.0, 12.5, 6.1, 5.4, ref.c2w @ random_pose(rng, 8, 0.4))
        expected = render_explicit_mpi(torch.tensor(rgba, dtype=torch.float64), geom, ref, target).numpy()
        for view_dependent in (True, False):
            got = render_baked(baked, target, view_dependent=view_dependent, chunk=50)
            assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize("basis, field", [("learned", "mlp"), ("sh", "mlp"), ("fourier", "mlp"),
                                          ("learned", "grid")])
def test_baked_render_matches_random_model(basis, field):
    model, geom, ref, cams = random_model(basis, seed=1, field=field)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=128)
    quantised = baked.quantized()
    for cam in [ref] + cams[:2]:
        expected = render_image(model, ref, cam)
        assert psnr(render_baked(baked, cam)[..., :3], expected) >= 38.0
        assert psnr(render_baked(quantised, cam)[..., :3], expected) >= 35.0
    # From the reference view every plane shares the MPI pixel: only 8-bit rounding remains.
    assert psnr(render_baked(baked, ref)[..., :3], render_image(model, ref, ref)) >= 60.0


def test_coefficients_are_read_at_the_layers_first_plane():
    """Reading each plane's own position instead (the same MPI with one plane per layer) is visibly worse."""
    model, geom, ref, cams = random_model(sublayers=4, seed=2)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=64)
    info, s = baked.info, 4
    per_plane = replace(baked, info=replace(info, layers=info.n_planes, sublayers=1),
                        k0=np.repeat(baked.k0, s, 0), coeffs=np.repeat(baked.coeffs, s, 0))
    for cam in cams[:2]:
        expected = render_image(model, ref, cam)
        right = psnr(render_baked(baked, cam)[..., :3], expected)
        wrong = psnr(render_baked(per_plane, cam)[..., :3], expected)
        assert right >= 35.0 and right > wrong + 3.0, (right, wrong)


def test_lut_range_covers_the_training_views():
    model, geom, ref, cams = random_model()
    (x0, x1), (y0, y1) = view_direction_range(ref, cams)
    for cam in cams:
        r = (cam.w2c @ ref.c2w)[:3, :3]
        for u, v in ((0, 0), (cam.width, 0), (0, cam.height), (cam.width, cam.height)):
            d = np.array([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, 1.0]) @ r
            d /= np.linalg.norm(d)
            assert x0 < d[0] < x1 and y0 < d[1] < y1
    wide = [Camera(c.width, c.height, c.fx / 2, c.fy / 2, c.cx, c.cy, c.c2w) for c in cams]
    (wx0, wx1), _ = view_direction_range(ref, wide)
    assert wx0 < x0 - 0.1 and wx1 > x1 + 0.1  # from the cameras, not a fixed range


# --------------------------------------------------------------------------------------------------
# A trained run, through `nex bake`


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from nex_core.training.trainer import Trainer

    cfg = config_mod.preset("tiny")
    cfg.data.scene = str(DEMO)
    cfg.train.steps = 60
    cfg.train.checkpoint_every = 1000
    run_dir = tmp_path_factory.mktemp("bake") / "run"
    Trainer(cfg, run_dir).train()
    return run_dir


def test_nex_bake_on_a_trained_run_matches_the_model(trained_run, capsys):
    from nex_core.cli import main
    from nex_core.runtime.run import open_run

    assert main(["bake", str(trained_run), "--lut-size", "128"]) == 0
    summary = capsys.readouterr().err
    assert "8 planes (4 layers x 2 sublayers)" in summary and "total:" in summary
    baked = read_baked(trained_run / "baked")
    run = open_run(trained_run)
    assert baked.info.metadata["step"] == 60 and baked.info.invz == run.scene.planes.invz
    for i in run.scene.test_ids[:2]:
        cam = run.scene.cameras[i]
        expected = render_image(run.model, run.ref_camera, cam)
        got = render_baked(baked, cam)
        assert psnr(got[..., :3], expected) >= 35.0
        # The view dependence is really there: k0 alone is far off.
        assert psnr(render_baked(baked, cam, view_dependent=False)[..., :3], expected) < 30.0
    assert main(["bake", str(trained_run), "--out", str(trained_run / "baked")]) == 0  # replaces in place
    assert sorted(os.listdir(trained_run / "baked"))[-1] == MANIFEST


def test_huge_info_is_refused_before_allocating():
    info = MPIInfo(60000, 60000, 1.0, 1.0, 0.0, 0.0, 0, tuple(range(1, 17)), 16, 1, 8, "learned", 8, 8,
                   (-1.0, 1.0), (-1.0, 1.0), np.eye(4))
    assert info.total_values() > 2 * MAX_TEXELS
    with pytest.raises(FormatError, match="more than this reader allows"):
        info.check()


def test_linear_light_compositing_reference():
    """render_baked(linear_light=True): each plane's colour decoded from sRGB, composited, re-encoded.
    Equal to the plain render where one plane is opaque; different where half-transparent planes mix."""
    from nex_core.io.baked.reference_render import linear_to_srgb, srgb_to_linear

    c = np.linspace(0, 1, 101)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(c)), c, atol=1e-7)
    model, geom, ref, cams = random_model(seed=3)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=32)
    opaque = replace(baked, alpha=np.where(np.arange(baked.alpha.shape[0])[:, None, None] == 0, 1.0,
                                           baked.alpha).astype(np.float32))
    np.testing.assert_allclose(render_baked(opaque, ref, linear_light=True)[8:-8, 8:-8],
                               render_baked(opaque, ref)[8:-8, 8:-8], atol=2e-6)
    # By hand at one pixel of the reference view (where every plane shares the MPI texel), k0 only.
    info, (r, c) = baked.info, (11, 17)
    trans, want = 1.0, np.zeros(3)
    for j in range(info.n_planes):
        a = baked.alpha[j, r + info.offset, c + info.offset]
        want += trans * a * srgb_to_linear(baked.k0[j // info.sublayers, r + info.offset, c + info.offset])
        trans *= 1.0 - a
    got = render_baked(baked, ref, view_dependent=False, linear_light=True)[r, c, :3]
    np.testing.assert_allclose(got, linear_to_srgb(want), atol=1e-5)
    plain = render_baked(baked, ref)
    assert psnr(render_baked(baked, ref, linear_light=True)[..., :3], plain[..., :3]) < 40.0
