"""Scene loading: posed photos from LLFF, COLMAP or Blender (transforms.json) folders. Torch-free.

>>> from nex_core.scene import load_scene
>>> scene = load_scene("data/scenes/fern", width=504)  # doctest: +SKIP
"""

from nex_core.scene.loader import detect_format, load_scene
from nex_core.scene.types import PlaneSpec, Scene

__all__ = ["Scene", "PlaneSpec", "load_scene", "detect_format"]
