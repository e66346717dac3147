"""The pycolmap steps of ``nex prepare``: features, matching, mapping, undistortion. Torch-free.

Every pycolmap call runs in a worker thread (:class:`Runner`) with a ``CancellationToken``, so a stop
request or Ctrl-C cancels it mid-way; features and matches are computed in batches so that progress
events (:class:`Phase`) come with counts and an ETA. Needs pycolmap >= 4.0.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..io.errors import CancelledError, ReconstructionError, SceneError
from ..io.events import EventLog
from .photos import brief_list

CAMERA_MODEL = "RADIAL"  # f, cx, cy, k1, k2: a phone main camera needs k2 as well as k1 (kept if it pays: lens.py)
EXHAUSTIVE_MAX_IMAGES = 60
MIN_VERIFIED_INLIERS = 15  # COLMAP's TwoViewGeometryOptions.min_num_inliers default


def import_pycolmap():
    """pycolmap, or a SceneError saying how to get a version that has what ``nex prepare`` uses."""
    try:
        import pycolmap
    except ImportError as exc:
        raise SceneError("`nex prepare` needs the pycolmap package: `pip install 'pycolmap>=4'`") from exc
    if not hasattr(pycolmap, "CancellationToken") or not hasattr(pycolmap, "match_image_pairs"):
        raise SceneError(f"`nex prepare` needs pycolmap 4.0 or newer (found {pycolmap.__version__}): "
                         "`pip install -U 'pycolmap>=4'`")
    return pycolmap


@dataclass
class CameraPrior:
    """The one camera all photos share, as COLMAP starts from it."""

    width: int
    height: int
    focal_px: float | None  # None: unknown, COLMAP guesses 1.2 x the larger side
    source: str  # "--focal-px", "--fov-deg", "exif" or "estimated"
    fixed: bool  # held fixed during bundle adjustment

    def params(self) -> str:
        """COLMAP ``camera_params`` for RADIAL (f, cx, cy, k1, k2); empty to let COLMAP guess."""
        if self.focal_px is None:
            return ""
        return f"{self.focal_px!r},{self.width / 2.0!r},{self.height / 2.0!r},0,0"


@dataclass
class StepSettings:
    """The knobs of the pycolmap steps."""

    max_features: int = 8192
    num_threads: int = -1
    seed: int = 0


# --------------------------------------------------------------------------------------------------
# Progress, cancellation


class Phase:
    """Progress events of one phase: ``start``, throttled ``progress`` with an ETA, ``end``."""

    def __init__(self, log: EventLog, name: str, total: int, unit: str, min_interval_s: float = 0.5):
        self.log, self.name, self.total, self.unit = log, name, int(total), unit
        self.min_interval_s = min_interval_s
        self.start_time = time.perf_counter()
        self.last_emit = -math.inf
        log.emit(name, "start", step=0, steps=self.total, unit=unit)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def update(self, done: int, **extra: Any) -> None:
        """Report ``done`` of ``total`` (at most every ``min_interval_s``, but always the last)."""
        now = time.perf_counter()
        if done < self.total and now - self.last_emit < self.min_interval_s:
            return
        self.last_emit = now
        elapsed = self.elapsed()
        eta = elapsed / done * (self.total - done) if done > 0 else None
        self.log.emit(self.name, "progress", step=int(done), steps=self.total, unit=self.unit,
                      elapsed_s=round(elapsed, 3), eta_s=None if eta is None else round(eta, 1), **extra)

    def end(self, **summary: Any) -> float:
        elapsed = self.elapsed()
        self.log.emit(self.name, "end", elapsed_s=round(elapsed, 3), **summary)
        return elapsed


class Runner:
    """Runs pycolmap calls in a worker thread so that a stop request (or Ctrl-C) can cancel them.

    The calling thread waits in short joins, polling ``should_stop``; this keeps Python's signal
    handlers (which run only in the main thread) responsive while COLMAP works with the GIL released.
    """

    def __init__(self, should_stop: Callable[[], bool] | None, poll_s: float = 0.1):
        self.should_stop = should_stop or (lambda: False)
        self.poll_s = poll_s

    def check(self, where: str) -> None:
        """Raise CancelledError if a stop was requested."""
        if self.should_stop():
            raise CancelledError(f"nex prepare was stopped during {where}; the scene folder was left as it was")

    def call(self, where: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """``fn(**kwargs, cancellation_token=token)`` in a thread; the token is cancelled on a stop."""
        token = import_pycolmap().CancellationToken()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn(**kwargs, cancellation_token=token)
            except BaseException as exc:  # handed to the calling thread
                box["error"] = exc

        worker = threading.Thread(target=target, name=f"nex-prepare-{where}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(self.poll_s)
                if self.should_stop():
                    token.cancel()
        except KeyboardInterrupt:
            token.cancel()
            worker.join()
            raise CancelledError(f"nex prepare was interrupted during {where}; the scene folder was left as "
                                 "it was") from None
        self.check(where)
        error = box.get("error")
        if isinstance(error, InterruptedError):  # pycolmap's answer to a cancelled token
            raise CancelledError(f"nex prepare was stopped during {where}; the scene folder was left as it was")
        if error is not None:
            raise error
        return box.get("value")


def batches(items: list, max_batches: int, min_size: int) -> list[list]:
    """``items`` in consecutive batches: at most ``max_batches``, each (but the last) >= ``min_size``."""
    size = max(min_size, math.ceil(len(items) / max_batches))
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------------
# Features


def extract_features(db: Path, image_dir: Path, names: list[str], prior: CameraPrior, settings: StepSettings,
                     log: EventLog, runner: Runner) -> int:
    """SIFT features of every photo into ``db``, all sharing one camera; returns the keypoint count."""
    pycolmap = import_pycolmap()
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = settings.num_threads
    extraction.sift.max_num_features = settings.max_features
    phase = Phase(log, "features", len(names), "photos")
    camera_id = None
    done = 0
    for batch in batches(names, max_batches=25, min_size=4):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = CAMERA_MODEL
        reader.camera_params = prior.params()
        if camera_id is not None:  # later batches join the camera the first one created
            reader.existing_camera_id = camera_id
        runner.call("feature extraction", pycolmap.extract_features, database_path=db, image_path=image_dir,
                    image_names=batch, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                    extraction_options=extraction)
        if camera_id is None:
            camera_id = _first_camera_id(db)
        done += len(batch)
        phase.update(done)
    keypoints = _count_keypoints(db, names)
    phase.end(keypoints=keypoints, mean_per_photo=round(keypoints / len(names), 1))
    return keypoints


def _first_camera_id(db: Path) -> int:
    with import_pycolmap().Database.open(db) as database:
        return int(database.read_all_cameras()[0].camera_id)


def _count_keypoints(db: Path, names: list[str]) -> int:
    with import_pycolmap().Database.open(db) as database:
        missing = sorted(set(names) - {im.name for im in database.read_all_images()})
        if missing:
            raise ReconstructionError(f"COLMAP could not read {len(missing)} photo(s): {brief_list(missing)}; "
                                      "re-export them as ordinary 8-bit JPEG or PNG files")
        return int(database.num_keypoints())


# --------------------------------------------------------------------------------------------------
# Matching


def choose_matcher(requested: str, n_images: int) -> str:
    """``auto``: exhaustive up to EXHAUSTIVE_MAX_IMAGES photos, sequential above."""
    if requested != "auto":
        return requested
    return "exhaustive" if n_images <= EXHAUSTIVE_MAX_IMAGES else "sequential"


def image_pairs(db: Path, matcher: str) -> tuple[list[tuple[str, str]], dict[int, str]]:
    """The pairs to match (by name) and the database's image id -> name map."""
    pycolmap = import_pycolmap()
    with pycolmap.Database.open(db) as database:
        id_to_name = {int(im.image_id): im.name for im in database.read_all_images()}
        if matcher == "exhaustive":
            generator = pycolmap.ExhaustivePairGenerator(pycolmap.ExhaustivePairingOptions(), database)
        else:
            pairing = pycolmap.SequentialPairingOptions()  # quadratic overlap: next, then ~2, 4, 8... on
            pairing.loop_detection = False  # would need a vocabulary tree
            generator = pycolmap.SequentialPairGenerator(pairing, database)
        pairs = [(id_to_name[int(a)], id_to_name[int(b)]) for a, b in generator.all_pairs()]
    return pairs, id_to_name


