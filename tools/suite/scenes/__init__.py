"""The suite's scenes, one module each: ``SUMMARY`` (one line), ``RIG`` (:class:`suite.rig.Rig`) and
``build()``, which fills the current (empty) Blender scene and returns its calibration markers."""

from __future__ import annotations

import importlib
from types import ModuleType

SCENES = ("shiny_tabletop", "deep_matte", "refraction", "fine_detail", "low_light")


def load(name: str) -> ModuleType:
    """The module of scene ``name``; a clear error naming the known scenes otherwise."""
    if name not in SCENES:
        raise SystemExit(f"unknown scene {name!r}: choose one of {', '.join(SCENES)} (see `scene_suite.py list`)")
    return importlib.import_module(f"suite.scenes.{name}")
