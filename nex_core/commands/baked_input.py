"""The baked MPI a viewing or export command reads: RUN/baked, or RUN itself when it is a baked directory;
a run without one is baked first (as ``nex bake RUN`` with its defaults) unless told not to."""

from __future__ import annotations

import sys
from pathlib import Path

from ..io.run_files import RunFiles


def find_baked(path: Path) -> Path:
    """RUN itself if it holds mpi.json, else RUN/baked (which may not exist yet)."""
    from ..io.baked import MANIFEST

    return path if (path / MANIFEST).is_file() else RunFiles(path).baked


def ensure_baked(path: Path, no_bake: bool) -> Path:
    """The baked MPI directory for a run or baked directory, baking the run first (4096-texel atlases) when
    it has none and ``no_bake`` is false."""
    from ..io.baked import MANIFEST
    from ..io.errors import ConfigError, FormatError
    from .bake import bake_and_report

    if not path.exists():
        raise ConfigError(f"{path}: no such run or baked directory; check the path")
    baked = find_baked(path)
    if not (baked / MANIFEST).is_file():
        if no_bake or not RunFiles(path).config.is_file():
            raise FormatError(f"{path} has no baked MPI ({baked}/{MANIFEST}); bake it first with `nex bake {path}`")
        print(f"{path} has no baked MPI yet: baking it (nex bake {path}) ...", file=sys.stderr)
        bake_and_report(path)
    return baked
