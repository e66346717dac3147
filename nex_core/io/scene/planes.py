"""Where the MPI planes go: :func:`plane_spec` from a scene's bounds, ``planes.txt`` and arguments. Torch-free.

The depth range comes from, in increasing priority, the reference view's near/far bounds
(as NeX's reference code does for LLFF scenes; if that view has no bounds, the smallest near and
largest far of all views), ``planes.txt`` in the scene root (one line ``dmin dmax [invz [offset]]``),
and the ``dmin``/``dmax``/``invz``/``offset`` arguments, each overriding only what it sets.
``invz`` defaults to True (planes equally spaced in inverse depth, right for forward-facing captures
with a far background). NeX's reference code defaults to linear spacing unless its ``-invz`` flag or
planes.txt's third column asks for inverse depth. ``offset`` is the MPI padding in pixels
*at the loaded resolution*, used as given (NeX's reference code also uses planes.txt offsets
unscaled, at its training width); ``None`` lets the model choose.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import SceneError
from .types import PlaneSpec, PosedViews

PLANES_FILE = "planes.txt"


def _parse_invz(token: str, path: Path) -> bool:
    value = token.strip().lower()
    if value in ("1", "1.0", "true"):
        return True
    if value in ("0", "0.0", "false"):
        return False
    raise SceneError(f"{path}: invz must be 0 or 1, got {token!r}; fix the file")


def _parse_offset(token: str, path: Path) -> int:
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise SceneError(f"{path}: offset must be a whole number of pixels >= 0, got {token!r}; fix the file")
    return int(value)


def read_planes_file(path: Path) -> dict:
    """Parse ``planes.txt``: first non-comment line ``dmin dmax [invz [offset]]`` -> dict of those set."""
    usage = "expected one line `dmin dmax [invz [offset]]`, e.g. `1.5 40 1 200`"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"{path} cannot be read ({exc}); {usage}") from exc
    data = [ln.split("#", 1)[0].replace(",", " ").split() for ln in lines]
    data = [tokens for tokens in data if tokens]
    if not data or not 2 <= len(data[0]) <= 4:
        raise SceneError(f"{path} is malformed; {usage}")
    tokens = data[0]
    try:
        values: dict = {"dmin": float(tokens[0]), "dmax": float(tokens[1])}
    except ValueError as exc:
        raise SceneError(f"{path}: dmin and dmax must be numbers, got {tokens[:2]}; {usage}") from exc
    if len(tokens) >= 3:
        values["invz"] = _parse_invz(tokens[2], path)
    if len(tokens) == 4:
        values["offset"] = _parse_offset(tokens[3], path)
    return values


def _bounds_range(near: np.ndarray, far: np.ndarray, ref_id: int) -> tuple[float, float] | None:
    """(dmin, dmax) from the reference view's bounds, else the envelope of all known bounds."""
    if np.isfinite(near[ref_id]) and np.isfinite(far[ref_id]):
        return float(near[ref_id]), float(far[ref_id])
    if np.any(np.isfinite(near)) and np.any(np.isfinite(far)):
        return float(np.nanmin(near)), float(np.nanmax(far))
    return None


def _validate_planes(spec: PlaneSpec, origin: dict[str, str]) -> None:
    ok = math.isfinite(spec.dmin) and math.isfinite(spec.dmax) and 0 < spec.dmin < spec.dmax
    if not ok:
        raise SceneError(f"invalid MPI depth range dmin={spec.dmin} (from {origin['dmin']}), dmax={spec.dmax} "
                         f"(from {origin['dmax']}): need finite 0 < dmin < dmax. Fix {origin['dmin']}"
                         + ("" if origin["dmax"] == origin["dmin"] else f" / {origin['dmax']}"))
    if spec.offset is not None and spec.offset < 0:
        raise SceneError(f"MPI offset {spec.offset} (from {origin['offset']}) must be >= 0 pixels")


def plane_spec(root: Path, views: PosedViews, ref_id: int, dmin: float | None = None,
               dmax: float | None = None, invz: bool | None = None, offset: int | None = None) -> PlaneSpec:
    """The MPI plane placement: bounds < planes.txt < arguments (each overrides what it sets)."""
    values: dict = {"invz": True, "offset": None}
    origin = {k: "the default" for k in ("dmin", "dmax", "invz", "offset")}
    source = "bounds"
    bounds = _bounds_range(views.near, views.far, ref_id)
    if bounds is not None:
        values["dmin"], values["dmax"] = bounds
        origin["dmin"] = origin["dmax"] = f"the near/far bounds in {views.source}"
    planes_path = root / PLANES_FILE
    if planes_path.is_file():
        from_file = read_planes_file(planes_path)
        values.update(from_file)
        origin.update({k: str(planes_path) for k in from_file})
        source = "planes.txt"
    flags = {k: v for k, v in (("dmin", dmin), ("dmax", dmax), ("invz", invz), ("offset", offset))
             if v is not None}
    values.update(flags)
    origin.update({k: f"the {k} argument" for k in flags})
    if "dmin" in flags or "dmax" in flags:
        source = "flags"
    missing = [k for k in ("dmin", "dmax") if k not in values]
    if missing:
        raise SceneError(f"no depth range for the MPI planes: {views.source} has no near/far bounds and "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. Write "
                         f"{planes_path} with one line `dmin dmax` (depths in scene units seen from the "
                         "reference camera), or pass dmin and dmax.")
    spec = PlaneSpec(dmin=float(values["dmin"]), dmax=float(values["dmax"]), invz=bool(values["invz"]),
                     offset=None if values["offset"] is None else int(values["offset"]), source=source)
    _validate_planes(spec, origin)
    return spec
