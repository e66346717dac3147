"""The answer of ``nex doctor --json``: what a Python environment has for running nex (its Python,
nex_core, each package nex uses, and the device torch would train on).

A package that cannot be imported is reported as data (``version`` null, ``error`` its import error),
so a front end never has to read exception text to tell what is missing. Standard library only: the
doctor must answer in an environment where everything else is missing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import FormatError

KIND = "nex-doctor"
VERSION = 1


@dataclass
class PackageStatus:
    """One package nex uses, as found in the environment."""

    name: str  # the distribution's name (what pip installs)
    module: str  # the name it is imported by
    required: bool  # nex train / bake cannot run without it
    needed_for: str
    version: str | None = None  # None: it cannot be imported
    error: str = ""  # the import's failure ("ModuleNotFoundError: ..."), when it failed

    @property
    def present(self) -> bool:
        return self.version is not None


@dataclass
class DoctorReport:
    """The environment's state; :attr:`ok` when every required package imports."""

    python: str
    executable: str
    nex_core: str
    nex_core_path: str
    packages: list[PackageStatus] = field(default_factory=list)
    cuda: bool = False
    device: str = "CPU"
    network: str = ""  # what the fast preset's automatic field trains here: "mlp" or "grid" ("": unknown)

    @property
    def missing(self) -> list[str]:
        """The required packages that cannot be imported."""
        return [p.name for p in self.packages if p.required and not p.present]

    @property
    def ok(self) -> bool:
        return not self.missing

    def package(self, name: str) -> PackageStatus | None:
        return next((p for p in self.packages if p.name == name), None)

    def summary(self) -> str:
        """One line for a status bar: versions, the device, and what is missing."""
        parts = [f"Python {self.python}", f"nex_core {self.nex_core}"]
        torch = self.package("torch")
        if torch is not None and torch.present:
            parts.append(f"torch {torch.version}")
            parts.append(f"CUDA: {self.device}" if self.cuda else "no CUDA (CPU only)")
            if self.network:
                parts.append(f"network {self.network}")
        else:
            parts.append("torch MISSING")
        others = [name for name in self.missing if name != "torch"]
        if others:
            parts.append("also missing: " + ", ".join(others))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "version": VERSION, **asdict(self), "missing": self.missing, "ok": self.ok}

    def encode(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def decode(cls, text: str) -> "DoctorReport":
        """The report in an answer's text; FormatError if it is not a doctor answer this version reads."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise FormatError("the doctor's answer is not JSON") from None
        if not isinstance(raw, dict) or raw.get("kind") != KIND:
            raise FormatError("the JSON is not an answer of `nex doctor --json`")
        if raw.get("version") != VERSION:
            raise FormatError(f"doctor answer version {raw.get('version')} is not readable here (version "
                              f"{VERSION}); use the same version of nex_core on both sides")
        try:
            packages = [PackageStatus(**p) for p in raw["packages"]]
            return cls(python=str(raw["python"]), executable=str(raw["executable"]), nex_core=str(raw["nex_core"]),
                       nex_core_path=str(raw["nex_core_path"]), packages=packages, cuda=bool(raw["cuda"]),
                       device=str(raw["device"]), network=str(raw.get("network", "")))
        except (KeyError, TypeError) as exc:
            raise FormatError(f"the doctor's answer is incomplete or malformed ({type(exc).__name__}: "
                              f"{exc})") from None
