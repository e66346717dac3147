"""The NeX model: shapes, initial state, fixed bases, gradients, the alpha mask outside the MPI."""

import math

import numpy as np
import pytest
import torch

from nex_core.io.cameras import Camera
from nex_core.io.config import ModelConfig
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.mpi import CameraBatch, pixel_grid, rays_in_reference_frame
from nex_core.model.nex_model import FixedBasis, NexModel, fourier_basis, real_spherical_harmonics


def tiny_model(basis: str = "learned", field: str = "mlp", grid_depth_base: int = 0) -> tuple[NexModel, Camera]:
    cfg = ModelConfig(layers=3, sublayers=2, hidden=16, mlp_layers=1, pos_level=4, depth_level=2,
                      basis=basis, basis_out=8, basis_hidden=8, field=field, grid_levels=3, grid_features=2,
                      grid_base=4, grid_max=12, grid_hidden=16, grid_depth_base=grid_depth_base)
    ref = Camera(12, 8, 10.0, 10.0, 6.0, 4.0, np.eye(4))
    geom = MPIGeometry.from_camera(ref, 2, plane_depths(1.0, 4.0, 6, True))
    torch.manual_seed(0)
    return NexModel(cfg, geom), ref


def reference_rays(ref: Camera, pose: np.ndarray | None = None):
    cam = ref if pose is None else ref.with_pose(pose)
    cams = CameraBatch.from_cameras(ref, [cam])
    uv = pixel_grid(cam.width, cam.height)
    return rays_in_reference_frame(cams, torch.zeros(len(uv), dtype=torch.long), uv)


@pytest.mark.parametrize("basis", ["learned", "sh", "fourier"])
def test_render_shapes_and_range(basis):
    model, ref = tiny_model(basis)
    o, d = reference_rays(ref)
    rgb, acc = model.render_rays(o, d)
    assert rgb.shape == (96, 3) and acc.shape == (96,)
    assert torch.all((rgb >= 0) & (rgb <= 1))
    # Initial alpha is about sigmoid(-5) per plane: nearly transparent, as in the reference.
    assert acc.max() < 1 - (1 - 1 / (1 + math.exp(-3))) ** 6


@pytest.mark.parametrize("field", ["mlp", "grid"])
def test_gradients_reach_every_parameter_group(field):
    model, ref = tiny_model(field=field)
    o, d = reference_rays(ref)
    loss = model(o, d).mean() + model.tv_loss()
    loss.backward()
    for name, params in model.parameter_groups().items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name


