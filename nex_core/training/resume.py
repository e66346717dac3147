"""A run folder's ``config.toml`` at the start of training: written for a new run; on resume, the settings
a resume may change (``config.RESUMABLE``) are applied, recorded in the file and as an event, and any other
difference is refused. A run to a time budget also records there the steps it reached (:func:`record_steps`)."""

from __future__ import annotations

from pathlib import Path

from ..io import config as config_mod
from ..io.config import RunConfig
from ..io.errors import ConfigError
from ..io.events import EventLog
from ..io.run_files import RunFiles
from ..runtime.checkpoint import list_checkpoints
from .budget import decay_factor


def prepare_config_file(cfg: RunConfig, run_dir: Path, events: EventLog) -> None:
    """Write ``cfg`` to the run's config.toml, or, when the run has checkpoints, check it against the
    config.toml there: ConfigError for a change outside ``config.RESUMABLE`` or (without a time budget)
    ``train.steps`` below the newest checkpoint's step; otherwise save it and emit ``settings_changed``
    (``changes``: key -> old, new) when something changed, and a warning when the new length makes the
    learning rate step back up."""
    path = RunFiles(run_dir).config
    found = list_checkpoints(run_dir)
    if not (path.exists() and found):
        config_mod.save(cfg, path)
        return
    existing = config_mod.load(path)
    changes = config_mod.resume_changes(existing, cfg, source=str(path))
    reached = found[-1][0]
    if cfg.train.minutes <= 0 and cfg.train.steps < reached:
        raise ConfigError(f"{path}: train.steps = {cfg.train.steps} is below step {reached}, where this run "
                          f"already is; give --steps {reached} or more")
    if not changes:
        return
    config_mod.save(cfg, path)
    events.emit("setup", "settings_changed", step=reached,
                changes={key: {"old": old, "new": new} for key, (old, new) in changes.items()},
                message=config_mod.describe_changes(changes))
    warning = schedule_warning(existing, cfg, reached)
    if warning:
        events.emit("setup", "warning", message=warning)


def schedule_warning(old: RunConfig, new: RunConfig, reached: int) -> str | None:
    """What a resume at step ``reached`` with a new length does to the schedule, when it matters: the
    schedule is a function of the fraction of the run done, so a longer run puts the decay points later
    and a resumed run can be back before one it has already passed (its rate steps back up)."""
    t_old, t_new = old.train, new.train
    if t_new.minutes > 0:
        if t_old.minutes == t_new.minutes:
            return None
        was = f"{t_old.minutes:g} minutes" if t_old.minutes > 0 else f"{t_old.steps} steps"
        return (f"the run is planned again for {t_new.minutes:g} minutes (it was {was}): from step {reached} on, "
                f"the learning rate follows the new plan's fractions ({_points(t_new.decay_at)}) and may step "
                f"back up; the steps trained so far kept the old plan, so the run ends near, not exactly at, "
                f"one trained for the new budget from the start")
    if t_old.minutes <= 0 and t_old.steps == t_new.steps:
        return None
    before = decay_factor(min(1.0, reached / t_old.steps), t_old.decay_at, t_old.decay_rate)
    after = decay_factor(reached / t_new.steps, t_new.decay_at, t_new.decay_rate)
    if after <= before:
        return None
    at = ", ".join(str(round(f * t_new.steps)) for f in t_new.decay_at)
    return (f"train.steps {t_old.steps} -> {t_new.steps}: the learning rates decay at {_points(t_new.decay_at)} "
            f"of the run (steps {at} now), so at step {reached} they step back up from x{before:g} to x{after:g}; "
            f"the steps trained so far kept the old schedule, so this run ends near, not exactly at, one trained "
            f"for {t_new.steps} steps from the start")


def _points(fractions: list[float]) -> str:
    return ", ".join(f"{f:.3g}" for f in fractions) or "no decay points"


def record_steps(cfg: RunConfig, run_dir: Path, steps: int, is_main: bool = True) -> None:
    """Write the steps a budget run reached (or, when stopped, had planned) into ``cfg`` and its
    config.toml, so ``nex train --config RUN/config.toml --minutes 0`` repeats that many steps."""
    cfg.train.steps = max(1, int(steps))
    if is_main:
        config_mod.save(cfg, RunFiles(run_dir).config)
