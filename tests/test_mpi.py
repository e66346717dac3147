"""The fast MPI renderer against the slow reference renderer, homographies, and gradients."""

import numpy as np
import pytest
import torch

from nex_core.io.cameras import Camera
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.mpi import (CameraBatch, composite_over, depths_tensor, plane_homographies,
                                plane_intersections, rays_in_reference_frame, render_explicit_mpi,
                                sample_planes)
from nex_core.model.reference_render import render_reference
from support.poses import random_pose


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_renderer_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ref_pose = random_pose(rng, 20, 1.0)
    ref = Camera(16, 12, 14.0 + seed, 13.0, 8.3, 5.7, ref_pose)
    offset = 3
    depths = plane_depths(1.5, 6.0, 5, invz=bool(seed % 2))
    geom = MPIGeometry.from_camera(ref, offset, depths)
    rgba = rng.uniform(0, 1, (5, 4, geom.mpi_height, geom.mpi_width))
    rgba[:, 3] *= rng.uniform(0, 1, (5, 1, 1))  # varied opacity per plane
    target = Camera(13, 11, 12.0, 12.5, 6.1, 5.4, ref_pose @ random_pose(rng))
    expected = render_reference(rgba, list(depths), offset, ref, target)
    got = render_explicit_mpi(torch.tensor(rgba), geom, ref, target).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_fast_renderer_float32_close_to_reference():
    rng = np.random.default_rng(7)
    ref = Camera(16, 12, 15.0, 15.0, 8.0, 6.0, np.eye(4))
    depths = plane_depths(2.0, 8.0, 4, invz=True)
    geom = MPIGeometry.from_camera(ref, 2, depths)
    rgba = rng.uniform(0, 1, (4, 4, geom.mpi_height, geom.mpi_width))
    target = ref.with_pose(random_pose(rng, 5, 0.3))
    expected = render_reference(rgba, list(depths), 2, ref, target)
    got = render_explicit_mpi(torch.tensor(rgba, dtype=torch.float32), geom, ref, target).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_reference_view_reproduces_front_plane():
    """From the reference camera, an opaque first plane shows its own texture at the pixel centres."""
    ref = Camera(8, 6, 8.0, 8.0, 4.0, 3.0, np.eye(4))
    geom = MPIGeometry.from_camera(ref, 2, np.array([1.0, 2.0]))
    rgba = torch.rand(2, 4, geom.mpi_height, geom.mpi_width, dtype=torch.float64)
    rgba[0, 3] = 1.0
    img = render_explicit_mpi(rgba, geom, ref, ref)
    torch.testing.assert_close(img[..., :3].permute(2, 0, 1), rgba[0, :3, 2:-2, 2:-2])


def test_homographies_agree_with_ray_intersections():
    rng = np.random.default_rng(3)
    ref = Camera(20, 15, 18.0, 17.0, 10.2, 7.1, random_pose(rng, 30, 2.0))
    target = Camera(24, 18, 22.0, 21.0, 12.5, 9.5, ref.c2w @ random_pose(rng))
    geom = MPIGeometry.from_camera(ref, 4, plane_depths(1.0, 5.0, 6, True))
    hs = plane_homographies(geom, ref, target)
    uv = torch.tensor(rng.uniform(0, 20, (50, 2)))
    cams = CameraBatch.from_cameras(ref, [target], dtype=torch.float64)
    o, d = rays_in_reference_frame(cams, torch.zeros(50, dtype=torch.long), uv)
    coords, _ = plane_intersections(geom, o, d, depths_tensor(geom, dtype=torch.float64))
    mpi_px = (coords.numpy() + 1) / 2 * np.array([geom.mpi_width, geom.mpi_height]) - geom.offset
    homog = np.concatenate([uv.numpy(), np.ones((50, 1))], 1)
    for i, h in enumerate(hs):
        p = homog @ h.T
        np.testing.assert_allclose(p[:, :2] / p[:, 2:], mpi_px[i], atol=1e-9)


def test_composite_gradcheck():
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 5, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(2, 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, a: composite_over(c, a)[0], (rgb, alpha))
    assert torch.autograd.gradcheck(lambda c, a: composite_over(c, a)[1], (rgb, alpha))


def test_warp_and_composite_gradcheck_on_tiny_mpi():
    """Gradients of a whole render w.r.t. a 2-plane 4x4 MPI's RGBA (float64)."""
    ref = Camera(2, 2, 2.0, 2.0, 1.0, 1.0, np.eye(4))
    geom = MPIGeometry.from_camera(ref, 1, np.array([1.0, 3.0]))
    target = ref.with_pose(np.array([[1, 0, 0, 0.1], [0, 1, 0, -0.05], [0, 0, 1, 0.02], [0, 0, 0, 1.0]]))
    torch.manual_seed(1)
    rgba = torch.rand(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: render_explicit_mpi(t, geom, ref, target), (rgba,))


def test_sample_planes_reads_texel_centres():
    tex = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4)
    cols = (torch.arange(4, dtype=torch.float64) + 0.5) / 4 * 2 - 1
    coords = torch.stack([cols, torch.full_like(cols, (1.5 / 3) * 2 - 1)], -1)[None]
    assert sample_planes(tex, coords)[0, 0].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_plane_depths_spacing():
    d = plane_depths(1.0, 4.0, 4, invz=True)
    np.testing.assert_allclose(np.diff(1 / d), np.full(3, (0.25 - 1) / 3))
    np.testing.assert_allclose(plane_depths(1.0, 4.0, 4, invz=False), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="dmin"):
        plane_depths(3.0, 2.0, 4, invz=True)
