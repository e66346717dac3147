"""Process-wide tuning of the C allocator for training and rendering on the CPU.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it
to the kernel on free, so a training step that allocates gigabytes of activations pays for every page again
(the kernel zeroes it on first touch). At the paper shape on a 2-core CPU that was more system time than
computation: 11.8 s per step, of which most in page faults; with freed memory kept in the heap for reuse,
about 5-6 s. Torch-free; a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap (no per-allocation mmap) and keep up to 2 GiB of freed heap
    for reuse instead of returning it to the kernel. Returns whether glibc accepted both settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
