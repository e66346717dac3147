"""A run folder's ``config.toml`` at the start of training: written for a new run; on resume, the settings
a resume may change (``config.RESUMABLE``) are applied, recorded in the file and as an event, and any other
difference is refused."""

from __future__ import annotations

from pathlib import Path

from ..io import config as config_mod
from ..io.config import RunConfig
from ..io.errors import ConfigError
from ..io.events import EventLog
from ..io.run_files import RunFiles
from ..runtime.checkpoint import list_checkpoints

DECAY_WARNING = ("train.decay_every = 0: the learning rate now decays every third of the new total; the steps "
                 "trained so far keep their old schedule, so this run ends below one trained for train.steps "
                 "from the start (a run with an explicit decay_every repeats it exactly)")


def prepare_config_file(cfg: RunConfig, run_dir: Path, events: EventLog) -> None:
    """Write ``cfg`` to the run's config.toml, or, when the run has checkpoints, check it against the
    config.toml there: ConfigError for a change outside ``config.RESUMABLE`` or ``train.steps`` below the
    newest checkpoint's step; otherwise save it and emit ``settings_changed`` (``changes``: key -> old,
    new) when something changed."""
    path = RunFiles(run_dir).config
    found = list_checkpoints(run_dir)
    if not (path.exists() and found):
        config_mod.save(cfg, path)
        return
    existing = config_mod.load(path)
    changes = config_mod.resume_changes(existing, cfg, source=str(path))
    reached = found[-1][0]
    if cfg.train.steps < reached:
        raise ConfigError(f"{path}: train.steps = {cfg.train.steps} is below step {reached}, where this run "
                          f"already is; give --steps {reached} or more")
    if not changes:
        return
    config_mod.save(cfg, path)
    events.emit("setup", "settings_changed", step=reached,
                changes={key: {"old": old, "new": new} for key, (old, new) in changes.items()},
                message=config_mod.describe_changes(changes))
    if "train.steps" in changes and not cfg.train.decay_every:
        events.emit("setup", "warning", message=DECAY_WARNING)
