"""The first processor's fields in /proc/cpuinfo (Linux), for choices that depend on the CPU. Torch-free."""

from __future__ import annotations

CPUINFO = "/proc/cpuinfo"


def first_processor_fields(cpuinfo: str | None = None) -> dict[str, str]:
    """Each field's first value in /proc/cpuinfo text (default: this machine's; empty where it cannot be
    read), e.g. ``model name``, ``vendor_id``, ``flags`` (x86) or ``Features`` (Arm)."""
    if cpuinfo is None:
        try:
            with open(CPUINFO, encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields
