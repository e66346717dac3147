"""Access to the torch-free part of nex_core from inside Blender.

The torch-free part is the folder ``nex_core/io/``; the built extension carries a copy of it in
``_vendor/nex_core/io`` (see ``tools/build_extension.py``), so the add-on works in a Blender whose Python
has nothing installed. Run from a source checkout (no ``_vendor``), the add-on uses the ``nex_core``
package on ``sys.path``. Only modules below ``io`` can be reached from here.
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
