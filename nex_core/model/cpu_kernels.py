"""A small C kernel for the fused CPU MLP, compiled on first use, with torch's own kernels as the fallback.

The leaky ReLU's gradient is the largest cost of a bf16 training step on a CPU after the matrix products:
torch's bf16 kernel runs at under half the memory bandwidth of a copy, and the bias gradient (a column sum
of the same tensor) reads it again. :func:`leaky_relu_grad_and_column_sums` does both in one pass.

The C source below is compiled with the system C compiler (``$CC``, else ``cc``/``gcc``) into
``$NEX_CACHE_DIR/native`` (default ``~/.cache/nex/native``), once per source, compiler flags and CPU. It
uses OpenMP; loaded after torch, it binds to the OpenMP runtime torch already loaded (same soname), so it
runs on torch's threads instead of competing with them. Without a compiler, on a failed build or load, on
platforms other than Linux, or with ``NEX_NATIVE_KERNELS=0``, :func:`native_kernels` returns None and
callers use torch's operations (same values; tests compare both).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .cpuinfo import first_processor_fields

Tensor = torch.Tensor

_SOURCE = r"""
#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t float_to_bf16(float f) {  /* round to nearest even, NaN stays NaN (branch-free) */
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    uint32_t quiet_nan = u | 0x00400000u;
    return (uint16_t)((((u & 0x7fffffffu) > 0x7f800000u) ? quiet_nan : rounded) >> 16);
}

/* out = grad where out_fwd > 0 else grad * slope (torch's leaky_relu_backward on bf16, except where
   out_fwd is NaN), and
   sums[c] = the column sums of out in fp32. Row-major [rows, cols], cols <= 4096. */
int nex_leaky_relu_grad_sums(const uint16_t *restrict grad, const uint16_t *restrict out_fwd,
                             uint16_t *restrict out, float *restrict sums, int64_t rows, int64_t cols,
                             float slope) {
    if (cols > 4096) return 1;
    for (int64_t c = 0; c < cols; c++) sums[c] = 0.f;
    #pragma omp parallel
    {
        float part[4096];
        for (int64_t c = 0; c < cols; c++) part[c] = 0.f;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const uint16_t *g = grad + r * cols, *h = out_fwd + r * cols;
            uint16_t *o = out + r * cols;
            for (int64_t c = 0; c < cols; c++) {
                float v = bf16_to_float(g[c]);
                /* h > 0 as a signed 16-bit integer is h > 0 as a bf16 (NaN outputs aside) */
                uint16_t y = float_to_bf16((int16_t)h[c] > 0 ? v : v * slope);
                o[c] = y;
                part[c] += bf16_to_float(y);
            }
        }
        #pragma omp critical
        for (int64_t c = 0; c < cols; c++) sums[c] += part[c];
    }
    return 0;
}
"""

MAX_COLUMNS = 4096
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]

_state: dict[str, object] = {}  # "lib": the loaded library or None once tried, "error": why not


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$NEX_CACHE_DIR/native`` or ``~/.cache/nex/native``."""
    root = os.environ.get("NEX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nex")
    return Path(root) / "native"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _cpu_model() -> str:
    """The first processor's model and instruction-set flags: a build for ``-march=native`` must not be
    reused on a CPU with fewer instructions (a shared home directory, a VM moved to another host)."""
    fields = first_processor_fields()
    keys = ("model name", "flags", "Features", "CPU part")
    return "".join(f"{k}: {fields[k]}\n" for k in keys if k in fields) or platform.processor()


def _build(compiler: str, target: Path) -> None:
    """Compile the source into ``target`` (atomically: a temporary file, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, lib = Path(tmp) / "kernels.c", Path(tmp) / target.name
        src.write_text(_SOURCE)
        proc = subprocess.run([compiler, *_FLAGS, str(src), "-o", str(lib)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise OSError(f"{compiler} failed: {proc.stderr.strip()[-500:]}")
        os.replace(lib, target)


def library_path(compiler: str) -> Path:
    """The cached build for this source, compiler, flags, CPU and torch version."""
    key = hashlib.sha256("\n".join([_SOURCE, compiler, *_FLAGS, _cpu_model(), torch.__version__]).encode())
    return cache_dir() / f"nex_kernels_{key.hexdigest()[:16]}.so"


def _load() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler (set $CC)")
    target = library_path(compiler)
    if not target.exists():
        _build(compiler, target)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError:  # a damaged cache file: build it again once
        target.unlink(missing_ok=True)
        _build(compiler, target)
        lib = ctypes.CDLL(str(target))
    fn = lib.nex_leaky_relu_grad_sums
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_float]
    fn.restype = ctypes.c_int
    return lib


def native_kernels() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they can't be had here (see the module docstring); tried once."""
    if "lib" not in _state:
        _state["lib"], _state["error"] = None, None
        if os.environ.get("NEX_NATIVE_KERNELS", "1") == "0":
            _state["error"] = "turned off by NEX_NATIVE_KERNELS=0"
        elif not sys.platform.startswith("linux"):
            _state["error"] = f"not built on {sys.platform}"
        else:
            try:
                _state["lib"] = _load()
            except (OSError, subprocess.SubprocessError, AttributeError) as exc:
                _state["error"] = str(exc)
    return _state["lib"]  # type: ignore[return-value]


def native_kernels_error() -> str | None:
    """Why :func:`native_kernels` gave None (after it was called), else None."""
    return _state.get("error")  # type: ignore[return-value]


def reset() -> None:
    """Forget the loaded kernels (tests)."""
    _state.clear()


def native_leaky_relu_grad(grad: Tensor, out: Tensor, slope: float) -> tuple[Tensor, Tensor] | None:
    """(the leaky ReLU's input gradient [N, C], its column sums [C] in fp32) from the gradient ``grad``
    and the layer's output ``out`` [N, C] (slope > 0: the output's sign is the input's), in one pass of
    the compiled kernel; None where it does not apply (no kernels; not contiguous 2-D bf16 CPU tensors)
    and the caller uses torch's operations. The gradient equals ``aten.leaky_relu_backward``'s bit for bit.
    """
    lib = native_kernels()
    if (lib is None or grad.dtype != torch.bfloat16 or out.dtype != torch.bfloat16 or grad.device.type != "cpu"
            or grad.dim() != 2 or grad.shape != out.shape or grad.shape[1] > MAX_COLUMNS
            or not grad.is_contiguous() or not out.is_contiguous()):
        return None
    result = torch.empty_like(grad)
    sums = torch.empty(grad.shape[1], dtype=torch.float32)
    status = lib.nex_leaky_relu_grad_sums(grad.data_ptr(), out.data_ptr(), result.data_ptr(), sums.data_ptr(),
                                          grad.shape[0], grad.shape[1], slope)
    return (result, sums) if status == 0 else None
