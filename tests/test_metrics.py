"""Tests for nex_core.evaluation.metrics (PSNR, SSIM) and nex_core.evaluation.lpips_vgg (LPIPS wiring with random weights)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nex_core.evaluation import metrics

torch = pytest.importorskip("torch")
from nex_core.evaluation import lpips_vgg
from nex_core.io.errors import NexError


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny convolutions: one thread is as fast, and immune to OpenMP oversubscription on busy machines."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _random_image(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


def _structured_image(size: int = 48) -> np.ndarray:
    """Smooth ramps, a checkerboard and a disc: an image with edges and flat areas."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2) * 0.5
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1).astype(np.float64) * 0.3
    img = np.stack([x * 0.8 + disc, y * 0.6 + checker * 0.5, 0.2 + checker * 0.6], axis=-1)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return np.clip(img + noise, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------- PSNR


@pytest.mark.parametrize("make", [lambda: (_random_image(1), _random_image(2)),
                                  lambda: (_noisy(_structured_image(), 0.03), _structured_image())])
def test_psnr_matches_skimage(make) -> None:
    pred, target = make()
    expected = peak_signal_noise_ratio(target.astype(np.float64), pred.astype(np.float64), data_range=1.0)
    assert metrics.psnr(pred, target) == pytest.approx(expected, rel=1e-12)


def test_psnr_known_value_and_identity() -> None:
    target = np.full((8, 8, 3), 0.5)
    assert metrics.psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(target * 255 + 25.5, target * 255, data_range=255.0) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(target, target) == math.inf


def test_psnr_accepts_tensors_and_rejects_shape_mismatch() -> None:
    pred, target = _random_image(3), _random_image(4)
    as_tensor = metrics.psnr(torch.from_numpy(pred).requires_grad_(True), torch.from_numpy(target))
    assert as_tensor == pytest.approx(metrics.psnr(pred, target), rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(pred, target[:-1])


# ----------------------------------------------------------------------------------------------- SSIM


def test_ssim_equals_skimage_with_documented_arguments() -> None:
    target = _structured_image()
    pred = _noisy(target, 0.05)
    expected = structural_similarity(pred.astype(np.float64), target.astype(np.float64), data_range=1.0,
                                     channel_axis=-1, gaussian_weights=True, sigma=1.5)
    with_win = structural_similarity(pred.astype(np.float64), target.astype(np.float64), data_range=1.0,
                                     channel_axis=-1, gaussian_weights=True, sigma=1.5, win_size=11)
    assert expected == with_win  # sigma 1.5 already implies the 11-tap window
    assert metrics.ssim(pred, target) == pytest.approx(expected, rel=1e-12)


def test_ssim_identity_and_noise() -> None:
    target = _structured_image()
    assert metrics.ssim(target, target) == pytest.approx(1.0, abs=1e-12)
    values = [metrics.ssim(_noisy(target, s), target) for s in (0.01, 0.05, 0.2)]
    assert 1.0 > values[0] > values[1] > values[2]


def _ssim_skimage_016(x: np.ndarray, y: np.ndarray) -> float:
    """The scikit-image 0.16 algorithm for the reference's call, written out with scipy.

    float32 inputs -> data_range inferred from dtype_range (-1, 1) = 2; Gaussian sigma 1.5 truncated
    at 3.5 (scipy's default mode 'reflect'); sample covariance (121/120); 5-pixel crop; mean of channels.
    """
    data_range, np_win, pad = 2.0, 11 * 11, 5
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    per_channel = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
        f = lambda im: gaussian_filter(im, sigma=1.5, truncate=3.5)  # noqa: E731
        ua, ub = f(a), f(b)
        cov = np_win / (np_win - 1)
        va, vb, vab = cov * (f(a * a) - ua * ua), cov * (f(b * b) - ub * ub), cov * (f(a * b) - ua * ub)
        s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
        per_channel.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(per_channel))


def test_ssim_reference_quirk_reproduces_2021_definition() -> None:
    target = _structured_image()
    pred = _noisy(target, 0.05)
    assert metrics.ssim_reference_quirk(pred, target) == pytest.approx(_ssim_skimage_016(pred, target), rel=1e-10)
    assert metrics.ssim_reference_quirk(pred, target) > metrics.ssim(pred, target)


def test_ssim_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="H, W, 3"):
        metrics.ssim(np.zeros((32, 32)), np.zeros((32, 32)))


# --------------------------------------------------------------------------------------------- LPIPS

