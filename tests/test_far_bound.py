"""The far bound of the planes (nex_core.sfm.far_bound): moved out only where the farthest 3D points reach
the triangulation limit, to the depth beyond which nothing moves more than half a pixel between photos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nex_core.sfm import far_bound
from nex_core.sfm.far_bound import far_bounds, parallax_free_depth, triangulation_limit

FOCAL = 500.0


def _centres(spread: float) -> np.ndarray:
    """Cameras on a line along x, ``spread`` from end to end (the check's spread: twice the largest
    distance from the mean)."""
    return np.stack([np.linspace(-spread / 2, spread / 2, 5), np.zeros(5), np.zeros(5)], axis=1)


def _pixel_motion(depth: float, spread: float) -> float:
    """How far a point straight ahead at ``depth`` moves between the two end cameras (pinhole, looking +z)."""
    point = np.array([0.0, 0.0, depth])
    xs = [FOCAL * (point[0] - c[0]) / (point[2] - c[2]) for c in _centres(spread)[[0, -1]]]
    return abs(xs[1] - xs[0])


def test_beyond_the_parallax_free_depth_nothing_moves_more_than_half_a_pixel():
    spread = 0.8
    depth = parallax_free_depth(spread, FOCAL)
    assert _pixel_motion(depth, spread) == pytest.approx(far_bound.PARALLAX_PX, rel=1e-9)
    assert _pixel_motion(2 * depth, spread) < far_bound.PARALLAX_PX / 1.9
    assert _pixel_motion(depth / 2, spread) > far_bound.PARALLAX_PX * 1.9


def test_a_point_at_the_triangulation_limit_is_seen_under_the_mappers_angle():
    spread = 0.8
    limit = triangulation_limit(spread)
    ends = _centres(spread)[[0, -1]]
    rays = [np.array([0.0, 0.0, limit]) - c for c in ends]
    angle = math.degrees(math.acos(rays[0] @ rays[1] / (np.linalg.norm(rays[0]) * np.linalg.norm(rays[1]))))
    assert angle == pytest.approx(far_bound.TRIANGULATION_ANGLE_DEG, rel=0.01)


def test_only_far_bounds_near_the_limit_move_out():
    spread = 1.0
    limit = triangulation_limit(spread)
    measured = np.array([0.1, 0.39, 0.41, 0.9]) * limit
    got = far_bounds(measured, _centres(spread), FOCAL)
    assert got.limit == pytest.approx(limit)
    assert got.extended.tolist() == [False, False, True, True]
    np.testing.assert_allclose(got.far, [measured[0], measured[1], 2 * FOCAL * spread, 2 * FOCAL * spread])
    np.testing.assert_array_equal(got.measured, measured)
    assert "(10% of the triangulation limit" in got.describe(0) and "moved from" not in got.describe(0)
    assert "moved from" in got.describe(3) and "90% of the triangulation limit" in got.describe(3)


def test_a_far_bound_already_beyond_the_parallax_free_depth_stays():
    # A very short focal (a tiny image): the parallax-free depth is nearer than the points; keep the points'.
    spread = 1.0
    measured = np.array([0.8 * triangulation_limit(spread)])
    got = far_bounds(measured, _centres(spread), focal_px=5.0)
    assert not got.extended[0] and got.far[0] == measured[0]


def test_cameras_that_did_not_move_change_nothing():
    got = far_bounds(np.array([10.0, 20.0]), np.zeros((2, 3)), FOCAL)
    assert not got.extended.any() and got.far.tolist() == [10.0, 20.0]
