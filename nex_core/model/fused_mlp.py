"""F_theta's MLP with a hand-written backward, for CPUs.

Under plain autograd, a large part of a CPU training step goes to passes over the [planes x rays, hidden]
activations that are not matrix products (with AMX or AVX-512 bf16 the products themselves are fast): the
bias add and the leaky ReLU after each product, the bias gradients' reductions, the zero-fill, scatter and
sum of the two heads' gradients. Here:

- each layer's product, bias and leaky ReLU are one oneDNN call (``mkldnn._linear_pointwise``) where
  torch has it (addmm + in-place leaky ReLU elsewhere);
- bias gradients are matrix products with a row of ones (they run on the matrix units), weight gradients a
  batch of products over row blocks (:func:`weight_gradient`); the first layer's bias is a column of its
  weight, fed by a column of ones in the input (:func:`trunk_input`), so its gradient costs no pass;
- only each layer's output is kept for the backward: with a positive slope, the leaky ReLU's gradient
  follows from its output's sign; in bf16 it and the bias gradient are one pass of a compiled kernel
  (:mod:`.cpu_kernels`) where one could be built;
- both output heads are one product forward and one backward (the coefficients' gradient is zero outside
  each layer's first sublayer, the only one whose coefficients are used).

The arithmetic is that of :meth:`NexModel.plane_outputs` (tests compare both, values and gradients, and
gradcheck this in float64); products run in autocast's dtype when it is on, as they would under autograd.
What each of these bought on a CPU step is measured in docs/benchmarks.md.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cpu_kernels import native_leaky_relu_grad

Tensor = torch.Tensor
log = logging.getLogger(__name__)


def compute_dtype(device_type: str, fallback: torch.dtype) -> torch.dtype:
    """The dtype products run in here: autocast's when it is on, else the inputs'."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return fallback


_fused_linear_works: dict[torch.dtype, bool] = {}  # per dtype: whether oneDNN's fused call runs here


def _probe_fused_linear(dtype: torch.dtype) -> bool:
    """Run oneDNN's linear + leaky ReLU once on a tiny input: some builds and CPUs refuse a dtype (bf16 on
    old CPUs). Deciding up front, not by catching errors from real calls, lets a real failure (out of
    memory above all) surface instead of silently switching the fused path off for the process."""
    if dtype not in _fused_linear_works:
        x, w, b = torch.ones(2, 4, dtype=dtype), torch.ones(3, 4, dtype=dtype), torch.zeros(3, dtype=dtype)
        try:
            torch.ops.mkldnn._linear_pointwise(x, w, b, "leaky_relu", [0.01], "")
            _fused_linear_works[dtype] = True
        except (RuntimeError, TypeError) as exc:
            log.info("oneDNN's fused linear + leaky ReLU does not run for %s here (%s); using addmm", dtype, exc)
            _fused_linear_works[dtype] = False
    return _fused_linear_works[dtype]


def has_fused_linear(x: Tensor) -> bool:
    """Whether oneDNN's linear + leaky ReLU in one call can take ``x``."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and _probe_fused_linear(x.dtype))


def linear_leaky_relu(x: Tensor, weight: Tensor, bias: Tensor | None, slope: float) -> Tensor:
    """leaky_relu(x @ weight.T + bias) for x [N, in] (no bias when None); one oneDNN call where available,
    else a product and an in-place leaky ReLU (same values up to rounding)."""
    if has_fused_linear(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "leaky_relu", [slope], "")
    z = x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())
    return F.leaky_relu(z, slope, inplace=True)


def leaky_relu_gradient(grad: Tensor, out: Tensor, slope: float, sums: bool) -> tuple[Tensor, Tensor | None]:
    """The leaky ReLU's input gradient from its output ``out`` (slope > 0: the output's sign is the
    input's) and, with ``sums``, its column sums (a bias gradient): one pass of the compiled kernel
    (:mod:`.cpu_kernels`) for bf16 where it could be built, else torch's operations."""
    native = native_leaky_relu_grad(grad, out, slope)
    if native is not None:
        return native[0], native[1] if sums else None
    g = torch.ops.aten.leaky_relu_backward(grad, out, slope, True)
    return g, row_sums(g) if sums else None


