"""``nex prepare``: photos -> camera poses by structure from motion (pycolmap) -> a scene folder.

Torch-free like ``nex_core.io``, whose scene types and COLMAP reader it writes for, but not needed by the
Blender add-on (it runs in the worker process), so it is not vendored.
"""
