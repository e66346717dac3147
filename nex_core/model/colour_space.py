"""The sRGB transfer function in torch, safe to differentiate.

The numpy twins (``nex_core.io.baked.reference_render.srgb_to_linear`` / ``linear_to_srgb``) are what the
baked MPI's renderers follow; these are the same curves for training
(``mpi.composite_in`` composites in either space with them).
"""

from __future__ import annotations

import torch
from torch import Tensor


_LINEAR_KNEE = 0.0031308  # linear value where the sRGB curve's linear segment ends
_SRGB_KNEE = 0.04045  # the same point, encoded


def srgb_to_linear(c: Tensor) -> Tensor:
    """Encoded sRGB [0, 1] -> linear light."""
    # Both branches of torch.where are differentiated: keep the power's base away from its pole at 0.
    curve = ((torch.clamp(c, min=_SRGB_KNEE) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= _SRGB_KNEE, c / 12.92, curve)


def linear_to_srgb(c: Tensor) -> Tensor:
    """Linear light, clipped to [0, 1] -> encoded sRGB."""
    c = torch.clamp(c, 0.0, 1.0)
    curve = 1.055 * torch.clamp(c, min=_LINEAR_KNEE) ** (1 / 2.4) - 0.055
    return torch.where(c <= _LINEAR_KNEE, c * 12.92, curve)
