"""k0's sigmoid and its total variation with the gradient in one pass of a C kernel (CPU, fp32).

At the paper's image size k0 holds tens of millions of values, and every training step runs the sigmoid, the
total variation's differences, norms and signs, their gradient, the sum with the render's gradient and the
sigmoid's gradient over all of them: about twenty passes over memory in torch's operations. Here the forward
is torch's sigmoid plus one pass for the TV value, and the backward one pass:
``g_x = (g_s + w * dTV/ds) * s * (1 - s)``.

The kernel is memory-bound, so it is built for every CPU (``-march=x86-64-v3`` where the CPU has AVX2 and
the rest of that level, the compiler's default target elsewhere) through :mod:`.cpu_kernels`'s cache, lock
and fallbacks; where it can't be had (no compiler, ``NEX_NATIVE_KERNELS=0``, not Linux, a GPU tensor, not
fp32), :func:`sigmoid_and_tv` uses torch's operations (the same values; tests compare both).
"""

from __future__ import annotations

import ctypes
import math

import torch

from .cpu_kernels import BASE_FLAGS, X86_64_V3, library_error, load_library, x86_flags
from .total_variation import total_variation, tv_scale

Tensor = torch.Tensor
NAME = "sigmoid_tv"

_SOURCE = r"""
#include <stdint.h>
#include <math.h>

/* Images s [P, H, W] (P = layers * channels), fp32, contiguous. partial[p * H + h] = the row's sum of
   |s[h, w + 1] - s[h, w]| and, below the last row, of |s[h + 1, w] - s[h, w]|; the caller sums the
   partials exactly, so the value does not depend on the thread count. */
void nex_tv_rows(const float *restrict s, double *restrict partial, int64_t P, int64_t H, int64_t W) {
    #pragma omp parallel for schedule(static)
    for (int64_t ph = 0; ph < P * H; ph++) {
        const float *row = s + ph * W;
        float acc = 0.f;
        #pragma omp simd reduction(+:acc)
        for (int64_t w = 0; w < W - 1; w++) acc += fabsf(row[w + 1] - row[w]);
        if (ph % H + 1 < H) {
            const float *next = row + W;
            #pragma omp simd reduction(+:acc)
            for (int64_t w = 0; w < W; w++) acc += fabsf(next[w] - row[w]);
        }
        partial[ph] = acc;
    }
}

static inline float sgn(float d) { return (float)(d > 0.f) - (float)(d < 0.f); }

static inline float cell(const float *row, const float *up, const float *down, const float *g, float k,
                         int64_t w, float left, float right) {
    const float v = row[w];
    const float t = sgn(v - up[w]) - sgn(down[w] - v) + sgn(v - left) - sgn(right - v);
    return (g[w] + k * t) * v * (1.f - v);
}

/* gx = (gs + k * dTV/ds) * s * (1 - s), where dTV/ds is the sum of the signs of the differences a value
   takes part in (a difference at an edge is zero: the neighbour is the value itself). */
void nex_sigmoid_tv_backward(const float *restrict s, const float *restrict gs, float *restrict gx,
                             int64_t P, int64_t H, int64_t W, float k) {
    #pragma omp parallel for schedule(static)
    for (int64_t ph = 0; ph < P * H; ph++) {
        const int64_t h = ph % H;
        const float *row = s + ph * W;
        const float *up = h > 0 ? row - W : row;
        const float *down = h + 1 < H ? row + W : row;
        const float *g = gs + ph * W;
        float *restrict o = gx + ph * W;
        o[0] = cell(row, up, down, g, k, 0, row[0], W > 1 ? row[1] : row[0]);
        #pragma omp simd
        for (int64_t w = 1; w < W - 1; w++) o[w] = cell(row, up, down, g, k, w, row[w - 1], row[w + 1]);
        if (W > 1) o[W - 1] = cell(row, up, down, g, k, W - 1, row[W - 2], row[W - 1]);
    }
}
"""


def target_flags(cpuinfo: str | None = None, machine: str | None = None) -> list[str]:
    """``-march=x86-64-v3`` on x86-64 CPUs that have all of it, else the compiler's default target (a fixed
    level, never ``-march=native``: a build kept in a shared home folder runs on any CPU of that level)."""
    flags = x86_flags(cpuinfo, machine)
    return ["-march=x86-64-v3"] if flags is not None and X86_64_V3 <= flags else []


def build_flags() -> list[str]:
    """The compiler flags of this kernel's build here."""
    return [*BASE_FLAGS, *target_flags()]


def _bind(lib: ctypes.CDLL) -> None:
    lib.nex_tv_rows.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.nex_tv_rows.restype = None
    lib.nex_sigmoid_tv_backward.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3 + [ctypes.c_float]
    lib.nex_sigmoid_tv_backward.restype = None


def native_sigmoid_tv() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it can't be had (:func:`kernel_error` says why)."""
    return load_library(NAME, _SOURCE, build_flags, _bind)


def kernel_error() -> str | None:
    """Why :func:`native_sigmoid_tv` gave None (after it was called), else None."""
    return library_error(NAME)


class _SigmoidTV(torch.autograd.Function):
    """x [L, C, H, W] -> (sigmoid(x), the reference's total variation of it), the gradient in one pass."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:
        lib = native_sigmoid_tv()
        L, C, H, W = x.shape
        s = torch.sigmoid(x)
        partial = torch.empty(L * C * H, dtype=torch.float64)
        lib.nex_tv_rows(s.data_ptr(), partial.data_ptr(), L * C, H, W)
        scale = tv_scale(x.shape)
        ctx.save_for_backward(s)
        ctx.scale = scale
        # fsum: exact, so the value is the same bits whatever the thread count (torch's sum splits by threads)
        return s, torch.tensor(math.fsum(partial.tolist()) * scale, dtype=torch.float32)

    @staticmethod
    def backward(ctx, g_s: Tensor | None, g_tv: Tensor | None) -> Tensor:
        (s,) = ctx.saved_tensors
        L, C, H, W = s.shape
        g_s = torch.zeros_like(s) if g_s is None else g_s.contiguous()
        k = 0.0 if g_tv is None else float(g_tv) * ctx.scale
        g_x = torch.empty_like(s)
        native_sigmoid_tv().nex_sigmoid_tv_backward(s.data_ptr(), g_s.data_ptr(), g_x.data_ptr(), L * C, H, W, k)
        return g_x


def kernel_applies(x: Tensor) -> bool:
    """Whether :func:`sigmoid_and_tv` runs the kernel for ``x`` (a contiguous fp32 CPU tensor [L, C, H, W],
    H and W >= 2, and a kernel built here)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.is_contiguous()
            and x.shape[2] >= 2 and x.shape[3] >= 2 and native_sigmoid_tv() is not None)


def sigmoid_and_tv(x: Tensor) -> tuple[Tensor, Tensor]:
    """(sigmoid(x), :func:`~.total_variation.total_variation` of it) for k0 [L, C, H, W]: the C kernel where
    it applies, torch's operations elsewhere (the same value and gradients)."""
    if kernel_applies(x):
        return _SigmoidTV.apply(x)
    s = torch.sigmoid(x)
    return s, total_variation(s)
