"""Checks against a suite render's truth.json (numpy only): where the calibration markers are seen, and
how far a reconstruction's cameras are from the true ones after a similarity alignment."""

from __future__ import annotations

import numpy as np

from suite import phone

MARKER_RADIUS_PX = 1.6  # radius of a marker's bright disc in the final frame, seen from the rig centre
MARKER_RING = 3.0  # the black backing disc's radius, in marker radii


def project_points(truth: dict, view: dict, points: np.ndarray, distorted: bool = True) -> np.ndarray:
    """Pixel coordinates [N, 2] of world ``points`` in ``view`` (through the lens when ``distorted``)."""
    c2w = np.asarray(view["c2w"], dtype=np.float64)
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    k1, k2 = (truth["k1"], truth["k2"]) if distorted else (0.0, 0.0)
    return phone.project(cam, truth["fx"], truth["cx"], truth["cy"], k1, k2)


def marker_centre(luma: np.ndarray, guess: np.ndarray, radius: float, iterations: int = 3) -> np.ndarray:
    """Brightness-weighted centroid of the bright marker disc near ``guess`` (x, y pixel coordinates,
    centres at +0.5), above the window's darkest level, re-centred ``iterations`` times."""
    h, w = luma.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    centre = np.asarray(guess, dtype=np.float64)
    for _ in range(iterations):
        inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius ** 2
        weight = np.where(inside, luma, 0.0)
        weight = np.where(inside, np.maximum(weight - luma[inside].min(), 0.0), 0.0)
        total = weight.sum()
        if total <= 0:
            return centre
        centre = np.array([(weight * xx).sum() / total, (weight * yy).sum() / total])
    return centre


def marker_errors(truth: dict, images: dict[str, np.ndarray], margin: float = 6.0) -> list[float]:
    """Distances (px) between each visible marker's projected and observed centre, over all views whose
    image is in ``images`` (linear luminance [H, W], upright), markers within ``margin`` of the border
    skipped."""
    points = np.asarray(truth["points"], dtype=np.float64)
    errors = []
    for view in truth["views"]:
        if view["name"] not in images or not view["visible_points"]:
            continue
        luma = images[view["name"]]
        idx = np.asarray(view["visible_points"])
        uv = project_points(truth, view, points[idx])
        for p in uv:
            if not (margin <= p[0] <= truth["width"] - margin and margin <= p[1] <= truth["height"] - margin):
                continue
            found = marker_centre(luma, p, radius=0.8 * MARKER_RING * MARKER_RADIUS_PX)
            errors.append(float(np.linalg.norm(found - p)))
    return errors


# --------------------------------------------------------------------------------------------------
# Pose accuracy


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (scale, R, t) minimising |dst - (scale R src + t)|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ fix @ vt
    scale = float(np.trace(np.diag(sig) @ fix) / s.var(0).sum())
    return scale, rot, mu_d - scale * rot @ mu_s


def _frame_points(c2w: np.ndarray) -> np.ndarray:
    """Centres plus points one camera spread along each camera's viewing and down axes: a forward-facing
    rig's centres are nearly coplanar, so the axis points (scaled by each set's own spread, so they
    transform as a similarity) pin the alignment's tilt."""
    c = c2w[:, :3, 3]
    spread = np.linalg.norm(c - c.mean(0), axis=1).max()
    return np.concatenate([c, c + spread * c2w[:, :3, 2], c + spread * c2w[:, :3, 1]])


def similarity(est: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) of the similarity that best maps cameras ``est`` [N, 4, 4] onto ``truth``."""
    return umeyama(_frame_points(est), _frame_points(truth))


def pose_errors(est: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rotation errors in degrees, centre errors as a fraction of the true camera spread) after aligning
    ``est`` [N, 4, 4] to ``truth`` by a similarity."""
    scale, rot, t = similarity(est, truth)
    centres = scale * est[:, :3, 3] @ rot.T + t
    spread = np.linalg.norm(truth[:, :3, 3] - truth[:, :3, 3].mean(0), axis=1).max()
    rel = np.einsum("nij,nik->njk", rot @ est[:, :3, :3], truth[:, :3, :3])
    angles = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)))
    return angles, np.linalg.norm(centres - truth[:, :3, 3], axis=1) / spread
