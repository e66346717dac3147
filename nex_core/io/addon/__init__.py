"""The Blender add-on's logic that needs no Blender: one module per feature (``cameras``, ``dataset``,
``planes``, ``shading_spec``), plain functions on numbers, arrays and nex_core's own types. The add-on's
modules of the same features are thin glue that moves these results into Blender data. Torch-free and
bpy-free, so ``tests/`` check them without Blender."""