# torchvision vgg16().features: module index -> conv weight shape (out, in, kh, kw); bias is (out,).
TORCHVISION_VGG16_CONV_SHAPES = {
    0: (64, 3, 3, 3), 2: (64, 64, 3, 3),
    5: (128, 64, 3, 3), 7: (128, 128, 3, 3),
    10: (256, 128, 3, 3), 12: (256, 256, 3, 3), 14: (256, 256, 3, 3),
    17: (512, 256, 3, 3), 19: (512, 512, 3, 3), 21: (512, 512, 3, 3),
    24: (512, 512, 3, 3), 26: (512, 512, 3, 3), 28: (512, 512, 3, 3),
}


def _torchvision_style_vgg_state(seed: int) -> dict[str, torch.Tensor]:
    """A random full-model vgg16 state dict with torchvision's key names (classifier included)."""
    torch.manual_seed(seed)
    trunk = lpips_vgg.VGG16Trunk()
    for m in trunk.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.normal_(m.bias, 0.0, 0.01)
    state = dict(trunk.state_dict())
    state["classifier.0.weight"] = torch.zeros(4, 8)  # ignored by the loader
    return state


def _lin_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
            for k, c in enumerate(lpips_vgg.TAP_CHANNELS)}


@pytest.fixture(scope="module")
def net() -> lpips_vgg.LPIPSVGG:
    return lpips_vgg.LPIPSVGG(backbone_state=_torchvision_style_vgg_state(0), lin_state=_lin_state(1))


def _batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0)


def test_vgg_state_dict_keys_and_shapes_match_torchvision() -> None:
    state = lpips_vgg.VGG16Trunk().state_dict()
    expected = {}
    for idx, shape in TORCHVISION_VGG16_CONV_SHAPES.items():
        expected[f"features.{idx}.weight"] = shape
        expected[f"features.{idx}.bias"] = shape[:1]
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    features = lpips_vgg.make_vgg16_features()
    assert len(features) == 31
    assert all(isinstance(features[i], torch.nn.ReLU) for i in lpips_vgg.TAP_INDICES)  # taps: ReLU outputs


def test_backbone_and_lin_weights_load(net: lpips_vgg.LPIPSVGG) -> None:
    state = _torchvision_style_vgg_state(0)
    assert torch.equal(net.net.features[28].weight, state["features.28.weight"])
    assert torch.equal(net.net.features[0].bias, state["features.0.bias"])
    lins = _lin_state(1)
    own = net.state_dict()
    for key, value in lins.items():  # lpips' own key names appear verbatim in our state dict
        assert torch.equal(own[key], value)
    features_only = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    other = lpips_vgg.LPIPSVGG(backbone_state=features_only, lin_state=lins)
    assert torch.equal(other.net.features[10].weight, state["features.10.weight"])


def test_bad_state_dicts_raise_nex_error() -> None:
    state = _torchvision_style_vgg_state(0)
    del state["features.2.bias"]
    with pytest.raises(NexError, match="vgg16"):
        lpips_vgg.LPIPSVGG(backbone_state=state, random_init=True)
    lins = _lin_state(0)
    lins["lin3.model.1.weight"] = torch.rand(1, 256, 1, 1)
    with pytest.raises(NexError, match="lin3"):
        lpips_vgg.LPIPSVGG(lin_state=lins, random_init=True)


def test_lpips_identity_symmetry_positivity(net: lpips_vgg.LPIPSVGG) -> None:
    a, b = _batch(_structured_image()), _batch(_noisy(_structured_image(), 0.1))
    with torch.no_grad():
        assert float(net(a, a, normalize=True)) == pytest.approx(0.0, abs=1e-6)
        d_ab, d_ba = float(net(a, b, normalize=True)), float(net(b, a, normalize=True))
    assert d_ab > 1e-4
    assert d_ab == pytest.approx(d_ba, rel=1e-5)


def test_lpips_monotone_in_noise(net: lpips_vgg.LPIPSVGG) -> None:
    clean = _structured_image()
    with torch.no_grad():
        d = [float(net(_batch(_noisy(clean, s, seed=7)), _batch(clean), normalize=True))
             for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(x < y for x, y in zip(d, d[1:])), d


def test_lpips_batch_matches_single(net: lpips_vgg.LPIPSVGG) -> None:
    x = torch.cat([_batch(_random_image(s, 32)) for s in (10, 11, 12)]) * 2 - 1
    y = torch.cat([_batch(_random_image(s, 32)) for s in (20, 21, 22)]) * 2 - 1
    with torch.no_grad():
        batched = net(x, y)
        single = torch.stack([net(x[i:i + 1], y[i:i + 1])[0] for i in range(3)])
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_lpips_gradients_reach_the_input(net: lpips_vgg.LPIPSVGG) -> None:
    pred = (_batch(_noisy(_structured_image(), 0.1)) * 2 - 1).requires_grad_(True)
    target = _batch(_structured_image()) * 2 - 1
    net(pred, target).sum().backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())  # the network itself stays frozen