@pytest.mark.parametrize("field", ["mlp", "grid"])
def test_alpha_is_zero_where_rays_miss_the_mpi(field):
    model, ref = tiny_model(field=field)
    with torch.no_grad():
        model.output_layer.bias[0] = 20.0  # make every plane opaque where it exists
    # A camera turned far to the side sees past the padded MPI.
    turn = np.eye(4)
    a = math.radians(35)
    turn[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    o, d = reference_rays(ref, turn)
    _, acc = model.render_rays(o, d)
    assert acc.min() < 1e-6 and acc.max() > 0.99


@pytest.mark.parametrize("field,fused,depth_base", [("mlp", True, 0), ("mlp", False, 0), ("grid", False, 0),
                                                    ("grid", False, 2)])
def test_fast_network_path_equals_the_plain_mlp(field, fused, depth_base):
    """alpha_and_coefficients == the plain MLP's alpha column on every plane and coefficient columns on
    each layer's first sublayer (the reference's coefficient sharing); for the MLP both in the CPU's fused
    form and in the autograd form GPUs use; for the grid field also with levels shared across depth."""
    model, ref = tiny_model(field=field, grid_depth_base=depth_base)
    model.fused_mlp = fused
    with torch.no_grad():
        for grid in getattr(getattr(model, "grid_field", None), "grids", []):
            grid.normal_()  # features that vary, so plane and position mix-ups would show
    coords = torch.rand(6, 50, 2) * 2 - 1
    alpha, coeff = model.alpha_and_coefficients(coords)
    plain = model.plane_outputs(coords)
    torch.testing.assert_close(alpha, plain[..., 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(coeff, plain[::2, :, 1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field", ["mlp", "grid"])
def test_coefficients_are_shared_by_sublayers(field):
    """Changing the coefficients the network gives a non-first sublayer must not change the render."""
    model, ref = tiny_model(field=field)
    o, d = reference_rays(ref)
    base = model(o, d)
    original = model.alpha_and_coefficients

    def patched(coords):
        alpha, coeff = original(coords)
        assert coeff.shape[0] == 3  # one row of coefficients per layer, none per extra sublayer
        return alpha, coeff

    model.alpha_and_coefficients = patched
    torch.testing.assert_close(model(o, d), base)


def test_grid_levels_span_base_to_the_mpi_size():
    from nex_core.model.grid_field import grid_resolutions
    cfg = ModelConfig(grid_levels=4, grid_base=16, grid_max=256)
    assert grid_resolutions(cfg, 224, 168) == [(12, 16), (29, 39), (70, 93), (168, 224)]
    assert grid_resolutions(cfg, 2000, 1000)[-1] == (128, 256)


def test_grid_features_are_read_at_the_plane_position():
    """One grid level, features set to a known function of (x, y, plane): what the field reads at a texel
    centre is that value (bilinear sampling at texel centres is exact)."""
    from nex_core.model.grid_field import GridField
    model, _ = tiny_model(field="grid")
    field: GridField = model.grid_field
    grid = field.grids[-1]
    d, f, h, w = grid.shape
    with torch.no_grad():
        grid.copy_(torch.arange(d * f * h * w, dtype=torch.float32).reshape(d, f, h, w))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([(xs + 0.5) / w * 2 - 1, (ys + 0.5) / h * 2 - 1], -1).reshape(1, -1, 2).float()
    plane = torch.tensor([d - 1])
    got = field.features(coords, plane)[0, :, -f:]
    torch.testing.assert_close(got, grid[d - 1].reshape(f, -1).T.detach())


def test_spherical_harmonics_are_orthonormal():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    y = real_spherical_harmonics(torch.tensor(v), 16).numpy()
    gram = 4 * math.pi * (y.T @ y) / len(v)
    np.testing.assert_allclose(gram, np.eye(16), atol=0.03)


def test_fixed_bases_have_n_functions_in_range():
    xy = torch.rand(50, 2) * 1.2 - 0.6
    for n in (1, 5, 8, 12):
        assert fourier_basis(xy, n).shape == (50, n)
        assert FixedBasis("sh", n)(xy).shape == (50, n)
    assert fourier_basis(xy, 8).abs().max() <= 1.0


def test_grid_tv_is_the_reference_total_variation_summed_over_levels():
    """GridField.tv_loss equals the plain-autograd total variation of each level, summed, in value and
    gradient; the MLP field has none."""
    from nex_core.model.total_variation import total_variation_reference
    model, _ = tiny_model(field="grid")
    for grid in model.grid_field.grids:
        with torch.no_grad():
            grid.normal_()
    fast = model.field_tv_loss()
    fast.backward()
    fast_grads = [g.grad.clone() for g in model.grid_field.grids]
    for g in model.grid_field.grids:
        g.grad = None
    slow = sum(total_variation_reference(g) for g in model.grid_field.grids)
    slow.backward()
    assert torch.allclose(fast, slow, rtol=1e-5)
    for g, expected in zip(model.grid_field.grids, fast_grads):
        assert torch.allclose(g.grad, expected, atol=1e-7)
    assert tiny_model(field="mlp")[0].field_tv_loss() is None


def test_grid_depth_counts_run_from_the_base_to_one_slice_per_plane():
    from nex_core.model.grid_field import grid_depth_counts
    assert grid_depth_counts(ModelConfig(grid_levels=4, grid_depth_base=0), 32) == [32, 32, 32, 32]
    assert grid_depth_counts(ModelConfig(grid_levels=4, grid_depth_base=1), 32) == [1, 3, 10, 32]
    assert grid_depth_counts(ModelConfig(grid_levels=4, grid_depth_base=4), 32) == [4, 8, 16, 32]
    assert grid_depth_counts(ModelConfig(grid_levels=2, grid_depth_base=64), 6) == [6, 6]


def test_a_level_shared_across_depth_reads_the_planes_interpolated_slice():
    """Each plane of a shared level reads the texture interpolated linearly between the two slices around
    its place in the stack (built here texel by texel, then sampled as a per-plane grid)."""
    from nex_core.model.mpi import sample_planes
    model, _ = tiny_model(field="grid", grid_depth_base=2)
    field = model.grid_field
    assert [g.shape[0] for g in field.grids] == [2, 3, 6]
    for grid in field.grids:
        with torch.no_grad():
            grid.normal_()
    coords = torch.rand(6, 40, 2) * 2 - 1
    got = field.features(coords)  # [P, R, C]
    expected = []
    for grid in field.grids:
        slices = grid.shape[0]
        per_plane = []
        for p in range(6):
            t = p * (slices - 1) / 5
            i = min(int(math.floor(t)), slices - 1)
            j = min(i + 1, slices - 1)
            per_plane.append((1 - (t - i)) * grid[i] + (t - i) * grid[j])
        expected.append(sample_planes(torch.stack(per_plane), coords))
    torch.testing.assert_close(got, torch.cat(expected, 1).transpose(1, 2), rtol=1e-5, atol=1e-6)
    # A subset of planes reads what the whole stack reads for them.
    index = torch.tensor([4, 1])
    torch.testing.assert_close(field.features(coords[index], index), got[index], rtol=1e-5, atol=1e-6)


def test_grid_depth_tv_is_the_mean_difference_between_neighbouring_slices():
    model, _ = tiny_model(field="grid", grid_depth_base=2)
    for grid in model.grid_field.grids:
        with torch.no_grad():
            grid.normal_()
    expected = 0.0
    for grid in model.grid_field.grids:
        g = grid.detach().numpy()
        expected += float(np.mean([np.abs(g[k + 1] - g[k]).mean() for k in range(len(g) - 1)]))
    assert math.isclose(float(model.field_depth_tv_loss().detach()), expected, rel_tol=1e-5)
    assert tiny_model(field="mlp")[0].field_depth_tv_loss() is None
