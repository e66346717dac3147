"""The once-per-plane renderer against the per-view network render and a slow all-planes reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.models import random_model

from nex_core.export.bake import bake_model
from nex_core.model.mpi import (CameraBatch, composite_in, pixel_grid, plane_intersections,
                                rays_in_reference_frame)
from nex_core.runtime import plane_render
from nex_core.runtime.plane_render import (RenderStopped, evaluated_texels, render_views, view_groups,
                                          view_state_bytes)
from nex_core.runtime.render import render_image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10.0 * np.log10(max(np.mean((a - b) ** 2), 1e-20)))


def textures_reference(model, ref, cam) -> np.ndarray:
    """Every plane's textures from the bake, sampled where each pixel's ray meets every plane (edge texels
    repeated outside), the basis from the model per pixel, composited over all planes at once."""
    baked = bake_model(model, model.geom, ref, [cam, ref])
    cfg = model.cfg
    L, S, N = cfg.layers, cfg.sublayers, cfg.basis_out
    cams = CameraBatch.from_cameras(ref, [cam])
    uv = pixel_grid(cam.width, cam.height)
    o, d = rays_in_reference_frame(cams, torch.zeros(uv.shape[0], dtype=torch.long), uv)
    coords, valid = plane_intersections(model.geom, o, d, model.depths)  # [D, R, 2]

    def sample(tex: np.ndarray, xy: torch.Tensor, padding: str) -> torch.Tensor:  # tex [P, C, h, w]
        return F.grid_sample(torch.from_numpy(tex), xy[:, :, None, :], mode="bilinear", padding_mode=padding,
                             align_corners=False)[..., 0]  # [P, C, R]

    alpha = sample(baked.alpha[:, None], coords, "border")[:, 0] * valid  # [D, R]
    coeff = sample(baked.coeffs.reshape(L, *baked.coeffs.shape[1:3], 3 * N).transpose(0, 3, 1, 2),
                   coords[::S], "border")  # [L, 3N, R], at each layer's first plane
    basis = model.basis_values(F.normalize(d, dim=-1)).detach()  # [R, N]
    specular = (coeff.reshape(L, 3, N, -1) * basis.T[None, None]).sum(2)  # [L, 3, R]
    k0 = sample(baked.k0.transpose(0, 3, 1, 2), coords.reshape(L, S * coords.shape[1], 2), "zeros")
    k0 = k0.reshape(L, 3, S, -1).permute(0, 2, 1, 3).reshape(L * S, 3, -1)  # [D, 3, R]
    colour = torch.clamp(k0 + specular.repeat_interleave(S, 0), 0.0, 1.0)
    rgb, _ = composite_in(cfg.compositing, colour, alpha[:, None])
    return rgb.T.reshape(cam.height, cam.width, 3).numpy()


@pytest.mark.parametrize("basis, field, sublayers, compositing", [
    ("learned", "mlp", 2, "srgb"), ("sh", "mlp", 3, "srgb"), ("learned", "grid", 2, "srgb"),
    ("learned", "mlp", 2, "linear")])
def test_reference_view_equals_the_per_view_network_render(basis, field, sublayers, compositing):
    """From the reference camera every ray meets every plane at a texel centre: nothing is interpolated
    (in either compositing space)."""
    model, _, ref, _ = random_model(basis, sublayers=sublayers, seed=3, field=field, compositing=compositing)
    got = next(render_views(model, ref, [ref]))
    want = render_image(model, ref, ref)
    assert got.shape == want.shape == (ref.height, ref.width, 3)
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("compositing", ["srgb", "linear"])
def test_other_views_equal_the_all_planes_texture_reference(compositing):
    model, _, ref, cams = random_model("learned", sublayers=3, seed=4, compositing=compositing)
    views = cams[:3] + [cams[3].resized(25)]  # another size and intrinsics too
    for cam, got in zip(views, render_views(model, ref, views)):
        want = textures_reference(model, ref, cam)
        assert np.abs(got - want).max() < 1e-4


def test_other_views_are_close_to_the_network_render():
    """Off the reference view, alpha and coefficients are interpolated between texel centres (as in the
    baked MPI): close to the network's own values, not equal."""
    model, _, ref, cams = random_model("learned", seed=5)
    for cam, got in zip(cams[:3], render_views(model, ref, cams[:3])):
        assert psnr(got, render_image(model, ref, cam)) >= 38.0


def test_passes_within_a_small_budget_give_the_same_images():
    model, _, ref, cams = random_model("sh", seed=6)
    one_view = view_state_bytes(model, cams[0])
    assert [len(g) for g in view_groups(model, cams[:4], 2.5 * one_view)] == [2, 2]
    seen = []
    split = list(render_views(model, ref, cams[:4], budget_bytes=2.5 * one_view,
                              progress=lambda k, n: seen.append((k, n))))
    whole = list(render_views(model, ref, cams[:4]))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for a, b in zip(split, whole):
        assert np.abs(a - b).max() < 1e-6


def test_the_model_mode_is_restored():
    model, _, ref, cams = random_model("sh", seed=7)
    model.train()
    list(render_views(model, ref, cams[:1]))
    assert model.training


def test_a_stop_request_ends_the_render_within_a_plane_and_restores_the_mode():
    model, _, ref, cams = random_model("sh", seed=8)
    model.train()
    polls = []

    def stop_on_third_poll() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(RenderStopped, match="plane 3 of"):
        list(render_views(model, ref, cams[:2], should_stop=stop_on_third_poll))
    assert len(polls) == 3 and model.training
    never = list(render_views(model, ref, cams[:2], should_stop=lambda: False))
    for a, b in zip(never, render_views(model, ref, cams[:2])):
        assert np.array_equal(a, b)


def test_the_evaluated_point_count_matches_what_a_render_evaluates(monkeypatch):
    """evaluated_texels (which the training loop uses to estimate an evaluation's time before the first one)
    against the texels a real render hands to F_theta: near views, and a wide view that holds the whole MPI
    on some planes."""
    from nex_core.io.cameras import Camera

    model, geom, ref, cams = random_model("learned", sublayers=3, seed=9)
    wide = Camera(ref.width, ref.height, ref.fx * 0.3, ref.fy * 0.3, ref.cx, ref.cy, cams[1].c2w)
    seen = []
    real_box = plane_render._evaluate_box

    def counting(model_, plane, grid, box, *rest):
        seen.append((box[1] - box[0]) * (box[3] - box[2]))
        return real_box(model_, plane, grid, box, *rest)

    monkeypatch.setattr(plane_render, "_evaluate_box", counting)
    for views in (cams[:3], [ref], [cams[0], wide]):
        seen.clear()
        list(render_views(model, ref, views))
        estimate = evaluated_texels(geom, model.cfg.sublayers, ref, views)
        assert estimate == pytest.approx(sum(seen), rel=0.03)
