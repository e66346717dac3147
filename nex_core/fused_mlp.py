"""F_theta's MLP with a hand-written backward, for CPUs.

Under plain autograd, most of a CPU training step goes to passes over the [planes x rays, hidden]
activations that are not matrix products (with AMX or AVX-512 bf16 the products themselves are fast): the
bias add and the leaky ReLU after each product, the bias gradient's reduction (done in fp32 over 64 k rows
for the ``fast`` preset), the scatter and sum of the two heads' gradients. Here:

- each hidden layer's product, bias and leaky ReLU are one oneDNN call (``mkldnn._linear_pointwise``)
  where torch has it;
- bias gradients are matrix products with a row of ones (they run on the matrix units);
- only each layer's output is kept for the backward: with a positive slope, the leaky ReLU's gradient
  follows from its output's sign;
- the coefficient head runs on each layer's first sublayer only, and its gradient is added there in place.

The arithmetic is that of :meth:`NexModel.plane_outputs` (tests compare both, values and gradients, and
gradcheck this in float64); products run in autocast's dtype when it is on, as they would under autograd.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


def compute_dtype(device_type: str, fallback: torch.dtype) -> torch.dtype:
    """The dtype products run in here: autocast's when it is on, else the inputs'."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return fallback


def has_fused_linear(x: Tensor) -> bool:
    """Whether oneDNN's linear + leaky ReLU in one call can take ``x``."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def linear_leaky_relu(x: Tensor, weight: Tensor, bias: Tensor, slope: float) -> Tensor:
    """leaky_relu(x @ weight.T + bias) for x [N, in]; one oneDNN call where available."""
    if has_fused_linear(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "leaky_relu", [slope], "")
    return F.leaky_relu(torch.addmm(bias, x, weight.t()), slope, inplace=True)


def row_sums(x: Tensor) -> Tensor:
    """Sum over the rows of x [N, C] as a matrix product (matrix units, not a vector loop) -> [C]."""
    return (torch.ones(1, x.shape[0], dtype=x.dtype, device=x.device) @ x)[0]


class _FusedTrunk(torch.autograd.Function):
    """(pe_xy, plane_bias, w_xy, w_out, b_out, slope, sublayers, hidden weights and biases...) ->
    (alpha logits [D, R], coefficients [L, R, C])."""

    @staticmethod
    def forward(ctx, pe_xy: Tensor, plane_bias: Tensor, w_xy: Tensor, w_out: Tensor, b_out: Tensor,
                slope: float, sublayers: int, *hidden: Tensor) -> tuple[Tensor, Tensor]:
        device_type = pe_xy.device.type
        dtype = compute_dtype(device_type, pe_xy.dtype)
        with torch.autocast(device_type, enabled=False):
            D, R, E = pe_xy.shape
            H, S, C = w_xy.shape[0], sublayers, w_out.shape[0] - 1
            pe = pe_xy.to(dtype)
            layers = [(hidden[i].to(dtype), hidden[i + 1].to(dtype)) for i in range(0, len(hidden), 2)]
            w_out_c, b_out_c = w_out.to(dtype), b_out.to(dtype)
            # First layer: the per-plane bias broadcast over each plane's rays.
            h = torch.baddbmm(plane_bias.to(dtype)[:, None, :], pe, w_xy.to(dtype).t().expand(D, E, H))
            acts = [F.leaky_relu(h, slope, inplace=True).view(D * R, H)]
            for w, b in layers:
                acts.append(linear_leaky_relu(acts[-1], w, b, slope))
            alpha = torch.addmv(b_out_c[0], acts[-1], w_out_c[0]).view(D, R)
            h_first = acts[-1].view(D, R, H)[::S].reshape(-1, H)
            coeff = torch.addmm(b_out_c[1:], h_first, w_out_c[1:].t()).view(-1, R, C)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(pe, h_first, *acts)
            ctx.layers, ctx.w_out = layers, w_out_c
            ctx.meta = (slope, S, plane_bias.dtype, w_xy.dtype, w_out.dtype)
        return alpha, coeff

    @staticmethod
    def backward(ctx, g_alpha: Tensor, g_coeff: Tensor):
        with torch.autocast(g_alpha.device.type, enabled=False):
            return _backward(ctx, g_alpha, g_coeff)


def _backward(ctx, g_alpha: Tensor, g_coeff: Tensor):
    pe, h_first, *acts = ctx.saved_tensors
    slope, S, bias_dtype, w_dtype, out_dtype = ctx.meta
    layers, w_out = ctx.layers, ctx.w_out
    D, R, E = pe.shape
    H, dtype = acts[0].shape[-1], pe.dtype
    ga = g_alpha.to(dtype).reshape(D * R)
    gc = g_coeff.to(dtype).reshape(-1, g_coeff.shape[-1])
    grad_w_out = torch.cat([(ga @ acts[-1])[None], gc.t() @ h_first]).to(out_dtype)
    grad_b_out = torch.cat([ga.sum()[None], row_sums(gc)]).to(out_dtype)
    g = torch.outer(ga, w_out[0])  # [D * R, H]: the alpha head's share ...
    g.view(D, R, H)[::S] += (gc @ w_out[1:]).view(-1, R, H)  # ... plus the coefficients' on first sublayers
    flat_hidden: list[Tensor] = []
    for k in range(len(acts) - 1, 0, -1):
        g = torch.ops.aten.leaky_relu_backward(g, acts[k], slope, True)  # slope > 0: out's sign is the input's
        flat_hidden[:0] = [(g.t() @ acts[k - 1]).to(w_dtype), row_sums(g).to(w_dtype)]
        g = g @ layers[k - 1][0]
    g = torch.ops.aten.leaky_relu_backward(g, acts[0], slope, True)
    grad_w_xy = (g.t() @ pe.view(D * R, E)).to(w_dtype)
    ones = torch.ones(1, R, dtype=dtype, device=g.device)
    grad_plane_bias = torch.matmul(ones, g.view(D, R, H))[:, 0].to(bias_dtype)  # per-plane sums over rays
    return (None, grad_plane_bias, grad_w_xy, grad_w_out, grad_b_out, None, None, *flat_hidden)


def fused_trunk(pe_xy: Tensor, plane_bias: Tensor, w_xy: Tensor, hidden: list[nn.Linear], last: nn.Linear,
                slope: float, sublayers: int) -> tuple[Tensor, Tensor]:
    """F_theta after the plane code has been folded into a per-plane bias.

    pe_xy: [D, R, E] positional encoding of where the rays meet the planes; plane_bias: [D, H] the first
    layer's bias plus the plane code's share; w_xy: [H, E] the first layer's position columns; ``hidden``:
    the hidden->hidden layers, each followed by a leaky ReLU of ``slope`` (> 0); ``last``: the output layer
    (row 0 alpha, rows 1.. coefficients). Returns the alpha logits [D, R] and the coefficients of each
    layer's first sublayer [D / sublayers, R, C], in autocast's dtype when it is on.
    """
    if slope <= 0:
        raise ValueError(f"the fused MLP needs a positive leaky-ReLU slope, got {slope}")
    if pe_xy.dim() != 3 or plane_bias.shape != (pe_xy.shape[0], w_xy.shape[0]):
        raise ValueError(f"pe_xy {tuple(pe_xy.shape)} and plane_bias {tuple(plane_bias.shape)} do not fit "
                         f"a first layer of {w_xy.shape[0]} units")
    if pe_xy.shape[0] % sublayers:
        raise ValueError(f"{pe_xy.shape[0]} planes are not whole layers of {sublayers} sublayers")
    params: list[Tensor] = []
    for layer in hidden:
        params += [layer.weight, layer.bias]
    return _FusedTrunk.apply(pe_xy, plane_bias, w_xy, last.weight, last.bias, slope, sublayers, *params)
