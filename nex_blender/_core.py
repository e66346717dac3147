"""Access to the torch-free part of nex_core from inside Blender.

The torch-free part is the folder ``nex_core/io/``; the built extension carries a copy of it in
``_vendor/nex_core/io`` (see ``tools/build_extension.py``), so the add-on works in a Blender whose Python
has nothing installed. The copy is a subpackage of the extension (``bl_ext.<repo>.nex_blender._vendor``),
never a top-level ``nex_core``: a user's own nex_core in Blender's Python, a second copy of the extension
in another repository, and an add-on reload each keep their own modules. (The project's full wheel, also in
the zip, is only pip-installed into the background Python by Create Environment.)

Run from a source checkout (no ``_vendor``), the add-on uses the ``nex_core`` package on ``sys.path``.
Only modules below ``io`` can be reached from here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

try:
    from ._vendor import nex_core as _package
except ImportError:  # a source checkout: use the installed/importable nex_core
    _package = importlib.import_module("nex_core")

PACKAGE = _package.__name__  # "bl_ext.<repo>.nex_blender._vendor.nex_core" or "nex_core"
VERSION = getattr(_package, "__version__", "?")
VENDORED = PACKAGE != "nex_core"


def module(name: str) -> ModuleType:
    """A torch-free module by its dotted name below ``nex_core.io``: ``module("scene.loader")``."""
    return importlib.import_module(f"{PACKAGE}.io.{name}")
