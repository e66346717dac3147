"""The scene suite: forward-facing test scenes rendered on demand with Blender (Cycles, CPU).

``tools/scene_suite.py`` is the command line; the scenes are in ``scenes/`` (one module each), the camera
rigs in ``rig.py``, the phone-like lens and photo pipeline in ``phone.py`` (numpy and Pillow only, so tests
use it without Blender), the bpy side of rendering in ``render.py`` and the truth checks in ``truth.py``.
"""
