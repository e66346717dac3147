"""What the benchmark records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nex_core.model.cpuinfo import first_processor_fields
from nex_core.runtime.device import cpu_flags_and_vendor


def cpu_model() -> str:
    """The CPU's model name."""
    return first_processor_fields().get("model name") or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The matrix-relevant feature flags of this CPU (nex_core.training.trainer reads them for the precision choice)."""
    flags, _ = cpu_flags_and_vendor()
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (8 GiB where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where there are none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """CPU, memory, GPU and library versions, and the start time."""
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "mem_available_gb": round(mem_available_bytes() / 2 ** 30, 1),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return info
