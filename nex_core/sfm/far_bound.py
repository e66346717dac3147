"""The far bound of the planes when the farthest content had no 3D points. Torch-free.

Structure from motion keeps a 3D point only when the rays that see it meet at an angle of at least
:data:`TRIANGULATION_ANGLE_DEG` (COLMAP's mapper default), so with the cameras spread over a baseline B
nothing much farther than ``B / tan(angle)`` (the *triangulation limit*) gets a point. A photo's far bound
is the depth of its farthest points; when that reaches :data:`FAR_REACH` of the limit, the scene goes on
as far as the points could show it, and most likely farther (a distant background). The planes would end in
front of that background and draw it on the last plane, displaced between views by the parallax of the
depth it lacks. There the far bound moves out to :func:`parallax_free_depth`, beyond which anything moves
less than :data:`PARALLAX_PX` pixels across the whole capture: for these photos, as good as infinity.
With planes spaced evenly in inverse depth this widens their range by at most ``near / far``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TRIANGULATION_ANGLE_DEG = 1.5
FAR_REACH = 0.4
PARALLAX_PX = 0.5


@dataclass(frozen=True)
class FarBounds:
    """Per-photo far bounds after the check, with what it was based on."""

    far: np.ndarray  # the far bound of each photo (extended or as measured)
    measured: np.ndarray  # the depth of each photo's farthest points
    limit: float  # the triangulation limit of the capture
    extended_to: float  # the depth the extended bounds were moved to
    extended: np.ndarray  # bool per photo

    def describe(self, ref: int) -> str:
        """One line for the report about the reference photo's far bound."""
        if not self.extended[ref]:
            return (f"far bound {self.measured[ref]:.4g}: the farthest 3D points "
                    f"({self.measured[ref] / self.limit:.0%} of the triangulation limit {self.limit:.4g})")
        return (f"far bound moved from {self.measured[ref]:.4g} (the farthest 3D points, "
                f"{self.measured[ref] / self.limit:.0%} of the triangulation limit {self.limit:.4g}: the "
                f"background likely goes on) to {self.extended_to:.4g}, beyond which nothing moves more than "
                f"{PARALLAX_PX:g} px between photos")


def camera_spread(centres: np.ndarray) -> float:
    """Twice the largest distance of a camera centre from their mean (as the model checks measure it)."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    return 2.0 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max())


def triangulation_limit(spread: float) -> float:
    """The depth beyond which two cameras ``spread`` apart see a point under less than the mapper's angle."""
    return spread / math.tan(math.radians(TRIANGULATION_ANGLE_DEG))


def parallax_free_depth(spread: float, focal_px: float) -> float:
    """The depth beyond which a point moves less than :data:`PARALLAX_PX` pixels between any two photos."""
    return focal_px * spread / PARALLAX_PX


def far_bounds(far: np.ndarray, centres: np.ndarray, focal_px: float) -> FarBounds:
    """Each photo's far bound: as measured, or moved to :func:`parallax_free_depth` where the measured one
    reaches :data:`FAR_REACH` of the triangulation limit (see the module docstring)."""
    measured = np.asarray(far, dtype=np.float64)
    spread = camera_spread(centres)
    limit = triangulation_limit(spread)
    depth = parallax_free_depth(spread, focal_px)
    extended = (measured >= FAR_REACH * limit) & (depth > measured) & (spread > 0)
    return FarBounds(far=np.where(extended, depth, measured), measured=measured, limit=limit, extended_to=depth,
                     extended=extended)
