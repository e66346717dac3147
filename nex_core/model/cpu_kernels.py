"""A small C kernel for the fused CPU MLP, compiled on first use, with torch's own kernels as the fallback;
and the build, cache and load machinery every C kernel of nex_core uses (:func:`load_library`).

The leaky ReLU's gradient is the largest cost of a bf16 training step on a CPU after the matrix products:
torch's bf16 kernel runs at under half the memory bandwidth of a copy, and the bias gradient (a column sum
of the same tensor) reads it again. :func:`native_leaky_relu_grad` does both in one pass; its column sums
are added in a fixed order, so they are the same bits at any thread count.

The C source below is compiled with the system C compiler (``$CC``, else ``cc``/``gcc``) for a fixed,
portable instruction-set level, never ``-march=native``, so a build shared through a home directory or kept
by a migrated VM runs on any CPU that chose the same level: x86-64-v4 (AVX-512) on x86, and no build on
x86 CPUs without it (there its loop stays scalar and torch's kernel is faster); the compiler's default
target elsewhere. It is cached in ``$NEX_CACHE_DIR/native`` (default
``~/.cache/nex/native``) under a key of the source, the compiler and its version, the flags and torch's
version. The cache is private: the folder is created with mode 0700, and the folder and the library must
be owned by this user and writable by no one else, or the library is not loaded (a folder that fails the
check is not used; the build goes to a private temporary folder instead). One process builds at a time
(a lock file; DDP ranks wait for the first), and a failed build is remembered (a ``.failed`` file beside
it, to delete for another try) so a broken compiler costs one attempt, not one per process.

It uses OpenMP; loaded after torch, it binds to the OpenMP runtime torch already loaded (same soname), so
it runs on torch's threads instead of competing with them. Nothing is built unless a bf16 gradient asks
for the kernel. Without a compiler, on a failed build or load, on platforms other than Linux, or with
``NEX_NATIVE_KERNELS=0``, :func:`native_kernels` returns None and callers use torch's operations (same
values; tests compare both).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from .cpuinfo import first_processor_fields

Tensor = torch.Tensor
log = logging.getLogger(__name__)

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
   out_fwd is NaN), and sums[c] = the column sums of out in fp32. Row-major [rows, cols], cols <= 4096.
   The sums are fixed-order: each block of BLOCK_ROWS rows is summed in row order into its own row of
   partial [ceil(rows / BLOCK_ROWS), cols], then the blocks in block order, so the result does not depend
   on the number of threads or on which thread finishes first. */
#define BLOCK_ROWS 512
int nex_leaky_relu_grad_sums(const uint16_t *restrict grad, const uint16_t *restrict out_fwd,
                             uint16_t *restrict out, float *restrict partial, float *restrict sums,
                             int64_t rows, int64_t cols, float slope) {
    if (cols > 4096) return 1;
    const int64_t blocks = (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        float part[4096];  /* on the stack: the compiler knows nothing else aliases it */
        for (int64_t c = 0; c < cols; c++) part[c] = 0.f;
        const int64_t end = (b + 1) * BLOCK_ROWS < rows ? (b + 1) * BLOCK_ROWS : rows;
        for (int64_t r = b * BLOCK_ROWS; r < end; r++) {
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
        memcpy(partial + b * cols, part, (size_t)cols * sizeof(float));
    }
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < cols; c++) {
        float total = 0.f;
        for (int64_t b = 0; b < blocks; b++) total += partial[b * cols + c];
        sums[c] = total;
    }
    return 0;
}
"""


MAX_COLUMNS = 4096
BLOCK_ROWS = 512  # must match the C source
BASE_FLAGS = ["-O3", "-fopenmp", "-shared", "-fPIC"]  # every kernel's, before its target
# x86-64-v3: AVX2, FMA, BMI and what v2 has (memory-bound kernels are built for it, see sigmoid_tv.py).
X86_64_V3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
             "cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
# The x86-64-v4 level (AVX-512 F, BW, CD, DQ, VL on top of v3): this module's kernel is built for it and only
# for it, because built for v3 (AVX2) the compiler leaves its loop scalar and torch's kernel is faster.
X86_64_V4 = X86_64_V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
LOCK_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 120.0

# Per library name: "lib", "error", "path": the loaded library (or None once tried), why not, where.
_states: dict[str, dict[str, object]] = {}
LEAKY = "leaky_relu_grad"  # the name of this module's own library


