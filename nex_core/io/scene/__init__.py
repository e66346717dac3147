"""Scene loading: posed photos from LLFF, COLMAP or Blender (transforms.json) folders. Torch-free.

>>> from nex_core.io.scene import load_scene
>>> scene = load_scene("data/scenes/fern", width=504)  # doctest: +SKIP
"""

from .loader import detect_format, load_scene
from .types import PlaneSpec, Scene

__all__ = ["Scene", "PlaneSpec", "load_scene", "detect_format"]
