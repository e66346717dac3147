"""Photo intake for ``nex prepare``: find the photos, read their EXIF, check they fit one camera, copy them
upright (and optionally smaller) into a working folder. Torch-free (pillow + numpy).

* **Files**: PNG and JPEG directly in the folder (sub-folders are not searched); dot-files are skipped
  silently, every other file is listed as ignored.
* **Orientation**: the EXIF orientation tag is applied, so a portrait phone photo is stored upright.
* **One camera**: NeX trains one pinhole camera, so the photos must share an aspect ratio. Portrait and
  landscape photos mixed together are refused (the message names the smaller group); other aspect
  ratio mismatches (crops) are refused too. Photos of one aspect ratio but several resolutions are all
  resized to the smallest one, with a note.
* **Focal length from EXIF**: ``FocalLengthIn35mmFilm`` (tag 0xA405), converted with the image
  diagonal: ``f_px = f35 * sqrt(W^2 + H^2) / sqrt(36^2 + 24^2)`` (the 35 mm equivalent is defined by
  the diagonal field of view, so this also holds for 4:3 and 16:9 photos); otherwise ``FocalLength``
  with ``FocalPlaneXResolution``/``FocalPlaneResolutionUnit`` (sensor pixels per unit, relative to
  ``PixelXDimension``). It is used only when every photo has one and they agree within 2 % (else the
  photos were taken at different zoom settings, which is refused).
* **Output**: a photo that needs no change is copied byte for byte; one that must be rotated, resized
  or converted (16-bit, palette, CMYK, alpha) is re-encoded in its own format (JPEG quality 95).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..io.errors import ImageError, SceneError
from ..io.scene.images import IMAGE_EXTENSIONS, open_image

MIN_PHOTOS = 12
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
FOCAL_AGREEMENT = 0.02
ASPECT_TOLERANCE = 0.01
JPEG_QUALITY = 95
_EXIF_IFD = 0x8769
_TAG_ORIENTATION = 0x0112
_TAG_FOCAL_35MM = 0xA405
_TAG_FOCAL_MM = 0x920A
_TAG_FOCAL_PLANE_X_RES = 0xA20E
_TAG_FOCAL_PLANE_UNIT = 0xA210
_TAG_PIXEL_X_DIMENSION = 0xA002
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit -> mm per unit
_TRANSPOSING = (5, 6, 7, 8)
_FIX = "re-export or re-copy it, or move it out of the folder"


@dataclass(frozen=True)
class PhotoInfo:
    """What intake needs to know about one photo, from its header (sizes are upright)."""

    path: Path
    width: int
    height: int
    orientation: int  # EXIF orientation, 1 = already upright
    focal35_mm: float | None  # EXIF 35 mm equivalent focal length
    focal_px: float | None  # focal length in pixels at (width, height), from EXIF, if known


@dataclass
class PhotoSet:
    """The photos of a folder, checked to fit one camera."""

    photos: list[PhotoInfo]
    ignored: list[str]  # file names in the folder that are not photos
    width: int  # the common upright size they will be brought to (before --width)
    height: int
    exif_focal_px: float | None  # focal in pixels at (width, height) when EXIF gives one for all
    notes: list[str]


def brief_list(items: list[str], limit: int = 8) -> str:
    """The first ``limit`` items joined by commas, with a count of the rest."""
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items) - limit} more)" if len(items) > limit else "")


def scan_folder(folder: Path) -> tuple[list[Path], list[str]]:
    """(photos sorted by name, names of other non-hidden files) directly inside ``folder``."""
    if not folder.is_dir():
        raise SceneError(f"photo folder {folder} does not exist or is not a folder: check the path")
    photos, ignored = [], []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            photos.append(path)
        else:
            ignored.append(path.name + ("/" if path.is_dir() else ""))
    return photos, ignored


def _open(path: Path):
    return open_image(path, "photo", _FIX, missing="it was moved or deleted while nex prepare ran")


def _rational(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _exif_focal(exif_ifd, stored_width: int, stored_height: int) -> tuple[float | None, float | None]:
    """(35 mm equivalent focal in mm, focal in pixels of the stored image) from the EXIF sub-IFD."""
    f35 = _rational(exif_ifd.get(_TAG_FOCAL_35MM))
    if f35 is not None:
        return f35, f35 * math.hypot(stored_width, stored_height) / FULL_FRAME_DIAGONAL_MM
    f_mm = _rational(exif_ifd.get(_TAG_FOCAL_MM))
    x_res = _rational(exif_ifd.get(_TAG_FOCAL_PLANE_X_RES))
    unit_mm = _UNIT_MM.get(int(exif_ifd.get(_TAG_FOCAL_PLANE_UNIT, 2) or 2))
    if f_mm is None or x_res is None or unit_mm is None:
        return None, None
    pixel_x = _rational(exif_ifd.get(_TAG_PIXEL_X_DIMENSION)) or float(max(stored_width, stored_height))
    focal_px = f_mm * x_res / unit_mm * (max(stored_width, stored_height) / pixel_x)
    return None, focal_px


def read_info(path: Path) -> PhotoInfo:
    """Size, orientation and EXIF focal length of one photo (header only)."""
    with _open(path) as im:
        stored_w, stored_h = im.size
        try:
            exif = im.getexif()
            orientation = int(exif.get(_TAG_ORIENTATION, 1) or 1)
            f35, focal_px = _exif_focal(exif.get_ifd(_EXIF_IFD), stored_w, stored_h)
        except Exception:  # a malformed EXIF block: treat as absent
            orientation, f35, focal_px = 1, None, None
    w, h = (stored_h, stored_w) if orientation in _TRANSPOSING else (stored_w, stored_h)
    return PhotoInfo(path=path, width=w, height=h, orientation=orientation, focal35_mm=f35, focal_px=focal_px)


def _shape_name(info: PhotoInfo) -> str:
    return "portrait" if info.height > info.width else "landscape" if info.width > info.height else "square"


def _check_orientations(infos: list[PhotoInfo]) -> None:
    groups = Counter(_shape_name(i) for i in infos)
    if len(groups) < 2:
        return
    (major, n_major), *minors = groups.most_common()
    odd = [i.path.name for i in infos if _shape_name(i) != major]
    kinds = " and ".join(f"{n} {kind}" for kind, n in minors)
    raise ImageError(
        f"the photos mix orientations: {n_major} are {major} but {kinds} ({brief_list(odd)}). NeX trains one "
        f"camera, so all photos must be taken the same way round: remove the odd ones, or rotate them to "
        f"{major} (if the camera was turned on purpose, shoot again holding it one way).")


def _check_aspects(infos: list[PhotoInfo]) -> None:
    ref = infos[0]
    aspect = ref.width / ref.height
    odd = [i for i in infos if abs(i.width / i.height - aspect) > ASPECT_TOLERANCE * aspect]
    if odd:
        raise ImageError(
            f"the photos have different aspect ratios: {ref.path.name} is {ref.width}x{ref.height} but "
            f"{brief_list([f'{i.path.name} ({i.width}x{i.height})' for i in odd])}. Cropped photos cannot share "
            "one camera model: use the uncropped originals, or remove the odd ones.")


def _common_focal(infos: list[PhotoInfo], width: int) -> tuple[float | None, list[str]]:
    """EXIF focal in pixels at ``width``, if every photo has one and they agree; plus notes."""
    known = [i for i in infos if i.focal_px is not None]
    if not known:
        return None, []
    if len(known) < len(infos):
        missing = [i.path.name for i in infos if i.focal_px is None]
        return None, [f"EXIF focal length missing in {len(missing)} photo(s) ({brief_list(missing)}); "
                      "the focal length will be estimated"]
    at_width = [i.focal_px * width / i.width for i in known]
    lo, hi = min(at_width), max(at_width)
    if hi > lo * (1.0 + FOCAL_AGREEMENT):
        wide = min(known, key=lambda i: i.focal_px / i.width)
        tele = max(known, key=lambda i: i.focal_px / i.width)
        label = lambda i: f"{i.focal35_mm:g} mm equivalent" if i.focal35_mm else f"{i.focal_px:.0f} px"  # noqa: E731
        raise ImageError(
            f"the photos were taken at different zoom settings: {wide.path.name} at {label(wide)}, "
            f"{tele.path.name} at {label(tele)}. NeX trains one camera: keep the photos of one zoom "
            "setting (do not zoom while shooting), or pass --focal-px/--fov-deg only if you are sure "
            "they share one lens.")
    return sum(at_width) / len(at_width), []


def inspect_photos(folder: Path, min_photos: int = MIN_PHOTOS, ignore_exif_focal: bool = False) -> PhotoSet:
    """List and check the photos in ``folder``; raises ImageError/SceneError with advice."""
    paths, ignored = scan_folder(folder)
    if not paths:
        also = f" (found only: {brief_list(ignored)})" if ignored else ""
        raise ImageError(f"no photos (.jpg, .jpeg, .png) in {folder}{also}: put at least {min_photos} "
                         "overlapping photos of the scene there (HEIC/RAW: convert them to JPEG first)")
    if len(paths) < min_photos:
        raise ImageError(f"NeX needs at least {min_photos} photos, but {folder} holds only {len(paths)} "
                         f"({brief_list([p.name for p in paths])}): take more overlapping photos of the scene")
    infos = [read_info(p) for p in paths]
    _check_orientations(infos)
    _check_aspects(infos)
    smallest = min(infos, key=lambda i: i.width * i.height)
    notes = []
    sizes = Counter((i.width, i.height) for i in infos)
    if len(sizes) > 1:
        notes.append(f"photos come in {len(sizes)} resolutions ({', '.join(f'{w}x{h}' for w, h in sizes)}); "
                     f"all are resized to the smallest, {smallest.width}x{smallest.height}")
    focal, focal_notes = (None, []) if ignore_exif_focal else _common_focal(infos, smallest.width)
    return PhotoSet(photos=infos, ignored=ignored, width=smallest.width, height=smallest.height,
                    exif_focal_px=focal, notes=notes + focal_notes)


def output_size(width: int, height: int, max_width: int | None) -> tuple[int, int]:
    """(width, height) after shrinking to at most ``max_width`` (never enlarging)."""
    if max_width is None or max_width >= width:
        return width, height
    if max_width < 16:
        raise ImageError(f"--width {max_width} is too small for structure from motion (use >= 16; 800 or more "
                         "works best)")
    return max_width, max(1, int(round(height * max_width / width)))


def _save(im, dest: Path, fmt: str) -> None:
    if fmt == "JPEG":
        im.save(dest, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        im.save(dest, format="PNG", compress_level=1)


def copy_upright(info: PhotoInfo, dest: Path, size: tuple[int, int]) -> None:
    """Decode ``info.path`` fully (a corrupt file raises ImageError naming it) and write it upright at
    ``size`` to ``dest``: a byte copy when nothing has to change, else re-encoded."""
    from PIL import Image, ImageOps

    with _open(info.path) as im:
        fmt = im.format
        try:
            im.load()
            upright = ImageOps.exif_transpose(im) if info.orientation != 1 else im
        except Exception as exc:
            raise ImageError(f"photo {info.path} cannot be decoded, it is probably truncated or corrupt "
                             f"({exc}): {_FIX}") from exc
        unchanged = (info.orientation == 1 and upright.size == size and upright.mode in ("RGB", "L")
                     and fmt in ("JPEG", "PNG"))
        if unchanged:
            shutil.copyfile(info.path, dest)
            return
        rgb = upright.convert("RGB")
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        _save(rgb, dest, "PNG" if dest.suffix.lower() == ".png" else "JPEG")
