"""NeX for Blender: train a NeX multiplane image from photos and use it as scene objects.

The add-on is thin glue over files: training, structure from motion and baking run in a separate Python
(with torch) set in the preferences; this process only reads their files (``events.jsonl``, a baked
``mpi.json`` and its PNGs) through the torch-free part of nex_core, and builds Blender data from them.
Modules: ``prefs`` (interpreter, environment), ``properties`` (scene settings and job state),
``worker`` (background processes), ``operators`` and ``ui`` (the "NeX" sidebar tab), ``camera_import``,
``shading`` (the NeX MPI shader node), ``mpi_import``, ``dataset_render``.
"""

from __future__ import annotations

import bpy

from . import camera_import, dataset_render, mpi_import, operators, prefs, properties, shading, ui, worker

_modules = (prefs, properties, shading, operators, ui)
_classes = tuple(cls for module in _modules for cls in module.classes)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_classes)


def register() -> None:
    _register_classes()
    properties.register()
    shading.register()
    worker.register()


def unregister() -> None:
    worker.unregister()
    shading.unregister()
    properties.unregister()
    _unregister_classes()


__all__ = ["register", "unregister", "camera_import", "dataset_render", "mpi_import", "worker"]
