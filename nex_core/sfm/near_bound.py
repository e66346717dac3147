"""The near bound of the planes when the nearest content had no 3D points. Torch-free.

The 3D points miss what structure from motion could not match: a glossy table top running up to the
camera, a plain foreground. The planes would then start behind that content and draw it on the first plane,
far off its true parallax (on the suite's shiny tabletop the points' near bound was three times too far, and
the held-out PSNR 4 dB lower than with the true range: docs/scenes.md). So the reference photo's near bound
is also looked for in the photos themselves, by a plane sweep: each of the reference photo's pixels is
compared with its :data:`NEIGHBOURS` nearest photos warped onto fronto-parallel planes from
:data:`SEARCH` x the points' near bound to their far bound, by zero-normalised cross-correlation over
:data:`WINDOW` x :data:`WINDOW` patches (blind to the exposure and white balance a phone changes between
shots). Pixels with texture whose best match is good and clearly better than the rest vote for their depth;
the :data:`PERCENTILE` th percentile of the votes is the photos' near bound, used where it is nearer than
the points'. The votes are points in space: seen from each of the other photos they give that photo's
near bound too (:meth:`NearBound.near_for`), so a scene trained from another reference photo
(``--ref-image``) also starts its planes in front of that content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.cameras import Camera
from ..io.baked.reference_render import bilinear

NEIGHBOURS = 4
SEARCH = 0.2  # sweep down to this fraction of the points' near bound
DEPTHS = 64  # planes of the sweep, even in inverse depth
WINDOW = 5
MIN_TEXTURE = 0.02  # the reference patch's standard deviation (image values in [0, 1])
MIN_NCC = 0.8  # the best match's correlation (the mean over the best half of the neighbours)
MIN_MARGIN = 0.1  # ... and its lead over the median correlation along the pixel's sweep
PERCENTILE = 1.0
MIN_VOTES = 0.02  # the share of the photo's pixels that must vote, else the points' bound stays
NEARER = 0.9  # the photos' bound replaces the points' only when nearer than this fraction of it


@dataclass(frozen=True)
class NearBound:
    """The reference photo's near bound from the points and from the photos."""

    points: float  # the nearest 3D points (their near percentile)
    photos: float | None  # the plane sweep's, None where too few pixels voted
    votes: int  # pixels that voted
    pixels: int
    surface: np.ndarray | None = field(default=None, repr=False)  # [votes, 3] where they placed the content


    @property
    def near(self) -> float:
        """The near bound to use: the photos' where it is clearly nearer than the points'."""
        if self.photos is not None and self.photos < NEARER * self.points:
            return self.photos
        return self.points

    def describe(self) -> str:
        """One line for the report."""
        if self.photos is None:
            return (f"near bound {self.points:.4g}: the nearest 3D points (the photos' plane sweep had too few "
                    f"confident pixels: {self.votes} of {self.pixels})")
        if self.near == self.photos:
            return (f"near bound moved from {self.points:.4g} (the nearest 3D points) to {self.photos:.4g}, "
                    f"where the photos show nearer content ({self.votes} of {self.pixels} pixels matched)")
        return (f"near bound {self.points:.4g}: the nearest 3D points (the photos' plane sweep agrees: "
                f"{self.photos:.4g})")

    def near_for(self, camera: Camera, points_near: float) -> float:
        """Another photo's near bound: its points' (``points_near``), or where the content the sweep found,
        seen from ``camera``, is clearly nearer, the :data:`PERCENTILE` th percentile of its depths there.
        For the reference camera this is :attr:`near`."""
        if self.surface is None or self.photos is None:
            return points_near
        px, py, z, ahead = project(self.surface, camera)
        seen = ahead & (px >= 0) & (px <= camera.width) & (py >= 0) & (py <= camera.height)
        if seen.sum() < MIN_VOTES * self.pixels:
            return points_near
        depth = float(np.percentile(z[seen], PERCENTILE))
        return depth if depth < NEARER * points_near else points_near


def _box(img: np.ndarray, size: int) -> np.ndarray:
    """Mean over ``size`` x ``size`` windows (edge-padded), same shape; arrays [..., H, W]."""
    r = size // 2
    pad = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(r, r), (r, r)], mode="edge")
    c = np.cumsum(np.cumsum(pad, axis=-1), axis=-2)
    c = np.pad(c, [(0, 0)] * (img.ndim - 2) + [(1, 0), (1, 0)])
    h, w = img.shape[-2:]
    total = (c[..., size:size + h, size:size + w] - c[..., :h, size:size + w]
             - c[..., size:size + h, :w] + c[..., :h, :w])
    return total / (size * size)


