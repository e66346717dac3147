"""The baked format's 8-bit codes: unsigned data (alpha, k0) as ``v = round(x * 255)``, decoded
``x = v / 255``; signed data (coefficients, basis) as ``v = round((x + 1) / 2 * 255)``, decoded
``x = v / 255 * 2 - 1``."""

from __future__ import annotations

import numpy as np

from .constants import KINDS


def encode_unsigned(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 ``round(x * 255)`` (clipped; float32 arithmetic, in place on one copy)."""
    y = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    y *= 255.0
    return np.rint(y, out=y).astype(np.uint8)


def decode_unsigned(v: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 codes -> [0, 1] values of ``dtype``."""
    return v.astype(dtype) / dtype(255.0)


def encode_signed(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> uint8 ``round((x + 1) / 2 * 255)`` (clipped; float32 arithmetic, in place on one copy)."""
    y = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    y += 1.0
    y *= 127.5
    return np.rint(y, out=y).astype(np.uint8)


def decode_signed(v: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 codes -> [-1, 1] values of ``dtype``."""
    return v.astype(dtype) / dtype(255.0) * dtype(2.0) - dtype(1.0)


def encode_kind(kind: str, x: np.ndarray) -> np.ndarray:
    """Codes of the values of a tile of ``kind`` (signed or unsigned as the kind is)."""
    return encode_signed(x) if KINDS[kind][1] else encode_unsigned(x)


def decode_kind(kind: str, v: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Values of the codes of a tile of ``kind``."""
    return decode_signed(v, dtype) if KINDS[kind][1] else decode_unsigned(v, dtype)