class UnsafeCacheError(OSError):
    """The cache folder or a file in it could be written by someone else."""


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$NEX_CACHE_DIR/native`` or ``~/.cache/nex/native``."""
    root = os.environ.get("NEX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nex")
    return Path(root) / "native"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def compiler_version(compiler: str) -> str:
    """The first line of ``compiler --version`` (part of the cache key: an upgraded compiler rebuilds)."""
    try:
        proc = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OSError(f"{compiler} --version failed: {exc}") from exc
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise OSError(f"{compiler} --version failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return lines[0]


def x86_flags(cpuinfo: str | None = None, machine: str | None = None) -> set[str] | None:
    """This CPU's feature flags (from ``cpuinfo``, default /proc/cpuinfo) on x86-64, None on other machines."""
    if (machine or platform.machine()) not in ("x86_64", "AMD64"):
        return None
    return set(first_processor_fields(cpuinfo).get("flags", "").split())


def target_flags(cpuinfo: str | None = None, machine: str | None = None) -> list[str] | None:
    """The fixed instruction-set target to build for, or None where the kernel would not beat torch's:
    ``-march=x86-64-v4`` on x86-64 CPUs that have all of it, the compiler's default target elsewhere."""
    flags = x86_flags(cpuinfo, machine)
    if flags is None:
        return []
    return ["-march=x86-64-v4"] if X86_64_V4 <= flags else None


def build_flags() -> list[str]:
    """The compiler flags of a build here; OSError where the kernel would not be faster than torch's."""
    target = target_flags()
    if target is None:
        raise OSError("this CPU has no AVX-512 (x86-64-v4): torch's operations are faster than the kernel here")
    return [*BASE_FLAGS, *target]


def library_path(compiler: str, flags: list[str] | None = None, folder: Path | None = None,
                 source: str = _SOURCE) -> Path:
    """The cached build of ``source`` (default: this module's) for this compiler (and its version), flags and
    torch version."""
    flags = build_flags() if flags is None else flags
    parts = [source, compiler, compiler_version(compiler), *flags, torch.__version__]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return (folder or cache_dir()) / f"nex_kernels_{key}.so"


def _is_private(st: os.stat_result, kind: int) -> bool:
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.getuid() and not st.st_mode & 0o022


def private_folder(folder: Path) -> Path:
    """``folder``, created with mode 0700 if missing; UnsafeCacheError unless it is a real folder owned by
    this user that no one else can write to."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as exc:
        raise UnsafeCacheError(f"{folder} cannot be created or read ({exc})") from exc
    if not _is_private(st, stat.S_IFDIR):
        raise UnsafeCacheError(f"{folder} is not a folder of this user's that only they can write to "
                               f"(owner {st.st_uid}, mode {stat.filemode(st.st_mode)})")
    return folder


def trusted_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) of this user's that no one else can write to."""
    try:
        return _is_private(os.lstat(path), stat.S_IFREG)
    except FileNotFoundError:
        return False


@contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.build.lock`` (one build at a time across processes), waiting up to LOCK_TIMEOUT_S."""
    import fcntl  # Linux only, as the kernels are

    fd = os.open(folder / ".build.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(f"another process has held {folder / '.build.lock'} for "
                                  f"{LOCK_TIMEOUT_S:.0f} s; delete it if no nex process is running") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _compile(compiler: str, flags: list[str], target: Path, source: str) -> None:
    """Compile ``source`` into ``target`` (atomically: a temporary file in the same folder, then a rename)."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, lib = Path(tmp) / "kernels.c", Path(tmp) / target.name
        src.write_text(source)
        try:
            proc = subprocess.run([compiler, *flags, str(src), "-o", str(lib)], capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            raise OSError(f"{compiler} could not run: {exc}") from exc
        if proc.returncode != 0:
            raise OSError(f"{compiler} failed: {proc.stderr.strip()[-500:]}")
        os.chmod(lib, 0o700)
        os.replace(lib, target)


def _failure_marker(target: Path) -> Path:
    return target.with_suffix(".failed")


def _build_or_reuse(compiler: str, flags: list[str], target: Path, source: str) -> None:
    """Make ``target`` a trusted build: reuse one, wait for another process's, or compile (once per key)."""
    marker = _failure_marker(target)
    with _build_lock(target.parent):
        if trusted_file(target):
            return
        if marker.exists():
            reason = marker.read_text(encoding="utf-8", errors="replace").strip()
            raise OSError(f"an earlier build failed ({reason[-300:]}); delete {marker} to try again")
        target.unlink(missing_ok=True)  # untrusted or damaged: never loaded, replaced
        try:
            _compile(compiler, flags, target, source)
        except OSError as exc:
            marker.write_text(str(exc) + "\n", encoding="utf-8")
            raise


def _bind_leaky(lib: ctypes.CDLL) -> None:
    fn = lib.nex_leaky_relu_grad_sums
    fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_float]
    fn.restype = ctypes.c_int


