"""Run configuration: every setting of a training run, its presets, and its TOML form. Torch-free.

A run directory's ``config.toml`` is written before training starts and holds every field below, so
``nex train --config RUN/config.toml`` repeats the run exactly; a run to a time budget (``train.minutes``)
also records there the steps it reached, and repeats its budget (add ``--minutes 0`` to repeat its steps).

Files of version 1 written before the schedule became fractions of the run hold ``train.decay_every``
(steps between decays, 0: a third of the steps); they are still read, as the ``decay_at`` points that
give the same decays for the file's ``train.steps`` (:func:`legacy_decay_points`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config_ranges import FIELDS, check_ranges
from .errors import ConfigError

CONFIG_VERSION = 1
COMPOSITING = ("srgb", "linear")
MIN_MINUTES = 0.05  # the shortest time budget: 3 s, enough to time a few steps of the tiny preset


@dataclass
class DataConfig:
    """Which scene and how it is read."""

    scene: str = ""  # scene directory (images/ + poses_bounds.npy | sparse/0 | transforms.json)
    width: int = 0  # resize images to this width (0: keep the files' width)
    holdout: int = 8  # every holdout-th image is a test view (0: none)
    ref_image: str = ""  # reference view by file name or stem ("": the view nearest the mean camera)
    dmin: float = 0.0  # nearest plane depth (0: from planes.txt or the scene bounds)
    dmax: float = 0.0  # farthest plane depth (0: from planes.txt or the scene bounds)
    invz: str = "auto"  # plane spacing: "auto" (scene's choice), "true" (inverse depth), "false" (depth)
    offset: int = -1  # MPI padding in pixels (-1: planes.txt, else offset_fraction * width)
    offset_fraction: float = 0.2  # default padding as a fraction of the image width (reference: 200/1008)
    min_images: int = 12  # refuse scenes with fewer images


@dataclass
class ModelConfig:
    """The NeX network and the MPI's shape."""

    layers: int = 16  # planes groups that share coefficients and k0 (reference: 16)
    sublayers: int = 12  # planes per layer (reference: 12; 16 x 12 = 192 planes)
    hidden: int = 384  # width of the coefficient MLP F_theta
    mlp_layers: int = 4  # hidden->hidden layers of F_theta after its input layer (reference: 4)
    pos_level: int = 10  # positional-encoding frequencies of x, y (2^pos_level >= MPI size)
    depth_level: int = 8  # positional-encoding frequencies of the plane index
    lrelu_slope: float = 0.01
    sigmoid_offset: float = -1.0  # alpha = sigmoid(logit - offset); < 0: auto (see model.alpha_offset)
    basis: str = "learned"  # "learned" (G_phi), "sh" (real spherical harmonics), "fourier"
    basis_out: int = 8  # N, the number of basis functions / coefficients per colour channel
    basis_hidden: int = 64
    basis_mlp_layers: int = 1  # hidden->hidden layers of G_phi after its input layer
    basis_order: int = 3  # positional-encoding frequencies of the view direction
    # F_theta's form: "mlp" (the reference's positional encoding + MLP), "grid" (per-plane multi-resolution
    # feature grids read bilinearly, then a small MLP of grid_hidden x grid_mlp_layers: several times fewer
    # operations a step) or "auto" (the one that reaches the higher held-out PSNR in the same time on this
    # machine, runtime.device.preferred_field; a run's config.toml records which it chose).
    field: str = "mlp"
    grid_levels: int = 4  # resolutions from grid_base to grid_max (geometric), capped by the MPI's size
    grid_features: int = 4  # features per level
    grid_base: int = 16
    grid_max: int = 64  # finer grids fit the training views' noise and view-specific colour (the suite table)
    grid_hidden: int = 64
    grid_mlp_layers: int = 1
    # Planes per level, geometric from grid_depth_base (coarsest level) to one per plane (finest): coarse
    # levels are shared by neighbouring planes (read linearly between them), as the MLP's encoding of the
    # plane index shares across depth. 0: one grid per plane at every level.
    grid_depth_base: int = 0
    # Where the planes' colours are over-composited: "linear" (decoded to linear light, composited, encoded
    # again: what Blender, engines and glTF clients do with the baked textures, so they show the MPI
    # exactly; equal or higher held-out PSNR on the scenes measured, docs/benchmarks.md) or "srgb" (the
    # reference's: the sRGB-encoded values).
    compositing: str = "linear"


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpoints."""

    steps: int = 60000
    rays: int = 8000  # rays per step (drawn as L-shaped triples)
    images_per_step: int = 1  # training images the rays are drawn from each step (reference: 1)
    lr: float = 1e-3  # coefficient MLP
    lr_k0: float = 1e-2  # explicit k0 (reference: 10 x lr)
    lr_basis: float = 1e-3  # basis MLP (reference: grouped with the coefficient MLP)
    lr_grid: float = 1e-2  # feature grids of the "grid" field
    minutes: float = 0.0  # a time budget: the run's steps follow from its measured step time (0: train.steps)
    decay_rate: float = 0.1
    # where the learning rates are multiplied by decay_rate, as fractions of the run (reference: every third)
    decay_at: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])
    tv_weight: float = 0.03  # total variation of k0
    grid_tv_weight: float = 0.01  # total variation of the grid field's feature grids (field = "grid" only)
    grid_depth_tv_weight: float = 0.0  # L1 of the feature grids' differences between neighbouring planes
    # The fraction of the run over which the grid field's finer levels come in, one after another (coarse
    # to fine: the planes' layout settles on the coarse levels before fine ones can fit detail). 0: all
    # levels from the start.
    grid_coarse_to_fine: float = 0.0
    grad_weight: float = 0.05  # L1 of finite differences over the L-shaped triples
    seed: int = 1
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA and on CPUs with native bf16), "fp32", "bf16"
    log_every: int = 10  # steps between progress events
    evals: int = 0  # held-out PSNR checks per run, at 1/evals, 2/evals, ... of it (0 or 1: only at the end);
    # a --minutes run makes fewer where they would take over 15 % of its budget (training/loop.py)
    eval_every: int = 0  # steps between held-out PSNR checks, besides those of evals (0: none)
    checkpoints: int = 0  # checkpoints per run, at 1/checkpoints, 2/checkpoints, ... of it (and at the end)
    checkpoint_every: int = 1000  # steps between checkpoints, besides those of checkpoints (0: none)
    keep_checkpoints: int = 2
    render_chunk: int = 4096  # rays per chunk when rendering whole images
    # Per-photo colour compensation (model/appearance.py), in training only: the bake and renderers use the
    # identity. "affine": a 3x3 + bias per training photo, centred so that their mean is the identity (the
    # default: it absorbs phone captures' exposure and white-balance drift and costs nothing measurable on
    # captures without drift; the suite table is in docs/benchmarks.md). "off": the reference's.
    appearance: str = "affine"  # "off" or "affine"
    appearance_weight: float = 1e-3  # L2 pull of each photo's transform towards the identity
    lr_appearance: float = 1e-2  # each photo's transform sees only its own rays: a higher rate than the MLP's


@dataclass
class RunConfig:
    """Everything a run needs."""

    preset: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION


def _paper() -> RunConfig:
    return RunConfig(preset="paper", data=DataConfig(width=1008))


def _fast() -> RunConfig:
    """A CPU-friendly setting: 32 planes, smaller MLP, rays from many images, faster k0/basis rates, and
    one learning-rate decay late (at 5/6 of the run: step 1000 of 1200) instead of the reference's every
    third, which leaves the last two thirds of a short run at rates too small to move (higher held-out PSNR
    in the same time on two scenes; the sweep is in docs/benchmarks.md). Evaluations and checkpoints are
    six a run, so more steps or minutes add training, not checks. F_theta's form follows the machine
    (``field = "auto"``): the MLP where its products run in bf16, the grid field elsewhere (it ends higher
    there on every suite scene in the same time; docs/benchmarks.md)."""
    return RunConfig(
        preset="fast",
        data=DataConfig(),
        model=ModelConfig(layers=8, sublayers=4, hidden=128, mlp_layers=4, pos_level=8, depth_level=5,
                          field="auto"),
        train=TrainConfig(steps=1200, rays=2001, images_per_step=8, lr=1e-3, lr_k0=3e-2, lr_basis=1e-2,
                          decay_at=[5 / 6], evals=6, eval_every=0, checkpoints=6, checkpoint_every=0,
                          log_every=10),
    )


def _tiny() -> RunConfig:
    """For tests: trains in seconds on a CPU."""
    return RunConfig(
        preset="tiny",
        data=DataConfig(width=80),
        model=ModelConfig(layers=4, sublayers=2, hidden=64, mlp_layers=2, pos_level=7, depth_level=3,
                          basis_hidden=32),
        train=TrainConfig(steps=150, rays=600, images_per_step=4, lr=2e-3, lr_k0=3e-2, lr_basis=1e-2,
                          eval_every=0, checkpoint_every=50, log_every=10),
    )


PRESETS = {"tiny": _tiny, "fast": _fast, "paper": _paper}


def preset(name: str) -> RunConfig:
    """A fresh RunConfig for a named preset (tiny, fast, paper)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a RunConfig from a dict (as read from TOML), rejecting unknown keys and versions."""
    version = raw.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigError(f"{source}: config version {version} is not supported (this nex reads "
                          f"version {CONFIG_VERSION}); re-create the run with this version of nex")
    base = preset(raw.get("preset", "paper")) if raw.get("preset") in PRESETS else RunConfig()
    out = RunConfig(preset=str(raw.get("preset", base.preset)), version=CONFIG_VERSION)
    for section_name, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        section = raw.get(section_name, {})
        known = {f.name: f for f in fields(cls)}
        unknown = set(section) - set(known) - (set(LEGACY_TRAIN_KEYS) if section_name == "train" else set())
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) in [{section_name}]: {', '.join(sorted(unknown))}; "
                              "check their spelling or remove them (`nex train --help` lists the settings)")
        if section_name == "train":
            section = _legacy_train(section, base.train.steps, source)
        values = dataclasses.asdict(getattr(base, section_name))
        if section:
            values.update({k: v for k, v in ABSENT_MEANS[section_name].items() if k not in section})
        for key, value in section.items():
            values[key] = _coerce(value, known[key].type, f"{source} [{section_name}] {key}")
        setattr(out, section_name, cls(**values))
    validate(out)
    return out


LEGACY_TRAIN_KEYS = ("decay_every",)

# Settings added after configs were first written, with what their absence means in a file that has the
# section: how the run was trained before the setting existed (a run's config.toml lists every key it knew).
ABSENT_MEANS: dict[str, dict[str, Any]] = {
    "data": {},
    "model": {"compositing": "srgb",  # nex composited sRGB values
              "grid_depth_base": 0},  # one grid per plane at every level
    "train": {"appearance": "off",  # no per-photo colour compensation
              "grid_tv_weight": 0.0,  # no total variation of the grid field's feature grids
              "grid_depth_tv_weight": 0.0,  # nor across its planes
              "grid_coarse_to_fine": 0.0},  # every level from the start
}


def legacy_decay_points(decay_every: int, steps: int) -> list[float]:
    """The ``decay_at`` fractions that decay where ``decay_every`` did in a run of ``steps`` steps (0: every
    third of the run). Exact: ``step / steps >= k * decay_every / steps`` just when ``step >= k * decay_every``."""
    if decay_every <= 0:
        return [1 / 3, 2 / 3]
    return [k * decay_every / steps for k in range(1, -(-steps // decay_every))]


def _legacy_train(section: dict[str, Any], base_steps: int, source: str) -> dict[str, Any]:
    """A [train] section with the old ``decay_every`` turned into ``decay_at``."""
    if "decay_every" not in section:
        return section
    section = dict(section)
    if "decay_at" in section:
        raise ConfigError(f"{source} [train]: decay_every (the old form) and decay_at are both given; "
                          "keep decay_at (fractions of the run) and remove decay_every")
    every = _coerce(section.pop("decay_every"), "int", f"{source} [train] decay_every")
    steps = _coerce(section.get("steps", base_steps), "int", f"{source} [train] steps")
    if every < 0 or steps < 1:
        raise ConfigError(f"{source} [train]: decay_every = {every} with steps = {steps}: need decay_every >= 0 "
                          "and steps >= 1 (better: replace decay_every by decay_at, fractions of the run)")
    section["decay_at"] = legacy_decay_points(every, steps)
    return section


def _coerce(value: Any, type_name: Any, where: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            return str(value)
        if kind == "list[float]":
            if isinstance(value, (str, bytes)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          for v in value):
                raise ValueError
            return [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {kind}, got {value!r}") from None
    return value


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError for settings that cannot work, naming the setting and what it accepts."""
    m, t, d = cfg.model, cfg.train, cfg.data
    checks = [
        (m.layers >= 1 and m.sublayers >= 1, "model.layers and model.sublayers must be >= 1"),
        (m.hidden >= 1 and m.mlp_layers >= 0, "model.hidden must be >= 1 and model.mlp_layers >= 0"),
        (m.basis in ("learned", "sh", "fourier"), f"model.basis must be learned, sh or fourier, not {m.basis!r}"),
        (m.field in FIELDS, f"model.field must be {', '.join(FIELDS[:-1])} or {FIELDS[-1]}, not {m.field!r}"),
        (m.compositing in COMPOSITING, f"model.compositing must be srgb or linear, not {m.compositing!r}"),
        (m.field == "mlp" or (m.grid_levels >= 1 and m.grid_features >= 1 and 2 <= m.grid_base <= m.grid_max
                               and m.grid_hidden >= 1 and m.grid_mlp_layers >= 0),
         "model.grid_*: need grid_levels, grid_features, grid_hidden >= 1, 2 <= grid_base <= grid_max"),
        (1 <= m.basis_out <= 16, "model.basis_out must be between 1 and 16"),
        (t.steps >= 1, "train.steps must be >= 1"),
        (t.minutes == 0 or t.minutes >= MIN_MINUTES,
         f"train.minutes must be 0 (train.steps decides) or at least {MIN_MINUTES} (the step time is measured "
         f"over the first seconds)"),
        (t.rays >= 3, "train.rays must be >= 3 (rays come in L-shaped triples)"),
        (t.images_per_step >= 1, "train.images_per_step must be >= 1"),
        (t.precision in ("auto", "fp32", "bf16"), "train.precision must be auto, fp32 or bf16"),
        (d.invz in ("auto", "true", "false"), "data.invz must be auto, true or false"),
        (d.width >= 0, "data.width must be >= 0"),
        (d.dmin >= 0 and d.dmax >= 0, "data.dmin and data.dmax must be >= 0 (0 = automatic)"),
        (not (d.dmin and d.dmax) or d.dmin < d.dmax, "data.dmin must be smaller than data.dmax"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_ranges(cfg)  # then every field against its range (config_ranges.RULES)


def save(cfg: RunConfig, path: Path) -> None:
    """Write the config as TOML (atomically)."""
    import tomli_w  # imported here: readers (the Blender add-on) do not have it

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(tomli_w.dumps(to_dict(cfg)), encoding="utf-8")
    tmp.replace(path)


def load(path: Path) -> RunConfig:
    """Read a config.toml, with a clear error naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or delete the file") from None
    return from_dict(raw, source=str(path))


RESUMABLE = ("train.steps", "train.minutes", "train.device", "train.precision", "train.log_every",
             "train.evals", "train.eval_every", "train.checkpoints", "train.checkpoint_every",
             "train.keep_checkpoints", "train.render_chunk")
"""The settings a resumed run may change: how long, where and how it trains and reports, never what it
learns from or what it learns (every other key, and the preset's name, is fixed once a run has a checkpoint)."""


def flat(cfg: RunConfig) -> dict[str, Any]:
    """Every setting as ``{"section.key": value}``, plus ``preset``."""
    raw = to_dict(cfg)
    out: dict[str, Any] = {"preset": raw["preset"]}
    for section in ("data", "model", "train"):
        out.update({f"{section}.{key}": value for key, value in raw[section].items()})
    return out


def changed_settings(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The settings whose values differ: ``{"section.key": (old, new)}``, in config order."""
    a, b = flat(old), flat(new)
    return {key: (a[key], b[key]) for key in a if a[key] != b[key]}


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """``train.steps 150 -> 300, train.device auto -> cpu``."""
    return ", ".join(f"{key} {old!r} -> {new!r}" if isinstance(old, str) else f"{key} {old} -> {new}"
                     for key, (old, new) in changes.items())


def resume_changes(old: RunConfig, new: RunConfig, source: str = "resume") -> dict[str, tuple[Any, Any]]:
    """The changes from a run's config to the one it resumes with; ConfigError naming every changed
    setting outside :data:`RESUMABLE` (it would change the model or its data)."""
    changes = changed_settings(old, new)
    fixed = {key: value for key, value in changes.items() if key not in RESUMABLE}
    if fixed:
        raise ConfigError(f"{source}: a resume cannot change {describe_changes(fixed)} (the run was trained "
                          f"with other settings, and these change the model or its data); start a new run in "
                          f"another --out directory for them. A resume may change only {', '.join(RESUMABLE)}")
    return changes


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply ``{"section.key": value}`` overrides (from the command line), validating names and types."""
    raw = to_dict(cfg)
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in ("data", "model", "train") or key not in raw[section]:
            raise ConfigError(f"unknown setting {dotted!r}: check its spelling (a run's config.toml lists every "
                              "setting by section)")
        raw[section][key] = value
    return from_dict(raw, source="command line")
