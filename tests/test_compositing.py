"""Compositing in linear light (model.compositing = "linear") end to end: the torch curves and compositor,
the model, the baked format (version 2 records the space; version 1 still reads as "srgb"), the config of
older runs, and the numpy reference renderer following the bake's space."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from support.images import psnr
from support.models import random_model

from nex_core.export.bake import bake_model
from nex_core.io import config as config_mod
from nex_core.io.baked import MANIFEST, read_baked, write_baked
from nex_core.io.baked import reference_render as numpy_render
from nex_core.io.errors import ConfigError
from nex_core.model import colour_space
from nex_core.model.mpi import composite_in
from nex_core.runtime.render import render_image


def test_torch_curves_equal_the_numpy_twins_and_have_finite_gradients():
    c = torch.linspace(0, 1, 1001, dtype=torch.float64, requires_grad=True)
    lin = colour_space.srgb_to_linear(c)
    np.testing.assert_allclose(lin.detach().numpy(), numpy_render.srgb_to_linear(c.detach().numpy()), atol=1e-12)
    enc = colour_space.linear_to_srgb(c)
    np.testing.assert_allclose(enc.detach().numpy(), numpy_render.linear_to_srgb(c.detach().numpy()), atol=1e-12)
    (lin.sum() + enc.sum()).backward()
    assert torch.isfinite(c.grad).all()  # 0 included: the power's pole is never differentiated
    x = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: colour_space.linear_to_srgb(colour_space.srgb_to_linear(t)), (x,))


def test_composite_in_linear_light_by_hand():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 1, (5, 3, 7))
    alpha = rng.uniform(0, 1, (5, 1, 7))
    want, trans = np.zeros((3, 7)), np.ones((1, 7))
    for j in range(5):  # front to back, in linear light
        want += trans * alpha[j] * numpy_render.srgb_to_linear(rgb[j])
        trans *= 1 - alpha[j]
    got, acc = composite_in("linear", torch.tensor(rgb), torch.tensor(alpha))
    np.testing.assert_allclose(got.numpy(), numpy_render.linear_to_srgb(want), atol=1e-10)
    np.testing.assert_allclose(acc.numpy(), 1 - trans, atol=1e-12)
    plain, _ = composite_in("srgb", torch.tensor(rgb), torch.tensor(alpha))
    assert np.abs(plain.numpy() - got.numpy()).max() > 0.02  # the two spaces really differ here
    with pytest.raises(ValueError, match="unknown compositing space"):
        composite_in("log", torch.tensor(rgb), torch.tensor(alpha))


@pytest.mark.parametrize("compositing", ["srgb", "linear"])
def test_numpy_render_of_the_bake_matches_the_model_in_both_spaces(compositing, tmp_path):
    model, geom, ref, cams = random_model(seed=1, compositing=compositing)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=128)
    assert baked.info.compositing == compositing
    written = read_baked(write_baked(baked, tmp_path / "baked"))
    assert written.info.compositing == compositing
    other = "srgb" if compositing == "linear" else "linear"
    for cam in [ref] + cams[:3]:
        expected = render_image(model, ref, cam)
        got = numpy_render.render_baked(baked, cam)[..., :3]  # the bake's own space by default
        assert psnr(got, expected) >= 40.0, psnr(got, expected)
        # Compositing the same MPI in the other space is visibly different: the space matters.
        wrong = numpy_render.render_baked(baked, cam, linear_light=(other == "linear"))[..., :3]
        assert psnr(wrong, expected) < psnr(got, expected) - 5.0


def test_version_1_bakes_read_as_srgb_compositing(tmp_path):
    model, geom, ref, cams = random_model(seed=2)
    out = write_baked(bake_model(model, geom, ref, cams + [ref], lut_size=32), tmp_path / "baked")
    raw = json.loads((out / MANIFEST).read_text())
    assert raw["version"] == 2 and raw["mpi"]["compositing"] == "srgb"
    raw["version"] = 1
    del raw["mpi"]["compositing"]
    (out / MANIFEST).write_text(json.dumps(raw))
    old = read_baked(out)
    assert old.info.compositing == "srgb"
    cam = cams[0]
    np.testing.assert_array_equal(numpy_render.render_baked(old, cam),
                                  numpy_render.render_baked(old, cam, linear_light=False))


def test_linear_model_trains_the_space_it_renders():
    """One gradient step through the linear compositor: finite gradients for every parameter group."""
    model, geom, ref, cams = random_model(seed=4, compositing="linear")
    rgb = render_image(model, ref, cams[0])
    assert np.isfinite(rgb).all()
    o = torch.zeros(64, 3)
    d = torch.nn.functional.normalize(torch.randn(64, 3) * 0.05 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    loss = model(o, d).square().mean()
    loss.backward()
    for name, params in model.parameter_groups().items():
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name


def test_configs_from_before_the_setting_keep_srgb_compositing():
    cfg = config_mod.preset("tiny")
    raw = config_mod.to_dict(cfg)
    raw["model"]["compositing"] = "linear"
    assert config_mod.from_dict(raw).model.compositing == "linear"
    del raw["model"]["compositing"]  # a config.toml written before the setting existed
    assert config_mod.from_dict(raw).model.compositing == "srgb"
    raw["model"]["compositing"] = "log"
    with pytest.raises(ConfigError, match="model.compositing"):
        config_mod.from_dict(raw)


def test_info_rejects_an_unknown_space():
    model, geom, ref, cams = random_model(seed=5)
    info = bake_model(model, geom, ref, [ref], lut_size=8).info
    from nex_core.io.errors import FormatError

    with pytest.raises(FormatError, match="compositing 'log'"):
        replace(info, compositing="log").check()