def _open(target: Path, bind: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(target))
    bind(lib)
    return lib


def _load(source: str, flags: list[str], bind: Callable[[ctypes.CDLL], None]) -> tuple[ctypes.CDLL, Path]:
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler (set $CC)")
    try:
        folder = private_folder(cache_dir())
    except UnsafeCacheError as exc:
        log.warning("not using the kernel cache: %s; building in a private temporary folder", exc)
        folder = Path(tempfile.mkdtemp(prefix="nex_kernels_"))
    target = library_path(compiler, flags, folder, source)
    _build_or_reuse(compiler, flags, target, source)
    try:
        return _open(target, bind), target
    except OSError:  # a damaged file that passed the checks: build it again once
        with _build_lock(folder):
            target.unlink(missing_ok=True)
        _build_or_reuse(compiler, flags, target, source)
        return _open(target, bind), target


def load_library(name: str, source: str, flags: Callable[[], list[str]],
                 bind: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL | None:
    """The library ``name`` compiled from ``source`` with ``flags()`` (OSError: no build here) and its
    functions' signatures set by ``bind``, or None where it can't be had (see the module docstring); tried
    once per process."""
    state = _states.setdefault(name, {})
    if "lib" not in state:
        state["lib"], state["error"], state["path"] = None, None, None
        if os.environ.get("NEX_NATIVE_KERNELS", "1") == "0":
            state["error"] = "turned off by NEX_NATIVE_KERNELS=0"
        elif not sys.platform.startswith("linux"):
            state["error"] = f"not built on {sys.platform}"
        else:
            try:
                state["lib"], state["path"] = _load(source, flags(), bind)
            except (OSError, subprocess.SubprocessError, AttributeError) as exc:
                state["error"] = str(exc)
    return state["lib"]  # type: ignore[return-value]


def library_error(name: str) -> str | None:
    """Why :func:`load_library` gave None for ``name`` (after it was called), else None."""
    return _states.get(name, {}).get("error")  # type: ignore[return-value]


def native_kernels() -> ctypes.CDLL | None:
    """This module's compiled kernel, or None where it can't be had here (see the module docstring)."""
    return load_library(LEAKY, _SOURCE, build_flags, _bind_leaky)


def native_kernels_error() -> str | None:
    """Why :func:`native_kernels` gave None (after it was called), else None."""
    return library_error(LEAKY)


def loaded_library_path() -> Path | None:
    """The file the kernel was loaded from (after :func:`native_kernels` succeeded), else None."""
    return _states.get(LEAKY, {}).get("path")  # type: ignore[return-value]


def reset() -> None:
    """Forget every loaded library (tests)."""
    _states.clear()


def native_leaky_relu_grad(grad: Tensor, out: Tensor, slope: float) -> tuple[Tensor, Tensor] | None:
    """(the leaky ReLU's input gradient [N, C], its column sums [C] in fp32) from the gradient ``grad``
    and the layer's output ``out`` [N, C] (slope > 0: the output's sign is the input's), in one pass of
    the compiled kernel; None where it does not apply (not contiguous 2-D bf16 CPU tensors, checked before
    anything is built; no kernels) and the caller uses torch's operations. The gradient equals
    ``aten.leaky_relu_backward``'s bit for bit; the sums do not depend on the thread count.
    """
    if (grad.dtype != torch.bfloat16 or out.dtype != torch.bfloat16 or grad.device.type != "cpu"
            or grad.dim() != 2 or grad.shape != out.shape or grad.shape[1] > MAX_COLUMNS
            or not grad.is_contiguous() or not out.is_contiguous()):
        return None
    lib = native_kernels()
    if lib is None:
        return None
    rows, cols = grad.shape
    result = torch.empty_like(grad)
    partial = torch.empty(max(1, -(-rows // BLOCK_ROWS)), cols, dtype=torch.float32)
    sums = torch.empty(cols, dtype=torch.float32)
    status = lib.nex_leaky_relu_grad_sums(grad.data_ptr(), out.data_ptr(), result.data_ptr(), partial.data_ptr(),
                                          sums.data_ptr(), rows, cols, slope)
    return (result, sums) if status == 0 else None
