"""Memory planning for training: the peak a config needs on a device, and micro-batches and render chunks
that fit it, decided before the first step.

The peak is what is resident at setup (the runtime, the parameters, the training images; measured: the
process's RSS on a CPU, torch's allocation on a GPU) plus what training adds: gradients and Adam's two
moments (3 x the parameters), the total-variation term's copies of the k0 images, and the larger of one
micro-batch's activations (forward and backward over planes x rays samples) and one render chunk's (no
gradients). The per-sample counts follow the model's forward (:meth:`NexModel.render_rays`) and the fused
MLP's saved outputs; tests/test_memory_plan.py compares the estimate with measured peaks.

Available memory: ``NEX_DEVICE_MEMORY_BYTES`` (a simulated device size, for tests and for planning for
another machine), else ``torch.cuda.mem_get_info`` on a GPU, else the smaller of ``MemAvailable`` and the
cgroup's limit less its usage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io.config import RunConfig
from ..io.errors import ConfigError
from ..model.nex_model import NexModel

DEVICE_MEMORY_ENV = "NEX_DEVICE_MEMORY_BYTES"
HEADROOM = 0.9  # plan to use at most this share of what is available (allocator slack, fragmentation)
MIN_RENDER_CHUNK = 256
GB = 1e9
# On a CPU, training micro-batches and render chunks are kept to about this much activation memory: larger
# ones run no faster there (the step time by micro-batch size is in docs/benchmarks.md), and
# the memory is shared with Blender and the user's other programs. GPUs take the largest that fits.
CPU_MICRO_BATCH_BYTES = 0.5 * GB


@dataclass
class MemoryPlan:
    """The estimate (bytes) and the chosen splits."""

    device: str
    resident: int  # at setup: runtime, parameters, data
    optimiser: int  # gradients + Adam moments
    regulariser: int  # the TV term's k0 copies
    train_activations: int  # one micro-batch
    render_activations: int  # one render chunk
    micro_batches: int
    render_chunk: int
    available: int | None  # what may still be allocated (None: unknown)
    split: bool = False  # micro-batches or a render chunk smaller than configured, to fit
    capped: bool = False  # micro-batches kept to ``max_batch_bytes`` of activations (the CPU's choice)

    @property
    def added(self) -> int:
        """What training adds to what is resident at setup."""
        return self.optimiser + self.regulariser + max(self.train_activations, self.render_activations)

    @property
    def peak(self) -> int:
        return self.resident + self.added

    def fits(self) -> bool:
        return self.available is None or self.added <= HEADROOM * self.available

    def describe(self) -> str:
        avail = "unknown" if self.available is None else f"{self.available / GB:.2f} GB"
        return (("split to fit: " if self.split else "")
                + ("micro-batches kept small for the CPU: " if self.capped and not self.split else "")
                + f"estimated peak {self.peak / GB:.2f} GB on {self.device} (resident at setup "
                f"{self.resident / GB:.2f}, gradients + Adam {self.optimiser / GB:.2f}, TV term "
                f"{self.regulariser / GB:.2f}, activations {self.train_activations / GB:.2f} per micro-batch "
                f"x {self.micro_batches}, render chunk of {self.render_chunk} rays "
                f"{self.render_activations / GB:.2f}); available {avail}")

    def event_fields(self) -> dict:
        return {"peak_bytes": self.peak, "resident_bytes": self.resident, "available_bytes": self.available,
                "micro_batches": self.micro_batches, "render_chunk": self.render_chunk, "message": self.describe()}


# --------------------------------------------------------------------------------------------------
# Per-sample costs


def _element_bytes(dtype: torch.dtype | None) -> int:
    return 4 if dtype is None else torch.finfo(dtype).bits // 8


def train_bytes_per_sample(model: NexModel, dtype: torch.dtype | None) -> float:
    """Bytes one (plane, ray) sample holds at the peak of a training step: F_theta's input and each
    layer's output (kept for the backward), the output heads and their gradient, the backward's two
    hidden-sized gradients, and ~30 float32 values of sampling and compositing."""
    cfg = model.cfg
    e = _element_bytes(dtype)
    heads = 1 + 3 * cfg.basis_out / cfg.sublayers
    if cfg.field == "grid":
        n_in, hidden, layers = cfg.grid_levels * cfg.grid_features, cfg.grid_hidden, cfg.grid_mlp_layers + 1
        n_in *= 3  # the bilinear reads' weights and gathered corners are kept too
    else:
        n_in, hidden, layers = 4 * cfg.pos_level + 2 * cfg.depth_level + 1, cfg.hidden, cfg.mlp_layers + 1
    return e * (n_in + hidden * layers + 2 * hidden + 2 * heads) + 4 * 30


def render_bytes_per_sample(model: NexModel, dtype: torch.dtype | None) -> float:
    """Bytes one (plane, ray) sample holds while rendering without gradients: the input, two live hidden
    layers, the heads and ~20 float32 values of sampling and compositing."""
    cfg = model.cfg
    e = _element_bytes(dtype)
    hidden = cfg.grid_hidden if cfg.field == "grid" else cfg.hidden
    n_in = cfg.grid_levels * cfg.grid_features if cfg.field == "grid" else 4 * cfg.pos_level + 2 * cfg.depth_level
    return e * (n_in + 2 * hidden + 1 + 3 * cfg.basis_out / cfg.sublayers) + 4 * 20


def parameter_bytes(model: NexModel) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Available memory


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cpu_available_bytes() -> int | None:
    """The smaller of MemAvailable and the cgroup's (v2 or v1) limit less its usage."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(Path(limit_file)), _read_int(Path(usage_file))
        if limit is not None and usage is not None and limit < 1 << 60:
            candidates.append(max(limit - usage, 0))
    return min(candidates) if candidates else None