def test_random_init_model_and_input_checks() -> None:
    torch.manual_seed(3)
    assert metrics.LPIPSVGG is lpips_vgg.LPIPSVGG  # lazy re-export
    model = metrics.LPIPSVGG(random_init=True)
    assert all((lin.model[1].weight >= 0).all() for lin in model.lins)
    with pytest.raises(ValueError, match="16x16"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 16))


# ------------------------------------------------------------------------------ LPIPS weight discovery


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No env overrides, an empty torch hub dir, and no lpips package."""
    monkeypatch.delenv(lpips_vgg.ENV_VGG_WEIGHTS, raising=False)
    monkeypatch.delenv(lpips_vgg.ENV_LIN_WEIGHTS, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(lpips_vgg, "lpips_package_dir", lambda: None)
    metrics.clear_lpips_cache()
    yield tmp_path
    metrics.clear_lpips_cache()


def test_status_names_missing_files(no_weights: Path) -> None:
    ok, reason = metrics.lpips_status()
    assert not ok
    cache_file = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    assert str(no_weights) in str(cache_file)
    assert str(cache_file) in reason
    assert "pip install 'nex-blender[metrics]'" in reason


def test_status_names_env_paths(no_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vgg, lin = no_weights / "missing_vgg.pth", no_weights / "missing_lin.pth"
    monkeypatch.setenv(lpips_vgg.ENV_VGG_WEIGHTS, str(vgg))
    monkeypatch.setenv(lpips_vgg.ENV_LIN_WEIGHTS, str(lin))
    ok, reason = lpips_vgg.lpips_status()
    assert not ok and str(vgg) in reason and str(lin) in reason


def test_lpips_is_none_when_unavailable(no_weights: Path) -> None:
    img = _structured_image()
    assert metrics.lpips(img, img) is None
    with pytest.raises(NexError, match="nex-blender\\[metrics\\]"):
        lpips_vgg.LPIPSVGG(backbone_state=_torchvision_style_vgg_state(0))
    result = metrics.evaluate_images(img, _noisy(img, 0.05))
    assert result["lpips"] is None and result["psnr"] > 20 and 0 < result["ssim"] < 1


def test_lpips_loads_weight_files(no_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in the torch hub cache and an lpips-like package dir are found and loaded."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(_torchvision_style_vgg_state(0), checkpoints / "vgg16-397923af.pth")
    pkg = no_weights / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    torch.save(_lin_state(1), pkg / "weights" / "v0.1" / "vgg.pth")
    monkeypatch.setattr(lpips_vgg, "lpips_package_dir", lambda: pkg)
    assert lpips_vgg.lpips_status()[0]
    img, other = _structured_image(), _noisy(_structured_image(), 0.1)
    value = metrics.lpips(other, img, device="cpu")
    assert value is not None and value > 0
    reference = lpips_vgg.LPIPSVGG(_torchvision_style_vgg_state(0), _lin_state(1))
    with torch.no_grad():
        expected = float(reference(_batch(other), _batch(img), normalize=True))
    assert value == pytest.approx(expected, rel=1e-5)
    assert metrics.lpips(img, img, device="cpu") == pytest.approx(0.0, abs=1e-6)


def test_corrupt_weight_file_raises(no_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = no_weights / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    monkeypatch.setenv(lpips_vgg.ENV_VGG_WEIGHTS, str(bad))
    with pytest.raises(NexError, match="bad.pth"):
        lpips_vgg.LPIPSVGG(lin_state=_lin_state(0))


# ------------------------------------------------------------------------------ aggregation, imports


def test_mean_metrics_handles_none() -> None:
    rows = [{"psnr": 20.0, "ssim": 0.5, "lpips": 0.1}, {"psnr": 30.0, "ssim": 0.7, "lpips": None}]
    assert metrics.mean_metrics(rows) == {"psnr": 25.0, "ssim": pytest.approx(0.6), "lpips": None}
    assert metrics.mean_metrics([rows[0], rows[0]])["lpips"] == pytest.approx(0.1)
    assert metrics.mean_metrics([]) == {}


def test_psnr_ssim_do_not_import_torch() -> None:
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from nex_core.evaluation import metrics
        a = np.random.default_rng(0).random((32, 32, 3))
        metrics.psnr(a, a * 0.9); metrics.ssim(a, a * 0.9)
        metrics.evaluate_images(a, a * 0.9, with_lpips=False)
        assert "torch" not in sys.modules, "torch was imported"
    """)
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
