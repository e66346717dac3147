"""Checkpoints: written atomically, checksummed, loaded safely (``weights_only=True``), checked for
compatibility.

A checkpoint file is torch's serialisation followed by a 40-byte trailer: ``NEXSHA2\0`` and the
SHA-256 of everything before it. The trailer catches damage that still unzips (a flipped bit in a
tensor, a file cut at a zip-entry boundary), which ``torch.load`` alone would not notice.

The payload is the trainer's: ``model``, ``optimizer``, ``generator`` and so on, and ``appearance``, the
per-photo colour transforms (``model/appearance.py``; an empty dict when they are off). Checkpoints
written before the transforms existed have no ``appearance`` entry and still load: training from them
starts the transforms at the identity, and nothing else reads them (renders and the bake use the model
alone).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..io.errors import CheckpointError, DamagedCheckpointError
from ..io.run_files import PARTIAL_CHECKPOINT_GLOB, RunFiles, partial_checkpoint_name

FORMAT = "nex-checkpoint"
VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1 had no checksum trailer
_TRAILER_MAGIC = b"NEXSHA2\0"
_TRAILER_SIZE = len(_TRAILER_MAGIC) + 32


def checkpoint_dir(run_dir: Path) -> Path:
    return RunFiles(run_dir).checkpoints


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in a run, oldest first."""
    return RunFiles(run_dir).list_checkpoints()


def fingerprint(settings: dict[str, Any]) -> str:
    """A stable hash of the settings a checkpoint's tensors depend on."""
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write ``checkpoints/step_XXXXXXXX.pt`` atomically (temp file, fsync, rename), keep the newest
    ``keep`` checkpoints, and return the path."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = RunFiles(run_dir).checkpoint(step)
    tmp = folder / partial_checkpoint_name(step)
    data = {"format": FORMAT, "version": VERSION, "step": int(step), **payload}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    body = buffer.getbuffer()
    try:
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.write(_TRAILER_MAGIC + hashlib.sha256(body).digest())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = list_checkpoints(run_dir)
        raise CheckpointError(f"could not write {path} ({exc.strerror or exc}); free some disk space and "
                              f"resume: the last good checkpoint "
                              f"{'is ' + str(kept[-1][1]) if kept else 'does not exist yet'}") from None
    for _, old in list_checkpoints(run_dir)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def remove_partial_checkpoints(run_dir: Path) -> list[Path]:
    """Delete temp files left by a checkpoint write that was killed; return what was removed."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    partial = [p for p in folder.glob(PARTIAL_CHECKPOINT_GLOB) if p.is_file()]
    for p in partial:
        p.unlink(missing_ok=True)
    return partial


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _verified_body(path: Path, blob: bytes) -> bytes:
    """The serialised part of a checkpoint file, after checking its SHA-256 trailer (version 2)."""
    if len(blob) < _TRAILER_SIZE or blob[-_TRAILER_SIZE:-32] != _TRAILER_MAGIC:
        return blob  # version 1 (no trailer), or cut short: torch.load and the version check decide
    body, digest = blob[:-_TRAILER_SIZE], blob[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise DamagedCheckpointError(f"{path}: checksum mismatch, the file is damaged. Delete it (or rename "
                                     f"it) to resume from an older checkpoint.")
    return body


def load_checkpoint(path: Path, expected_fingerprint: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; raise CheckpointError (naming the file) if it is corrupt, fails its checksum,
    is of an unknown version, or was trained with settings other than ``expected_fingerprint``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    body = _verified_body(path, blob)
    try:
        data = torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise DamagedCheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}); it may be "
                                     f"truncated or corrupt. Delete it to resume from an older one.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nex checkpoint")
    if data.get("version") == VERSION and body is blob:
        raise DamagedCheckpointError(f"{path}: the checksum trailer is missing, the file was cut short or "
                                     f"altered. Delete it to resume from an older checkpoint.")
    if data.get("version") not in _READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')} is not supported by this "
                              f"nex (version {VERSION}); train a new run")
    if expected_fingerprint is not None and data.get("fingerprint") != expected_fingerprint:
        raise CheckpointError(
            f"{path}: this checkpoint was trained with a different model or scene configuration "
            f"({data.get('settings', '?')}); start a new run directory or restore the original config.toml")
    return data
