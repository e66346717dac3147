"""Checkpoints: written atomically, loaded safely (``weights_only=True``), checked for compatibility."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

FORMAT = "nex-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def fingerprint(settings: dict[str, Any]) -> str:
    """A stable hash of the settings a checkpoint's tensors depend on."""
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write ``checkpoints/step_XXXXXXXX.pt`` atomically (temp file, fsync, rename), keep the newest
    ``keep`` checkpoints, and return the path."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    tmp = folder / f".{path.name}.tmp"
    data = {"format": FORMAT, "version": VERSION, "step": int(step), **payload}
    try:
        with open(tmp, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = list_checkpoints(run_dir)
        raise CheckpointError(f"could not write {path} ({exc.strerror or exc}); free some disk space and "
                              f"resume: the last good checkpoint "
                              f"{'is ' + str(kept[-1][1]) if kept else 'does not exist yet'}") from None
    for _, old in list_checkpoints(run_dir)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, expected_fingerprint: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; raise CheckpointError (naming the file) if it is corrupt, of an unknown
    version, or was trained with settings other than ``expected_fingerprint``."""
    path = Path(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}); it may be "
                              f"truncated or corrupt. Delete it to resume from an older one.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nex checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')} is not supported by this "
                              f"nex (version {VERSION}); train a new run")
    if expected_fingerprint is not None and data.get("fingerprint") != expected_fingerprint:
        raise CheckpointError(
            f"{path}: this checkpoint was trained with a different model or scene configuration "
            f"({data.get('settings', '?')}); start a new run directory or restore the original config.toml")
    return data
