"""NeX for Blender: train a NeX multiplane image from photos and use it as scene objects.

The add-on is thin glue over files: training, structure from motion and baking run in a separate Python
(with torch) set in the preferences; this process only reads their files (``events.jsonl``, a baked
``mpi.json`` and its PNGs) through the torch-free part of nex_core, and builds Blender data from them.
Modules: ``prefs`` (interpreter, environment), ``properties`` (scene settings and job state),
``worker`` (background processes) and ``previews`` (their preview images), ``operators`` (jobs),
``import_operators`` and ``ui`` (the "NeX" sidebar tab), ``camera_import``, ``mpi_node`` and ``shading`` (the
NeX MPI shader node and its tree), ``mpi_import``, ``dataset_render``, and ``compat`` (what differs between
Blender 4.2, 4.5 and 5.0). Their pure logic is in ``nex_core/io/addon/``.
"""

from __future__ import annotations

import bpy

from . import (camera_import, compat, dataset_render, import_operators, mpi_import, mpi_node, operators, prefs,
               properties, ui, worker)

_modules = (prefs, properties, mpi_node, operators, import_operators, ui)
_classes = tuple(cls for module in _modules for cls in module.classes)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_classes)


def register() -> None:
    _register_classes()
    properties.register()
    mpi_node.register()
    worker.register()


def unregister() -> None:
    worker.unregister()
    mpi_node.unregister()
    properties.unregister()
    _unregister_classes()


__all__ = ["register", "unregister", "camera_import", "compat", "dataset_render", "mpi_import", "worker"]