def row_sums(x: Tensor) -> Tensor:
    """Sum over the rows of x [N, C] as a matrix product (matrix units, not a vector loop) -> [C]."""
    return (torch.ones(1, x.shape[0], dtype=x.dtype, device=x.device) @ x)[0]


def _trunk_forward(x: Tensor, w_out: Tensor, b_out: Tensor, slope: float, sublayers: int,
                   layer_params: tuple[Tensor, ...], keep: bool):
    """The forward arithmetic: (alpha logits, coefficients, what the backward needs or None). With
    ``keep`` False (rendering) each layer's input is freed as soon as its output exists."""
    device_type = x.device.type
    dtype = compute_dtype(device_type, x.dtype)
    with torch.autocast(device_type, enabled=False):
        D, R, E = x.shape
        S, C = sublayers, w_out.shape[0] - 1
        # The first layer's bias is a column of its weight (the input's last column is ones), so that its
        # gradient comes out of the weight gradient's product instead of a pass of its own.
        w1, b1 = layer_params[0], layer_params[1]
        layers = [(torch.cat([w1, b1[:, None]], 1).to(dtype), None)]
        layers += [(layer_params[i].to(dtype), layer_params[i + 1].to(dtype))
                   for i in range(2, len(layer_params), 2)]
        w_out_c, b_out_c = w_out.to(dtype), b_out.to(dtype)
        acts = [x.to(dtype).reshape(D * R, E)]  # for the backward: every layer's input and output
        for w, b in layers:
            h = linear_leaky_relu(acts[-1], w, b, slope)
            acts = acts + [h] if keep else [h]
        # Both heads as one product on every sample (coefficients kept on first sublayers only): one pass
        # over the last layer's output instead of one per head and a copy of its first sublayers.
        out = torch.addmm(b_out_c, acts[-1], w_out_c.t()).view(D, R, 1 + C)
        alpha, coeff = out[..., 0].contiguous(), out[::S, :, 1:].contiguous()
    return alpha, coeff, ((acts, layers, w_out_c) if keep else None)


WEIGHT_GRADIENT_BLOCKS = 8


def weight_gradient(g: Tensor, a: Tensor, blocks: int = WEIGHT_GRADIENT_BLOCKS) -> Tensor:
    """g.T @ a for g [N, O] and a [N, I] -> [O, I], summed in fp32 for low-precision inputs.

    Both operands have the long reduction dimension as rows, the layout matrix units like least: as a batch
    of ``blocks`` products over row blocks it runs faster than as one product (docs/benchmarks.md).
    """
    acc = torch.float32 if g.dtype in (torch.bfloat16, torch.float16) else g.dtype
    n = g.shape[0] // blocks
    if n < 256:
        return (g.t() @ a).to(acc)
    m = n * blocks
    out = torch.bmm(g[:m].view(blocks, n, -1).transpose(1, 2), a[:m].view(blocks, n, -1)).sum(0, dtype=acc)
    if m < g.shape[0]:
        out += g[m:].t() @ a[m:]
    return out


class _FusedTrunk(torch.autograd.Function):
    """(x, w_out, b_out, slope, sublayers, weights and biases of the leaky-ReLU layers...) ->
    (alpha logits [D, R], coefficients [L, R, C])."""

    @staticmethod
    def forward(ctx, x: Tensor, w_out: Tensor, b_out: Tensor, slope: float, sublayers: int,
                *layer_params: Tensor) -> tuple[Tensor, Tensor]:
        alpha, coeff, kept = _trunk_forward(x, w_out, b_out, slope, sublayers, layer_params,
                                            keep=any(ctx.needs_input_grad))
        if kept is not None:
            acts, layers, w_out_c = kept
            ctx.save_for_backward(*acts)
            ctx.layers, ctx.w_out = layers, w_out_c
            ctx.meta = (slope, sublayers, tuple(x.shape[:2]), [p.dtype for p in layer_params], w_out.dtype)
        return alpha, coeff

    @staticmethod
    def backward(ctx, g_alpha: Tensor, g_coeff: Tensor):
        with torch.autocast(g_alpha.device.type, enabled=False):
            return _backward(ctx, g_alpha, g_coeff)


