"""The reference's total variation of images (k0's regulariser, also the grid field's)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def total_variation_reference(images: Tensor) -> Tensor:
    """Mean over images [L, C, H, W] of (sum |dy| + sum |dx|) / ((H - 1)(W - 1)), by plain autograd."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().sum((1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().sum((1, 2, 3))
    return ((dy + dx) / ((images.shape[2] - 1) * (images.shape[3] - 1))).mean()


def tv_scale(shape: torch.Size | tuple[int, ...]) -> float:
    """The reference's normaliser of summed absolute differences of images [L, C, H, W]: 1 / (L (H-1)(W-1))."""
    L, _, H, W = shape
    return 1.0 / (L * (H - 1) * (W - 1))


class _TotalVariation(torch.autograd.Function):
    """:func:`total_variation_reference` in fewer passes over the images: the differences' L1 norms
    without temporaries, and their signs (the gradient) kept from the forward."""

    @staticmethod
    def forward(ctx, images: Tensor) -> Tensor:
        dy = images[:, :, 1:, :] - images[:, :, :-1, :]
        dx = images[:, :, :, 1:] - images[:, :, :, :-1]
        dims = (1, 2, 3)
        total = torch.linalg.vector_norm(dy, 1, dims) + torch.linalg.vector_norm(dx, 1, dims)
        ctx.save_for_backward(dy.sign_(), dx.sign_())
        ctx.scale = tv_scale(images.shape)
        return total.sum() * ctx.scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        sy, sx = ctx.saved_tensors
        L, C, H1, W = sy.shape
        out = sy.new_zeros(L, C, H1 + 1, W)
        out[:, :, 1:, :] += sy
        out[:, :, :-1, :] -= sy
        out[:, :, :, 1:] += sx
        out[:, :, :, :-1] -= sx
        return out.mul_(grad * ctx.scale)


def total_variation(images: Tensor) -> Tensor:
    """The reference's total variation of images [L, C, H, W] (H, W >= 2); see
    :func:`total_variation_reference` (same value and gradient)."""
    return _TotalVariation.apply(images)