def ncc(a: np.ndarray, b: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """Zero-normalised cross-correlation of ``a`` and ``b`` [..., H, W] over ``size`` x ``size`` windows."""
    ma, mb = _box(a, size), _box(b, size)
    va = np.maximum(_box(a * a, size) - ma * ma, 0.0)
    vb = np.maximum(_box(b * b, size) - mb * mb, 0.0)
    cov = _box(a * b, size) - ma * mb
    return cov / np.sqrt(va * vb + 1e-12)


def project(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World points [N, 3] in ``camera``'s image -> (x, y in pixels, pixel centres at +0.5; depth z; whether
    in front of the camera). Points behind it get finite but meaningless positions."""
    w2c = camera.w2c
    in_cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = in_cam[:, 2]
    ahead = z > 1e-9
    safe = np.where(ahead, z, 1.0)
    return in_cam[:, 0] / safe * camera.fx + camera.cx, in_cam[:, 1] / safe * camera.fy + camera.cy, z, ahead


def reference_rays(ref: Camera) -> np.ndarray:
    """World-space offsets from the reference camera's centre to the point at depth 1 of each of its pixels,
    [h * w, 3] in row-major pixel order (the point at depth d is ``centre + d * ray``)."""
    rows, cols = np.mgrid[0:ref.height, 0:ref.width]
    x = (cols.ravel() + 0.5 - ref.cx) / ref.fx
    y = (rows.ravel() + 0.5 - ref.cy) / ref.fy
    return np.stack([x, y, np.ones_like(x)], -1) @ ref.c2w[:3, :3].T


def warp_to_reference(image: np.ndarray, camera: Camera, ref: Camera, depth: float,
                      rays: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (grey [H, W], seen by ``camera``) as the reference camera would see it if everything lay on
    the fronto-parallel plane at ``depth`` in front of it -> (warped [h, w], valid [h, w]). ``rays``:
    :func:`reference_rays` of ``ref``, computed once for a sweep."""
    rays = reference_rays(ref) if rays is None else rays
    px, py, _, ahead = project(ref.c2w[:3, 3] + depth * rays, camera)
    px, py = px - 0.5, py - 0.5  # pixel centres at integers, as bilinear() reads them
    h, w = image.shape
    valid = ahead & (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    warped = bilinear(image[..., None], px, py, clamp=True)[:, 0]
    return warped.reshape(ref.height, ref.width), valid.reshape(ref.height, ref.width)


def sweep_depths(near: float, far: float, count: int = DEPTHS) -> np.ndarray:
    """``count`` depths from ``SEARCH * near`` to ``far``, even in inverse depth (nearest first)."""
    return 1.0 / np.linspace(1.0 / (SEARCH * near), 1.0 / far, count)


def near_bound(images: list[np.ndarray], cameras: list[Camera], ref_id: int, near: float, far: float) -> NearBound:
    """The reference photo's near bound from the points' (``near``) and from a plane sweep over the photos
    (RGB [H, W, 3] in [0, 1], the cameras at the images' size); see the module docstring."""
    grey = [np.asarray(im, dtype=np.float64).mean(-1) for im in images]
    ref = cameras[ref_id]
    others = [i for i in range(len(cameras)) if i != ref_id]
    others.sort(key=lambda i: float(np.linalg.norm(cameras[i].center - ref.center)))
    others = others[:NEIGHBOURS]
    pixels = ref.width * ref.height
    if not others:
        return NearBound(points=near, photos=None, votes=0, pixels=pixels)
    depths = sweep_depths(near, far)
    texture = np.sqrt(np.maximum(_box(grey[ref_id] ** 2, WINDOW) - _box(grey[ref_id], WINDOW) ** 2, 0.0))
    scores = np.empty((len(depths), ref.height, ref.width))
    keep = max(1, (len(others) + 1) // 2)
    rays = reference_rays(ref)
    for k, depth in enumerate(depths):
        per_view = []
        for i in others:
            warped, valid = warp_to_reference(grey[i], cameras[i], ref, float(depth), rays)
            per_view.append(np.where(valid, ncc(grey[ref_id], warped), -1.0))
        # The best half of the neighbours: a pixel hidden in one of them still matches in the others.
        scores[k] = np.sort(np.stack(per_view), axis=0)[-keep:].mean(0)
    best = scores.argmax(0)
    top = np.take_along_axis(scores, best[None], 0)[0]
    margin = top - np.median(scores, axis=0)
    confident = (texture >= MIN_TEXTURE) & (top >= MIN_NCC) & (margin >= MIN_MARGIN)
    votes = int(confident.sum())
    if votes < MIN_VOTES * pixels:
        return NearBound(points=near, photos=None, votes=votes, pixels=pixels)
    voted = depths[best[confident]]
    photos = float(np.percentile(voted, PERCENTILE))
    surface = ref.c2w[:3, 3] + voted[:, None] * rays[confident.ravel()]
    return NearBound(points=near, photos=photos, votes=votes, pixels=pixels, surface=surface)
