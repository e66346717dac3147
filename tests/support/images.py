"""Image comparisons for the tests."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images with values in [0, 1] (float64; identical images give 200 dB, not inf)."""
    return float(-10.0 * np.log10(max(np.mean((a.astype(np.float64) - b) ** 2), 1e-20)))
