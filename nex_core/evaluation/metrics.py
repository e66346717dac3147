"""Image-quality metrics as the NeX paper reports them: PSNR, SSIM and LPIPS (VGG).

Importing this module and using :func:`psnr` / :func:`ssim` does not import torch; LPIPS loads torch
(and :mod:`nex_core.evaluation.lpips_vgg`) on first use. Images are float arrays ``[H, W, 3]`` in ``[0, 1]``;
torch tensors of that layout are accepted too.

SSIM and the 2021 NeX reference
-------------------------------
The reference (``utils/mpi_utils.py`` of nex-mpi/nex-code, pinned to scikit-image 0.16.2) calls
``structural_similarity(output, gt, win_size=11, multichannel=True, gaussian_weights=True)`` on
float32 images in ``[0, 1]``. In the skimage versions of 2021 (0.16 to 0.19) a missing
``data_range`` was inferred from the dtype: ``dtype_range[float32] = (-1, 1)``, so
**data_range = 2**, which makes ``C1 = (0.01 * 2)**2`` and ``C2 = (0.03 * 2)**2`` four times too
large and biases SSIM upwards (current skimage refuses float images without ``data_range``). The other
settings were: Gaussian window sigma 1.5 truncated at 3.5 sigma (11 taps, ``mode='reflect'``),
``use_sample_covariance=True`` (the default: covariances scaled by 121/120), per-channel SSIM
averaged over channels, a 5-pixel border cropped before the mean, computed in float64.

:func:`ssim` keeps every one of those settings but passes the correct ``data_range=1.0``.
:func:`ssim_reference_quirk` reproduces the reference figure exactly (``data_range=2.0``) so that
numbers can be compared with papers that used the NeX code. The larger constants pull every SSIM
factor towards 1, so in practice the quirk figure is the higher one: for skimage's ``astronaut``
image at 256x256 with Gaussian noise of sigma 0.05 (clipped), ``ssim`` gives 0.659 and the
reference definition 0.777 (sigma 0.01: 0.962 vs 0.986).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

SSIM_SIGMA = 1.5  # Gaussian window: with skimage's truncate=3.5 this is the 11-tap window
SSIM_WIN_SIZE = 11  # what skimage derives from sigma 1.5; used for the border crop
REFERENCE_QUIRK_DATA_RANGE = 2.0  # skimage <= 0.19's dtype_range[float] = (-1, 1)

_lpips_model: Any = None  # cached LPIPSVGG, built on first use


def __getattr__(name: str) -> Any:
    """Lazy re-exports from :mod:`nex_core.evaluation.lpips_vgg` (they import torch)."""
    if name in ("LPIPSVGG", "lpips_status"):
        from . import lpips_vgg

        return getattr(lpips_vgg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_array(image: Any) -> np.ndarray:
    """A float64 numpy copy of an array or (CPU/GPU, grad or not) torch tensor."""
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor, without importing torch
        image = image.detach().cpu().numpy()
    return np.asarray(image, dtype=np.float64)


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_array(pred), _as_array(target)
    if a.shape != b.shape:
        raise ValueError(f"prediction {a.shape} and target {b.shape} differ in shape")
    return a, b


def _rgb_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(pred, target)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected [H, W, 3] images, got shape {a.shape}")
    return a, b


def psnr(pred: Any, target: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, MSE over all pixels and channels; ``inf`` if identical."""
    a, b = _pair(pred, target)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _ssim(pred: Any, target: Any, data_range: float) -> float:
    a, b = _rgb_pair(pred, target)
    return float(
        structural_similarity(
            a, b, data_range=data_range, channel_axis=-1, gaussian_weights=True, sigma=SSIM_SIGMA
        )
    )


def ssim(pred: Any, target: Any) -> float:
    """SSIM as the NeX reference defines it but with the correct ``data_range=1.0``.

    scikit-image's ``structural_similarity`` with a Gaussian window (sigma 1.5, 11 taps), sample
    covariance (skimage's default, as the reference), mean over RGB channels, computed in float64.
    The reference's figure used ``data_range=2`` (see the module docstring and
    :func:`ssim_reference_quirk`); ours is lower for the same images.
    """
    return _ssim(pred, target, 1.0)


def ssim_reference_quirk(pred: Any, target: Any) -> float:
    """SSIM exactly as the 2021 NeX reference computed it (skimage <= 0.19 inferred data_range=2).

    Only for comparing with published numbers; report :func:`ssim` as our figure.
    """
    return _ssim(pred, target, REFERENCE_QUIRK_DATA_RANGE)


def lpips_status() -> tuple[bool, str]:
    """(available, reason) for LPIPS: see :func:`nex_core.evaluation.lpips_vgg.lpips_status`."""
    from . import lpips_vgg

    return lpips_vgg.lpips_status()


