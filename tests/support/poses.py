"""Random camera poses for the renderer and baking tests."""

from __future__ import annotations

import numpy as np


def rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random 3x3 rotation about a random axis by at most ``max_deg`` degrees."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def random_pose(rng: np.random.Generator, max_deg: float = 10.0, max_t: float = 0.4) -> np.ndarray:
    """A random 4x4 rigid transform: :func:`rotation` and a translation of at most ``max_t`` per axis."""
    m = np.eye(4)
    m[:3, :3] = rotation(rng, max_deg)
    m[:3, 3] = rng.uniform(-max_t, max_t, 3)
    return m