def match_features(db: Path, work: Path, matcher: str, settings: StepSettings, log: EventLog,
                   runner: Runner) -> tuple[int, dict[str, int]]:
    """Match and verify the pairs in batches; returns (pairs matched, verified partners per photo)."""
    pycolmap = import_pycolmap()
    pairs, id_to_name = image_pairs(db, matcher)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = settings.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = settings.seed
    phase = Phase(log, "matching", len(pairs), "pairs")
    pairs_file = work / "pairs.txt"
    done = 0
    for batch in batches(pairs, max_batches=25, min_size=100):
        pairs_file.write_text("".join(f"{a} {b}\n" for a, b in batch), encoding="utf-8")
        runner.call("feature matching", pycolmap.match_image_pairs, database_path=db, matching_options=matching,
                    pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pairs_file)),
                    verification_options=verification)
        done += len(batch)
        phase.update(done)
    partners = verified_partners(db, id_to_name)
    phase.end(matcher=matcher, pairs=len(pairs), verified_pairs=sum(partners.values()) // 2)
    return len(pairs), partners


def verified_partners(db: Path, id_to_name: dict[int, str]) -> dict[str, int]:
    """For every photo, how many others it shares a geometrically verified pair with."""
    pycolmap = import_pycolmap()
    config = pycolmap.TwoViewGeometryConfiguration
    unusable = {config.UNDEFINED, config.DEGENERATE, config.WATERMARK}
    counts = {name: 0 for name in id_to_name.values()}
    with pycolmap.Database.open(db) as database:
        pair_ids, geometries = database.read_two_view_geometries()
    for pair_id, geometry in zip(pair_ids, geometries):
        if geometry.config in unusable or len(geometry.inlier_matches) < MIN_VERIFIED_INLIERS:
            continue
        for image_id in pycolmap.pair_id_to_image_pair(pair_id):
            counts[id_to_name[int(image_id)]] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# Mapping, undistortion


def mapper_options(prior: CameraPrior, settings: StepSettings, min_images: int, refine_distortion: bool = True):
    """IncrementalPipelineOptions: seeded; a known focal length held fixed; k1, k2 refined unless told not to
    (``--lens none``: they stay 0)."""
    pycolmap = import_pycolmap()
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = settings.num_threads
    mapping.random_seed = settings.seed
    mapping.min_model_size = max(3, min(10, min_images))
    mapping.ba_refine_focal_length = not prior.fixed
    mapping.ba_refine_principal_point = False
    mapping.ba_refine_extra_params = refine_distortion
    mapping.mapper.abs_pose_refine_focal_length = not prior.fixed
    return mapping


def run_mapping(db: Path, image_dir: Path, work: Path, prior: CameraPrior, n_connected: int, min_images: int,
                settings: StepSettings, log: EventLog, runner: Runner, refine_distortion: bool = True):
    """Incremental mapping; returns the reconstruction with the most photos, or None if there is none."""
    pycolmap = import_pycolmap()
    phase = Phase(log, "mapping", n_connected, "photos")
    placed = [0]

    def on_initial_pair() -> None:
        placed[0] = max(placed[0], 2)
        phase.update(min(placed[0], n_connected))

    def on_next_image() -> None:
        placed[0] += 1
        phase.update(min(placed[0], n_connected))

    options = mapper_options(prior, settings, min_images, refine_distortion)
    models = runner.call("mapping", pycolmap.incremental_mapping, database_path=db, image_path=image_dir,
                         output_path=work / "models", options=options,
                         initial_image_pair_callback=on_initial_pair, next_image_callback=on_next_image)
    if not models:
        phase.end(models=0)
        return None
    best = max(models.values(), key=lambda rec: rec.num_reg_images())
    phase.end(models=len(models), registered=int(best.num_reg_images()), points3d=int(best.num_points3D()))
    return best


def undistort(model_dir: Path, image_dir: Path, out_dir: Path, n_images: int, settings: StepSettings,
              log: EventLog, runner: Runner) -> None:
    """``undistort_images`` -> ``out_dir/images`` and ``out_dir/sparse`` (PINHOLE camera)."""
    pycolmap = import_pycolmap()
    phase = Phase(log, "undistortion", n_images, "photos")
    runner.call("undistortion", pycolmap.undistort_images, output_path=out_dir, input_path=model_dir,
                image_path=image_dir, output_type="COLMAP", num_threads=settings.num_threads)
    phase.update(n_images)
    phase.end()
