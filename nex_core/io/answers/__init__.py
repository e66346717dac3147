"""The JSON answers ``nex`` commands print for the Blender add-on: ``nex cameras SCENE --json``
(:mod:`.cameras`) and ``nex doctor --json`` (:mod:`.doctor`). The CLI writes them, the add-on reads them
with the same module. Torch-free."""
