"""The baked MPI: a trained NeX as plain arrays, and its on-disk form (``mpi.json`` + 8-bit PNG atlases).

Torch-free: numpy only at import time (Pillow is imported when pixels are read or written), so the
Blender add-on can import this package and read :func:`read_layout` without either.

A baked MPI holds, for an MPI of ``D = layers * sublayers`` planes of ``H' x W'`` texels:

* ``alpha`` [D, H', W'] in [0, 1], per plane;
* ``k0`` [L, H', W', 3] in [0, 1], the base colour, per layer;
* ``coeffs`` [L, H', W', 3, N] in [-1, 1], the view-dependent coefficients k_n, per layer;
* ``basis_lut`` [N, lut_h, lut_w] in [-1, 1], the basis H_n(v) tabulated over the view direction's
  (vx, vy) on a rectangle ``lut_vx x lut_vy`` (texel centres on the rectangle's edges: texel ``i`` of
  ``lut_w`` sits at ``vx = vx0 + i * (vx1 - vx0) / (lut_w - 1)``; look-ups clamp to the rectangle).

A plane texel seen along the unit direction ``v`` (reference-camera frame, OpenCV axes) has colour
``clamp(k0 + sum_n coeffs[..., n] * H_n(vx, vy), 0, 1)``; a layer's coefficient images are sampled where
the ray meets the layer's *first* plane (``coefficient_lookup = "layer_first_plane"``), alpha and k0 where
it meets the plane itself. Planes are composited front to back with the over operator.

On disk, values are 8-bit: unsigned data (alpha, k0) as ``v = round(x * 255)``, decoded ``x = v / 255``;
signed data (coefficients, basis) as ``v = round((x + 1) / 2 * 255)``, decoded ``x = v / 255 * 2 - 1``.
Tiles of one kind share atlases no larger than ``max_texture`` per side, each tile surrounded by a
1-texel gutter (zeros for alpha and k0, so a GPU's bilinear filter reproduces zero padding; a copy of the
tile's edge for coefficients and the basis, so it reproduces clamping). See :func:`layout_schema_doc`.

Each texture entry of mpi.json records the ``sha256`` of its PNG file. Readers check it (a damaged
texture is refused with a FormatError that names it); the field is optional in version 1, so bakes made
before it was added still read, unchecked.

The package's modules: :mod:`.constants` (names and limits), :mod:`.codec` (the 8-bit codes),
:mod:`.types` (:class:`MPIInfo`, :class:`BakedMPI`), :mod:`.layout` (textures, tiles, atlas packing),
:mod:`.manifest` and :mod:`.writer` (writing), :mod:`.reader` (strict reading) and
:mod:`.reference_render` (the numpy renderer every real-time renderer is tested against; not imported
here).
"""

from __future__ import annotations

from .codec import decode_signed, decode_unsigned, encode_signed, encode_unsigned
from .constants import (COMPOSITING_SPACES, FORMAT_NAME, FORMAT_VERSION, GUTTER, KINDS, MANIFEST, MAX_TEXELS,
                        MAX_TEXTURE_SIDE, READABLE_VERSIONS)
from .layout import BakedLayout, TextureSpec, Tile, layout_schema_doc, plan_atlases
from .reader import read_baked, read_layout, read_texture, verify_textures
from .types import BakedMPI, MPIInfo
from .writer import BakedWriter, write_baked

__all__ = ["COMPOSITING_SPACES", "FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS", "GUTTER", "KINDS", "MANIFEST", "MAX_TEXELS", "MAX_TEXTURE_SIDE",
           "BakedLayout", "BakedMPI", "BakedWriter", "MPIInfo", "TextureSpec", "Tile", "decode_signed",
           "decode_unsigned", "encode_signed", "encode_unsigned", "layout_schema_doc", "plan_atlases",
           "read_baked", "read_layout", "read_texture", "verify_textures", "write_baked"]
