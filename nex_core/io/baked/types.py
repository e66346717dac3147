"""A baked MPI in memory: its description (:class:`MPIInfo`) and its float arrays (:class:`BakedMPI`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..cameras import Camera, opencv_to_opengl, pose_problem
from ..errors import FormatError
from ..mpi_geometry import MPIGeometry
from .codec import decode_kind, encode_kind
from .constants import COMPOSITING_SPACES, MAX_TEXELS, MAX_TEXTURE_SIDE


@dataclass(frozen=True)
class MPIInfo(MPIGeometry):
    """Everything about a baked MPI except its pixels: its geometry plus layers, basis and LUT."""

    layers: int
    sublayers: int
    n_basis: int
    basis_kind: str  # "learned", "sh", "fourier"
    lut_width: int
    lut_height: int
    lut_vx: tuple[float, float]  # (min, max) of the view direction's x the LUT spans
    lut_vy: tuple[float, float]
    ref_c2w: np.ndarray = field(repr=False)  # 4x4 reference camera-to-world, OpenCV axes, scene world frame
    invz: bool | None = None  # how the depths were spaced (informational; ``depths`` is authoritative)
    compositing: str = "srgb"  # where renderers over-composite the planes: "srgb" values or "linear" light
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lut_vx", (float(self.lut_vx[0]), float(self.lut_vx[1])))
        object.__setattr__(self, "lut_vy", (float(self.lut_vy[0]), float(self.lut_vy[1])))
        object.__setattr__(self, "ref_c2w", np.asarray(self.ref_c2w, dtype=np.float64).reshape(4, 4))

    @classmethod
    def from_geometry(cls, geom: MPIGeometry, **rest: Any) -> MPIInfo:
        """The info of a bake of an MPI with geometry ``geom``; ``rest`` holds the other fields."""
        return cls(**{f.name: getattr(geom, f.name) for f in fields(MPIGeometry)}, **rest)

    @property
    def n_lut_tiles(self) -> int:
        """RGB basis-LUT tiles: channel k of tile g holds H_{3g+k}."""
        return math.ceil(self.n_basis / 3)

    @property
    def ref_c2w_blender(self) -> np.ndarray:
        """The reference camera-to-world with Blender/OpenGL camera axes (x right, y up, z backward)."""
        return opencv_to_opengl(self.ref_c2w)

    def ref_camera(self) -> Camera:
        """The reference camera: the geometry's intrinsics at ``ref_c2w``."""
        return Camera(self.width, self.height, self.fx, self.fy, self.cx, self.cy, self.ref_c2w, "reference")

    def tile_size(self, kind: str) -> tuple[int, int]:
        """(width, height) of one tile of ``kind``."""
        if kind == "basis":
            return self.lut_width, self.lut_height
        return self.mpi_width, self.mpi_height

    def tile_count(self, kind: str) -> int:
        """How many tiles of ``kind`` the MPI has."""
        return {"alpha": self.n_planes, "k0": self.layers, "coeff": self.layers * self.n_basis,
                "basis": self.n_lut_tiles}[kind]

    def total_values(self) -> int:
        """Number of array values of the decoded MPI (what reading it allocates, in float32s)."""
        plane = self.mpi_width * self.mpi_height
        return (self.n_planes * plane + self.layers * plane * 3 * (1 + self.n_basis)
                + self.n_basis * self.lut_width * self.lut_height)

    def check(self, source: str = "baked MPI") -> None:
        """Raise FormatError if the numbers do not add up."""
        ints = {"width": self.width, "height": self.height, "offset": self.offset, "layers": self.layers,
                "sublayers": self.sublayers, "n_basis": self.n_basis, "lut_width": self.lut_width,
                "lut_height": self.lut_height}
        for name, value in ints.items():
            low = 0 if name == "offset" else (2 if name.startswith("lut") else 1)
            if not isinstance(value, (int, np.integer)) or value < low or value > MAX_TEXTURE_SIDE:
                raise FormatError(f"{source}: {name} = {value!r} is out of range ({low}..{MAX_TEXTURE_SIDE}); "
                                  f"the file is damaged: bake it again")
        if self.compositing not in COMPOSITING_SPACES:
            raise FormatError(f"{source}: compositing {self.compositing!r} is not one of "
                              f"{', '.join(COMPOSITING_SPACES)}; bake it again, or update nex")
        planes = self.layers * self.sublayers
        if len(self.depths) != planes:
            raise FormatError(f"{source}: {len(self.depths)} plane depths for layers x sublayers = "
                              f"{self.layers} x {self.sublayers} = {planes} planes; bake it again")
        d = np.asarray(self.depths)
        if not (np.all(np.isfinite(d)) and np.all(d > 0) and np.all(np.diff(d) > 0)):
            raise FormatError(f"{source}: plane depths must be positive and increasing (nearest first); bake it again")
        nums = [self.fx, self.fy, self.cx, self.cy, *self.lut_vx, *self.lut_vy]
        if not all(math.isfinite(x) for x in nums) or self.fx <= 0 or self.fy <= 0:
            raise FormatError(f"{source}: camera intrinsics or LUT range are not finite positive numbers; bake it "
                              "again")
        if not (self.lut_vx[0] < self.lut_vx[1] and self.lut_vy[0] < self.lut_vy[1]):
            raise FormatError(f"{source}: empty LUT range vx {self.lut_vx}, vy {self.lut_vy}; bake it again")
        with np.errstate(invalid="ignore", over="ignore"):
            problem = pose_problem(self.ref_c2w)
        if problem:
            raise FormatError(f"{source}: the reference camera pose is unusable: {problem}; bake it again")
        if self.total_values() > 2 * MAX_TEXELS:
            raise FormatError(f"{source}: {self.total_values():,} values is more than this reader allows "
                              f"({2 * MAX_TEXELS:,}); the dimensions are absurd or the file is damaged: bake it "
                              "again")


@dataclass
class BakedMPI:
    """A baked MPI in memory: float32 arrays (see :mod:`nex_core.io.baked`) plus its :class:`MPIInfo`."""

    info: MPIInfo
    alpha: np.ndarray  # [D, H', W'] in [0, 1]
    k0: np.ndarray  # [L, H', W', 3] in [0, 1]
    coeffs: np.ndarray  # [L, H', W', 3, N] in [-1, 1]
    basis_lut: np.ndarray  # [N, lut_h, lut_w] in [-1, 1]

    def check(self, source: str = "baked MPI") -> None:
        """Raise FormatError if array shapes disagree with the info."""
        i = self.info
        i.check(source)
        h, w = i.mpi_height, i.mpi_width
        want = {"alpha": (i.n_planes, h, w), "k0": (i.layers, h, w, 3), "coeffs": (i.layers, h, w, 3, i.n_basis),
                "basis_lut": (i.n_basis, i.lut_height, i.lut_width)}
        for name, shape in want.items():
            got = getattr(self, name).shape
            if tuple(got) != shape:
                raise FormatError(f"{source}: {name} has shape {tuple(got)}, expected {shape}")

    def quantized(self) -> BakedMPI:
        """A copy with every value snapped to its 8-bit code (what a write/read round trip gives)."""
        q = lambda kind, x: decode_kind(kind, encode_kind(kind, x))  # noqa: E731
        return replace(self, alpha=q("alpha", self.alpha), k0=q("k0", self.k0), coeffs=q("coeff", self.coeffs),
                       basis_lut=q("basis", self.basis_lut))
