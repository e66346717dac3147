"""Where and in what precision a model runs: the torch device, the autocast dtype for training and for
renders (bf16 on CPUs only where it is faster), and recognising out-of-memory failures."""

from __future__ import annotations

import torch

from ..io.config import RunConfig
from ..io.errors import ConfigError
from ..model.cpuinfo import first_processor_fields


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but this machine has no CUDA GPU; use 'auto' or 'cpu'")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_flags_and_vendor(cpuinfo: str | None = None) -> tuple[set[str], str]:
    """The first processor's feature flags and vendor id from /proc/cpuinfo text (default: this machine's;
    nothing where it cannot be read)."""
    fields = first_processor_fields(cpuinfo)
    return set(fields.get("flags", "").split()), fields.get("vendor_id", "")


def cpu_prefers_bf16(cpuinfo: str | None = None) -> bool:
    """Whether bf16 training is faster than fp32 on this CPU (what ``precision = "auto"`` uses).

    Native bf16 is necessary but not enough (measured in docs/benchmarks.md): bf16 steps are faster than fp32
    with AMX and on AMD's AVX-512 BF16 (Zen 4), but slower on a Xeon whose oneDNN is held to AVX-512 BF16
    without AMX (what Intel's bf16 parts without AMX run). Where the flags cannot be read, native bf16 decides.
    """
    if not cpu_has_native_bf16():
        return False
    flags, vendor = cpu_flags_and_vendor(cpuinfo)
    if not flags:
        return True
    return "amx_bf16" in flags or (vendor == "AuthenticAMD" and "avx512_bf16" in flags)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The training autocast dtype for a precision setting (None: plain fp32).

    "auto" is bf16 on CUDA and on CPUs where it is faster at the same held-out PSNR (:func:`cpu_prefers_bf16`;
    tools/bench.py measures both), else fp32. On a GPU without bf16, "auto" and "bf16" are fp16 (the trainer scales its loss then).
    """
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16" or cpu_prefers_bf16():
        return torch.bfloat16
    return None


def preferred_field(device: torch.device, precision: str, cpuinfo: str | None = None) -> str:
    """The form of F_theta that ``model.field = "auto"`` trains on this machine: "mlp" where its products run
    in bf16 (CUDA, and CPUs where :func:`cpu_prefers_bf16` with ``precision`` auto or bf16), else "grid".

    Decided on the scene suite at equal time (docs/benchmarks.md): without a bf16 path the MLP trains in fp32
    and the grid field, with several times its steps, ends higher on every scene; with one the MLP's steps
    come close to the grid's and it ends level or higher. On CUDA the MLP is the reference's choice.
    """
    if device.type == "cuda":
        return "mlp"
    return "mlp" if precision != "fp32" and cpu_prefers_bf16(cpuinfo) else "grid"


def resolve_field(cfg: RunConfig, device: torch.device) -> str | None:
    """Replace ``model.field = "auto"`` in ``cfg`` by :func:`preferred_field`'s choice, so the
    run's config.toml, checkpoints and bake record the network actually trained; returns the choice, or
    None when the field was given."""
    if cfg.model.field != "auto":
        return None
    cfg.model.field = preferred_field(device, cfg.train.precision)
    return cfg.model.field


def render_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast for evaluation renders: only on CUDA; CPU renders stay fp32 (they are cheap next to
    training, and bf16 renders lose measurable PSNR)."""
    return autocast_dtype(precision, device) if device.type == "cuda" else None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA and CPU allocation failures."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
