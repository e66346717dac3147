"""The benchmark's baseline (nex_core.training.reference_trainer) is the same algorithm as nex_core: same initial
weights for the same seed, the same render for the same weights, the same loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.poses import random_pose

from nex_core.io.cameras import Camera
from nex_core.io.config import ModelConfig
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.mpi import CameraBatch, depths_tensor, plane_homographies, rays_in_reference_frame
from nex_core.model.nex_model import NexModel
from nex_core.training.reference_trainer import (BaselineNex, Cameras, baseline_loss, homographies, load_into_nex,
                                                 state_from_nex)
from nex_core.training.trainer import gradient_loss


def setup(sublayers: int = 3, seed: int = 0):
    """Random-weight models (planes half opaque, coefficients that matter) and random cameras."""
    cfg = ModelConfig(layers=3, sublayers=sublayers, hidden=32, mlp_layers=2, pos_level=5, depth_level=3,
                      basis_out=8, basis_hidden=16, compositing="srgb")  # the reference composites sRGB values
    ref = Camera(40, 30, 40.0, 42.0, 20.5, 14.5, random_pose(np.random.default_rng(seed + 100), 10, 0.5))
    geom = MPIGeometry.from_camera(ref, 6, plane_depths(1.0, 4.0, 3 * sublayers, True))
    torch.manual_seed(seed)
    nex = NexModel(cfg, geom)
    with torch.no_grad():
        nex.coeff_mlp[-1].bias[0] = 4.0  # alpha about sigmoid(-1): every plane contributes
        nex.coeff_mlp[-1].weight[1:] *= 3.0  # larger coefficients: view dependence is visible
    base = BaselineNex(cfg, geom)
    base.load_state_dict(state_from_nex(nex.state_dict()))
    rng = np.random.default_rng(seed)
    cams = [ref.with_pose(ref.c2w @ random_pose(rng, 8, 0.4)) for _ in range(4)]
    cams = [Camera(c.width, c.height, c.fx * s, c.fy * s, c.cx + 1, c.cy - 1, c.c2w)
            for c, s in zip(cams, (1.0, 0.9, 1.1, 1.2))]
    return nex, base, ref, cams


def random_pixels(cams: list[Camera], n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(cams), (n,), generator=g)
    uv = torch.rand(n, 2, generator=g) * torch.tensor([cams[0].width * 1.3, cams[0].height * 1.3]) - 5.0
    return idx, uv


def test_same_seed_same_initial_weights():
    cfg = ModelConfig(layers=2, sublayers=2, hidden=16, mlp_layers=1, pos_level=4, depth_level=2)
    ref = Camera(12, 8, 10.0, 10.0, 6.0, 4.0, np.eye(4))
    geom = MPIGeometry.from_camera(ref, 2, plane_depths(1.0, 4.0, 4, True))
    torch.manual_seed(3)
    nex = NexModel(cfg, geom)
    torch.manual_seed(3)
    base = BaselineNex(cfg, geom)
    mapped = state_from_nex(nex.state_dict())
    assert mapped.keys() == base.state_dict().keys()
    for name, value in base.state_dict().items():
        assert torch.equal(value, mapped[name]), name


def test_homographies_match_nex_core():
    _, base, ref, cams = setup()
    ours = homographies(base.geom, Cameras.from_cameras(ref, cams), depths_tensor(base.geom))
    for c, cam in enumerate(cams):
        expected = plane_homographies(base.geom, ref, cam)
        got = ours[c].double().numpy()
        np.testing.assert_allclose(got / got[:, 2:, 2:], expected / expected[:, 2:, 2:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sublayers", [1, 3])
def test_same_render_for_the_same_weights(sublayers):
    nex, base, ref, cams = setup(sublayers)
    idx, uv = random_pixels(cams, 3000)
    o, d = rays_in_reference_frame(CameraBatch.from_cameras(ref, cams), idx, uv)
    with torch.no_grad():
        expected, acc = nex.render_rays(o, d)
        got = base(Cameras.from_cameras(ref, cams), idx, uv)
    assert 0.2 < float(acc.mean()) and float(expected.std()) > 0.05  # a non-trivial render
    assert float((acc < 0.5).float().mean()) > 0.01  # some rays leave the MPI through its border
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)  # fp32 rounding: ~1e-5


def test_same_loss_and_gradients():
    nex, base, ref, cams = setup()
    idx, uv = random_pixels(cams, 300, seed=1)
    target = torch.rand(300, 3, generator=torch.Generator().manual_seed(2))
    o, d = rays_in_reference_frame(CameraBatch.from_cameras(ref, cams), idx, uv)
    pred = nex(o, d)
    ours = ((pred - target) ** 2).mean() + 0.03 * nex.tv_loss() + 0.05 * gradient_loss(pred, target)
    ours.backward()
    theirs, _ = baseline_loss(base, base(Cameras.from_cameras(ref, cams), idx, uv), target, 0.03, 0.05)
    theirs.backward()
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=1e-5)
    grads = state_from_nex({n: p.grad for n, p in nex.named_parameters()})
    for name, p in base.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], atol=1e-5, rtol=1e-3)


def test_weights_copy_back():
    nex, base, _, _ = setup()
    other = NexModel(nex.cfg, nex.geom)
    load_into_nex(other, base)
    for name, value in nex.state_dict().items():
        assert torch.equal(value, other.state_dict()[name]), name