def _get_lpips_model() -> Any:
    """The cached LPIPSVGG with the discovered weights, or None when they are missing."""
    global _lpips_model
    if _lpips_model is None:
        from . import lpips_vgg

        ok, _reason = lpips_vgg.lpips_status()
        if not ok:
            return None
        _lpips_model = lpips_vgg.LPIPSVGG()
    return _lpips_model


def clear_lpips_cache() -> None:
    """Forget the cached LPIPS model (after installing weights, or to free memory)."""
    global _lpips_model
    _lpips_model = None


def _to_batch(image: Any, device: Any) -> Any:
    """An [H, W, 3] image in [0, 1] (array or tensor) -> float32 [1, 3, H, W] tensor in [-1, 1]."""
    import torch

    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {tuple(t.shape)}")
    t = t.detach().to(device=device, dtype=torch.float32)
    return t.permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0


def lpips(pred: Any, target: Any, device: Any = None) -> float | None:
    """LPIPS v0.1 (VGG) between two [H, W, 3] images in [0, 1]; None when its weights are missing.

    When None, report "unavailable: " + ``lpips_status()[1]``. Like the NeX reference, images are
    mapped to [-1, 1] and compared at full resolution. ``device`` defaults to CUDA when available.
    A present but unreadable weight file raises :class:`nex_core.io.errors.NexError`.
    """
    import torch

    model = _get_lpips_model()
    if model is None:
        return None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    with torch.no_grad():
        value = model(_to_batch(pred, device), _to_batch(target, device))
    return float(value[0])


def fit_affine_colour(pred: Any, target: Any) -> np.ndarray:
    """The [4, 3] matrix ``M`` minimising ``|[pred, 1] @ M - target|^2`` over the pixels of two [H, W, 3]
    images (least squares: a 3x3 colour matrix and a bias)."""
    a, b = _rgb_pair(pred, target)
    x = np.concatenate([a.reshape(-1, 3), np.ones((a.shape[0] * a.shape[1], 1))], 1)
    return np.linalg.lstsq(x, b.reshape(-1, 3), rcond=None)[0]


def apply_affine_colour(image: Any, matrix: np.ndarray) -> np.ndarray:
    """``clip([image, 1] @ matrix, 0, 1)`` for an [H, W, 3] image and a [4, 3] matrix."""
    a = _as_array(image)
    return np.clip(a @ matrix[:3] + matrix[3], 0.0, 1.0)


def colour_fitted_psnr(pred: Any, target: Any) -> float:
    """PSNR after a per-image affine colour correction fitted on held-out pixels only.

    The appearance-compensated methods' held-out score: a transform fitted on the image's left half
    (columns ``< W // 2``) corrects the right half and one fitted on the right half corrects the left, so
    no pixel is scored by a fit that saw it; the squared errors of both halves make one PSNR.
    """
    a, b = _rgb_pair(pred, target)
    if a.ndim != 3 or a.shape[1] < 2:
        raise ValueError(f"colour-fitted PSNR needs an image at least 2 pixels wide, got shape {a.shape}")
    half = a.shape[1] // 2
    left, right = (slice(None), slice(None, half)), (slice(None), slice(half, None))
    out = np.empty_like(a)
    out[right] = apply_affine_colour(a[right], fit_affine_colour(a[left], b[left]))
    out[left] = apply_affine_colour(a[left], fit_affine_colour(a[right], b[right]))
    return psnr(out, b)


def evaluate_images(pred: Any, target: Any, with_lpips: bool = True) -> dict[str, float | None]:
    """``{"psnr", "ssim", "lpips", "psnr_colour_fit"}`` for one image pair; lpips is None if skipped or
    unavailable. ``psnr`` is the plain (identity colour) score, ``psnr_colour_fit`` the one of
    :func:`colour_fitted_psnr`."""
    return {
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
        "lpips": lpips(pred, target) if with_lpips else None,
        "psnr_colour_fit": colour_fitted_psnr(pred, target),
    }


def mean_metrics(results: Iterable[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Per-key mean over images; a key with a None for any image averages to None.

    (A mean over only some images would not be comparable, so it is not reported.) PSNR is averaged
    per image in dB, as the reference does; an ``inf`` (identical pair) makes the mean ``inf``.
    An empty input gives an empty dict.
    """
    results = list(results)
    keys: list[str] = []
    for r in results:
        keys += [k for k in r if k not in keys]
    means: dict[str, float | None] = {}
    for k in keys:
        values = [r.get(k) for r in results]
        means[k] = None if any(v is None for v in values) else float(np.mean(values))
    return means
