"""The baked format's fixed names and numbers, and the kinds of tile it stores."""

from __future__ import annotations

FORMAT_NAME = "nex-baked-mpi"
FORMAT_VERSION = 2  # what the writer writes
# What the readers read: version 1 has no "compositing" field (its MPIs composite sRGB values).
READABLE_VERSIONS = (1, 2)
COMPOSITING_SPACES = ("srgb", "linear")  # mpi.compositing: where the planes' colours are over-composited
MANIFEST = "mpi.json"
COEFFICIENT_LOOKUP = "layer_first_plane"
GUTTER = 1  # texels of padding around every tile
MAX_TEXELS = 1 << 30  # readers refuse more texels than this, summed over all textures
MAX_TEXTURE_SIDE = 65536

# kind -> (channels, signed, gutter mode)
KINDS: dict[str, tuple[int, bool, str]] = {
    "alpha": (1, False, "zero"),
    "k0": (3, False, "zero"),
    "coeff": (3, True, "edge"),
    "basis": (3, True, "edge"),
}
