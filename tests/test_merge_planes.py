"""Merged planes (the Blender import's Merge Planes option): exact from the reference view, the merged
alpha atlases, and what merging costs elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from support.baked import random_baked
from support.models import random_model

from nex_core.export.bake import bake_model
from nex_core.io.addon import planes
from nex_core.io.baked import MPIInfo, read_layout, read_texture, write_baked
from nex_core.io.baked.reference_render import render_baked
from nex_core.io.errors import ConfigError


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10.0 * np.log10(max(np.mean((a - b) ** 2), 1e-20)))


def _info(sublayers: int = 4) -> MPIInfo:
    depths = tuple(1.0 / np.linspace(1.0, 0.2, 2 * sublayers))
    return MPIInfo(width=12, height=9, fx=12.0, fy=12.0, cx=6.0, cy=4.5, offset=2, depths=depths, layers=2,
                   sublayers=sublayers, n_basis=4, basis_kind="learned", lut_width=5, lut_height=4,
                   lut_vx=(-0.5, 0.5), lut_vy=(-0.5, 0.5), ref_c2w=np.eye(4))


def test_groups_stay_within_a_layer_and_bad_counts_are_refused():
    info = _info(4)
    assert planes.merge_groups(info, 2) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert planes.merge_groups(info, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ConfigError, match=r"merge planes 3: .*divides the MPI's 4 planes per layer \(1, 2, 4\)"):
        planes.merge_groups(info, 3)
    merged = planes.merged_info(info, 2)
    assert merged.n_planes == 4 and merged.sublayers == 2 and merged.layers == 2
    assert merged.depths[0] == pytest.approx(2.0 / (1.0 / info.depths[0] + 1.0 / info.depths[1]))
    assert merged.metadata["planes_before_merging"] == 8


@pytest.mark.parametrize("k", [2, 4])
def test_merging_is_exact_from_the_reference_view(k):
    baked = random_baked(_info(4), np.random.default_rng(k))
    merged = planes.merged_baked(baked, k)
    ref = baked.info.ref_camera()
    for linear in (False, True):
        full = render_baked(baked, ref, linear_light=linear)
        assert np.abs(render_baked(merged, ref, linear_light=linear) - full).max() < 1e-5


def test_merged_alpha_atlases_hold_the_merged_planes(tmp_path):
    baked = random_baked(_info(4), np.random.default_rng(0)).quantized()
    layout = read_layout(write_baked(baked, tmp_path / "baked", max_texture=32, compress_level=1))
    atlases = {i: read_texture(layout, i)[..., 0] / 255.0 for i, t in enumerate(layout.textures) if t.kind == "alpha"}
    assert len(atlases) > 1  # the tiles of one group span atlases too
    merged = planes.merge_alpha_atlases(layout, atlases, 2)
    want = planes.merged_baked(baked, 2).alpha
    mlayout = planes.merged_layout(layout, 2)
    assert mlayout.info.n_planes == 4 and len(mlayout.tiles["alpha"]) == 4
    for m, tile in enumerate(mlayout.tiles["alpha"]):
        got = merged[tile.texture][tile.y:tile.y + tile.h, tile.x:tile.x + tile.w]
        assert np.abs(got - want[m]).max() <= 0.5 / 255 + 1e-6
        assert np.allclose(got * 255, np.round(got * 255))  # 8-bit codes
    # Only the atlases the merged planes read come back, and 8-bit codes give the same atlases.
    assert sorted(merged) == planes.merged_alpha_textures(layout, 2) == sorted({t.texture for t in mlayout.tiles["alpha"]})
    codes = {i: np.round(a * 255).astype(np.uint8) for i, a in atlases.items()}
    from_codes = planes.merge_alpha_atlases(layout, codes, 2)
    assert all(np.array_equal(from_codes[i], merged[i]) for i in merged)


def test_merging_costs_more_the_more_planes_are_merged():
    """Off the reference view, parallax inside each merged group is lost; half as many planes cost less
    than one plane per layer (measured on a random-weight model's bake, from nearby cameras)."""
    model, geom, ref, cams = random_model("learned", sublayers=4, seed=8)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=32)
    costs = {}
    for k in (2, 4):
        merged = planes.merged_baked(baked, k)
        costs[k] = np.mean([_psnr(render_baked(merged, c)[..., :3], render_baked(baked, c)[..., :3])
                            for c in cams[:3]])
    assert 20.0 < costs[4] < costs[2] < 80.0, costs
