"""Timing (synchronised on CUDA, wall clock and process CPU time) and this process's memory."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any, Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (synchronised on CUDA)."""
    return timed_cpu(fn, device)[0]


def timed_cpu(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call of ``fn``. On a shared machine the CPU
    time is the steadier figure: it does not count time the process waited for a core."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def _status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Resident set size now."""
    return _status_bytes("VmRSS") or 0


def maxrss_bytes() -> int:
    """Peak resident set size of this process. VmHWM where there is one: ``ru_maxrss`` survives exec on
    Linux, so a child started from a large parent would report the parent's size."""
    hwm = _status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def release_memory() -> None:
    """Give freed heap back to the OS (so later sections and other users see it)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def memory_fields(rss_before: int, device: torch.device) -> dict[str, float]:
    """Peak resident size, its growth since ``rss_before`` and the CUDA peak, in MiB."""
    out = {"peak_rss_mb": maxrss_bytes() / 2 ** 20, "peak_delta_mb": (maxrss_bytes() - rss_before) / 2 ** 20}
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out
