"""A run's scene and MPI geometry from its config, and the settings its checkpoints must match."""

from __future__ import annotations

from pathlib import Path

from ..io import config as config_mod
from ..io.config import RunConfig
from ..io.errors import ConfigError
from ..io.mpi_geometry import MPIGeometry, plane_depths
from ..io.scene import Scene, load_scene


def load_scene_for(cfg: RunConfig) -> Scene:
    """Load the configured scene with the configured overrides."""
    d = cfg.data
    if not d.scene:
        raise ConfigError("no scene given: pass a scene directory (data.scene)")
    invz = None if d.invz == "auto" else d.invz == "true"
    return load_scene(Path(d.scene), width=d.width or None, holdout=d.holdout, ref_image=d.ref_image or None,
                      dmin=d.dmin or None, dmax=d.dmax or None, invz=invz,
                      offset=d.offset if d.offset >= 0 else None, min_images=d.min_images)


def build_geometry(scene: Scene, cfg: RunConfig) -> MPIGeometry:
    """The MPI geometry for a scene: the reference camera, padding and plane depths."""
    spec = scene.planes
    ref = scene.cameras[scene.ref_id]
    offset = spec.offset if spec.offset is not None else int(round(cfg.data.offset_fraction * ref.width))
    n = cfg.model.layers * cfg.model.sublayers
    return MPIGeometry.from_camera(ref, offset, plane_depths(spec.dmin, spec.dmax, n, spec.invz))


def model_settings(cfg: RunConfig, geom: MPIGeometry) -> dict:
    """What a checkpoint's tensors depend on (compared on resume)."""
    m = cfg.model
    return {"model": config_mod.to_dict(cfg)["model"], "mpi": [geom.width, geom.height, geom.offset,
            m.layers * m.sublayers, [round(x, 6) for x in geom.depths]]}
