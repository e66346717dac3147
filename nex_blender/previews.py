"""Training preview images as icons for the panel (Blender's preview collections), reloaded when the file
changes."""

from __future__ import annotations

import os

_previews = None
_preview_keys: dict[str, float] = {}


def preview_icon(path: str) -> int:
    """The icon id of the training preview image at ``path`` (0 if it cannot be shown)."""
    if _previews is None or not path or path not in _preview_keys:
        return 0
    key = f"{path}@{_preview_keys[path]}"
    return _previews[key].icon_id if key in _previews else 0


def refresh(path: str) -> None:
    """Load (or reload, when the file changed) the preview image at ``path`` for :func:`preview_icon`."""
    global _previews
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return
    if _preview_keys.get(path) == mtime:
        return
    import bpy.utils.previews

    if _previews is None:
        _previews = bpy.utils.previews.new()
    key = f"{path}@{mtime}"
    if key not in _previews:
        _previews.load(key, path, "IMAGE", force_reload=True)
    old = _preview_keys.get(path)
    if old is not None and f"{path}@{old}" in _previews:
        _previews.pop(f"{path}@{old}")
    _preview_keys[path] = mtime


def clear() -> None:
    """Free the preview collection (add-on disabled)."""
    global _previews
    if _previews is not None:
        import bpy.utils.previews

        bpy.utils.previews.remove(_previews)
        _previews = None
    _preview_keys.clear()
