"""The torch-free part of nex_core: what Blender's own Python may import.

Cameras and their conventions, typed errors, the event log, run configuration, the scene loaders and the
baked MPI format with its numpy reference renderer; the contract between the Blender add-on and the CLI
(``run_files``: a run folder's names, ``jobs``: the command lines it starts, ``answers``: the JSON its
commands answer in) and the add-on's Blender-free logic (``addon``). Nothing below this folder imports torch or bpy (a test
walks it); third-party imports are limited to numpy, Pillow, tomli_w and (lazily) pycolmap. The Blender
extension vendors this folder whole (``tools/build_extension.py``).
"""