def process_rss_bytes() -> int:
    """This process's resident set size now (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def resident_and_available(device: torch.device) -> tuple[int, int | None]:
    """(bytes resident now, bytes that may still be allocated) on ``device``; a simulated device size
    (``NEX_DEVICE_MEMORY_BYTES``) replaces the device's own."""
    if device.type == "cuda":
        resident = int(torch.cuda.memory_allocated(device))
    else:
        resident = process_rss_bytes()
    simulated = os.environ.get(DEVICE_MEMORY_ENV, "").strip()
    if simulated:
        try:
            size = int(float(simulated))
        except ValueError:
            raise ConfigError(f"{DEVICE_MEMORY_ENV}={simulated!r}: give the device size in bytes, "
                              f"e.g. {DEVICE_MEMORY_ENV}=8e9") from None
        return resident, max(size - resident, 0)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return resident, int(free)
    return resident, cpu_available_bytes()


# --------------------------------------------------------------------------------------------------
# Planning


def plan_memory(model: NexModel, rays: int, render_chunk: int, resident: int, available: int | None,
                dtype: torch.dtype | None, device: str = "cpu", max_batch_bytes: float | None = None) -> MemoryPlan:
    """The smallest number of micro-batches (a power of two) and the largest render chunk (at most
    ``render_chunk``, halving) whose activations stay within ``max_batch_bytes`` (None: no limit) and that
    fit ``available``; the finest split when nothing does (the caller checks :meth:`MemoryPlan.fits`)."""
    params = parameter_bytes(model)
    k0 = model.k0.numel() * 4
    d = model.geom.n_planes
    train_per_ray = d * train_bytes_per_sample(model, dtype)
    render_per_ray = d * render_bytes_per_sample(model, dtype)
    triples = max(rays // 3, 1)

    def make(micro: int, chunk: int) -> MemoryPlan:
        per_batch = 3 * -(-triples // micro)
        return MemoryPlan(device, int(resident), 3 * params, 4 * k0, int(per_batch * train_per_ray),
                          int(chunk * render_per_ray), micro, chunk, available,
                          split=micro > least or chunk < largest, capped=least > 1 or largest < render_chunk)

    # The split max_batch_bytes asks for, whatever the memory available.
    least, largest = 1, render_chunk
    while max_batch_bytes and least < triples and 3 * -(-triples // least) * train_per_ray > max_batch_bytes:
        least *= 2
    while max_batch_bytes and largest > MIN_RENDER_CHUNK and largest * render_per_ray > max_batch_bytes:
        largest = max(MIN_RENDER_CHUNK, largest // 2)
    micro, chunk = least, largest
    while not (plan := make(micro, chunk)).fits():
        can_split, can_shrink = micro < triples, chunk > MIN_RENDER_CHUNK
        if not (can_split or can_shrink):
            return plan  # the finest split, still too large
        # Halve whichever is the larger of the two activation terms.
        if can_split and (plan.train_activations >= plan.render_activations or not can_shrink):
            micro *= 2
        else:
            chunk = max(MIN_RENDER_CHUNK, chunk // 2)
    return plan


def suggestion(cfg: RunConfig) -> str:
    m = cfg.model
    planes = m.layers * m.sublayers
    tips = []
    if planes > 8:
        tips.append(f"fewer planes (model.layers x model.sublayers, now {m.layers} x {m.sublayers} = {planes})")
    if cfg.preset != "tiny":
        tips.append("a smaller preset (--preset fast, or tiny to try the chain)")
    width = cfg.data.width or "the photos' own"
    tips.append(f"a smaller image width (--width, now {width})")
    return "; ".join(tips)


def plan_training_memory(cfg: RunConfig, model: NexModel, device: torch.device, dtype: torch.dtype | None,
                         dist=None, events=None) -> MemoryPlan:
    """Measure what is resident, plan the splits, say so (a setup ``note``, or a ``warning`` when split, on
    ``events``), and refuse (ConfigError with the estimate and what to change) when even the finest split
    does not fit. ``dist``: the trainer's DistInfo (each rank takes its share of the rays)."""
    resident, available = resident_and_available(device)
    world = max(getattr(dist, "world_size", 1), 1)
    cap = CPU_MICRO_BATCH_BYTES if device.type == "cpu" else None
    plan = plan_memory(model, max(cfg.train.rays // world, 3), cfg.train.render_chunk, resident, available, dtype,
                       str(device), cap)
    if not plan.fits():
        raise ConfigError(f"this run does not fit in memory: {plan.describe()} (with the finest split "
                          f"tried). Try {suggestion(cfg)}.")
    if events is not None:
        events.emit("setup", "warning" if plan.split else "note", **plan.event_fields())
    return plan