def _backward(ctx, g_alpha: Tensor, g_coeff: Tensor):
    acts = ctx.saved_tensors
    slope, S, (D, R), param_dtypes, out_dtype = ctx.meta
    layers, w_out = ctx.layers, ctx.w_out
    dtype = w_out.dtype
    # The output layer's gradient per sample: [alpha | coefficients], the coefficients' on first
    # sublayers only (zero elsewhere), so that both heads' products are one each.
    g_out = g_alpha.new_zeros(D, R, w_out.shape[0], dtype=dtype)
    g_out[..., 0] = g_alpha
    g_out[::S, :, 1:] = g_coeff
    g_out = g_out.view(D * R, -1)
    grad_w_out = weight_gradient(g_out, acts[-1]).to(out_dtype)
    # The bias gradient from the incoming gradients, before they are widened to every sample.
    grad_b_out = torch.cat([g_alpha.sum()[None], g_coeff.sum((0, 1))]).to(out_dtype)
    g = g_out @ w_out  # [D * R, H]
    grads: list[Tensor] = []
    for k in range(len(layers), 0, -1):
        g, bias_grad = leaky_relu_gradient(g, acts[k], slope, sums=k > 1)
        if k > 1:
            grads[:0] = [weight_gradient(g, acts[k - 1]), bias_grad]
            g = g @ layers[k - 1][0]
        else:  # the first layer's bias is its weight's last column; no gradient for the input
            w1_grad = weight_gradient(g, acts[0])
            grads[:0] = [w1_grad[:, :-1], w1_grad[:, -1]]
    grads = [gr.to(dt) for gr, dt in zip(grads, param_dtypes)]
    return (None, grad_w_out, grad_b_out, None, None, *grads)


def trunk_input(coords: Tensor, pos_freqs: Tensor, plane_pe: Tensor, dtype: torch.dtype) -> Tensor:
    """F_theta's input as :func:`fused_trunk` takes it, in ``dtype``: per plane sample, the positional
    encoding of its MPI position (``model.encode_frequencies(coords, pos_freqs)``), its plane's code
    ``plane_pe`` [D, P], and a one (which carries the first layer's bias). coords [D, R, 2] ->
    [D, R, 4 * len(pos_freqs) + P + 1]; sine and cosine are written straight into it."""
    D, R, _ = coords.shape
    n = 2 * pos_freqs.numel()
    scaled = (coords[..., :, None] * pos_freqs).flatten(-2)  # [D, R, n], as encode_frequencies
    x = torch.empty(D, R, 2 * n + plane_pe.shape[1] + 1, dtype=dtype, device=coords.device)
    torch.sin(scaled, out=x[..., :n])
    torch.cos(scaled, out=x[..., n:2 * n])
    x[..., 2 * n:-1] = plane_pe.to(dtype)[:, None, :]
    x[..., -1] = 1
    return x


def fused_trunk(x: Tensor, layers: list[nn.Linear], last: nn.Linear, slope: float,
                sublayers: int) -> tuple[Tensor, Tensor]:
    """F_theta on its input x [D, R, E + 1] (:func:`trunk_input`: the positional encoding of where the
    rays meet the planes and of the plane codes, E values, then a one): ``layers`` each followed by a
    leaky ReLU of ``slope`` (> 0), then ``last`` (row 0 alpha, rows 1.. coefficients). Returns the alpha
    logits [D, R] and the coefficients of each layer's first sublayer [D / sublayers, R, C], in
    autocast's dtype when it is on.
    """
    if slope <= 0:
        raise ValueError(f"the fused MLP needs a positive leaky-ReLU slope, got {slope}")
    if x.dim() != 3 or not layers or x.shape[-1] != layers[0].in_features + 1:
        n_in = layers[0].in_features if layers else 0
        raise ValueError(f"input {tuple(x.shape)} does not fit a first layer of {n_in} inputs and a "
                         f"column of ones")
    if x.shape[0] % sublayers:
        raise ValueError(f"{x.shape[0]} planes are not whole layers of {sublayers} sublayers")
    params: list[Tensor] = []
    for layer in layers:
        params += [layer.weight, layer.bias]
    if not torch.is_grad_enabled():  # rendering: no graph, nothing kept
        alpha, coeff, _ = _trunk_forward(x, last.weight, last.bias, slope, sublayers, tuple(params), keep=False)
        return alpha, coeff
    return _FusedTrunk.apply(x, last.weight, last.bias, slope, sublayers, *params)
