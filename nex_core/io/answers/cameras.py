"""The answer of ``nex cameras SCENE --json``: a scene's cameras, split and reference view as one JSON
document (``SceneCameras`` of :func:`nex_core.io.scene.loader.load_cameras`). Unknown depth bounds
(NaN) are written as null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..cameras import Camera
from ..errors import FormatError
from ..scene.loader import SceneCameras

KIND = "nex-cameras"
VERSION = 1


def _bounds(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else float(v) for v in values]


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def to_dict(views: SceneCameras) -> dict[str, Any]:
    """The JSON-ready form of ``views``."""
    cameras = [{"width": c.width, "height": c.height, "fx": c.fx, "fy": c.fy, "cx": c.cx, "cy": c.cy,
                "c2w": c.c2w.tolist(), "name": c.name} for c in views.cameras]
    return {"kind": KIND, "version": VERSION, "root": str(views.root), "format": views.format,
            "names": list(views.names), "cameras": cameras, "near": _bounds(views.near), "far": _bounds(views.far),
            "train_ids": list(views.train_ids), "test_ids": list(views.test_ids), "ref_id": views.ref_id,
            "size": list(views.size)}


def encode(views: SceneCameras) -> str:
    """The answer's text (one line)."""
    return json.dumps(to_dict(views), allow_nan=False)


def decode(text: str) -> SceneCameras:
    """The cameras in an answer's text; FormatError if it is not a camera answer this version reads."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise FormatError("the camera answer is not JSON") from None
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise FormatError("the JSON is not an answer of `nex cameras --json`")
    if raw.get("version") != VERSION:
        raise FormatError(f"camera answer version {raw.get('version')} is not readable here (version {VERSION}); "
                          "use the same version of nex_core on both sides")
    try:
        return SceneCameras(
            root=Path(raw["root"]), format=raw["format"], names=list(raw["names"]),
            cameras=[Camera(**c) for c in raw["cameras"]], near=_array(raw["near"]), far=_array(raw["far"]),
            train_ids=list(raw["train_ids"]), test_ids=list(raw["test_ids"]), ref_id=int(raw["ref_id"]),
            size=tuple(int(v) for v in raw["size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"the camera answer is incomplete or malformed ({type(exc).__name__}: {exc})") from None
