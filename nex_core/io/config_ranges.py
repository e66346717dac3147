"""The values every run setting accepts: one rule per field of every config section. Torch-free.

:func:`check_ranges` is what ``config.validate`` runs on every config (from TOML, presets and command-line
overrides alike), so no value outside these reaches the trainer; :func:`describe` gives the same range as
text for help lines and documentation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError

TRAINED_FIELDS = ("mlp", "grid")  # the forms of F_theta a model is built with
FIELDS = (*TRAINED_FIELDS, "auto")  # and what a config may say: "auto" is resolved when training starts
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
MAX_ITEMS = 64


@dataclass(frozen=True)
class Rule:
    """Allowed values of one setting: a closed or half-open numeric range, a set of choices, or a pattern."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed
    choices: tuple[str, ...] = ()
    pattern: re.Pattern | None = None
    pattern_text: str = ""
    note: str = ""  # what a special value means, e.g. "0: automatic"
    is_list: bool = False  # a list whose every item is in the range (at most MAX_ITEMS)

    def text(self, with_note: bool = True) -> str:
        if self.choices:
            out = "one of " + ", ".join(self.choices)
        elif self.pattern is not None:
            out = self.pattern_text
        elif self.low is None and self.high is None:
            out = "any text" if self.note == "" else ""
        else:
            low = "" if self.low is None else f"{_num(self.low)} {'<' if self.low_open else '<='} "
            high = "" if self.high is None else f" <= {_num(self.high)}"
            out = f"{low}value{high}"
            if self.is_list:
                out = f"a list of at most {MAX_ITEMS} values, each {out}"
        if not with_note:
            return out
        return f"{out} ({self.note})" if self.note and out else (out or self.note)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


RULES: dict[str, Rule] = {
    # [data]
    "data.scene": Rule(note="a scene folder; empty in a preset"),
    "data.width": Rule(0, 16384, note="0: the photos' width"),
    "data.holdout": Rule(0, 100000, note="every holdout-th view is held out; 0: none"),
    "data.ref_image": Rule(note="a file name or stem; empty: the view nearest the mean camera"),
    "data.dmin": Rule(0, 1e12, note="0: from planes.txt or the scene's bounds"),
    "data.dmax": Rule(0, 1e12, note="0: from planes.txt or the scene's bounds"),
    "data.invz": Rule(choices=("auto", "true", "false")),
    "data.offset": Rule(-1, 16384, note="-1: planes.txt, else offset_fraction x width"),
    "data.offset_fraction": Rule(0, 1),
    "data.min_images": Rule(1, 100000),
    # [model]
    "model.layers": Rule(1, 256),
    "model.sublayers": Rule(1, 256),
    "model.hidden": Rule(1, 8192),
    "model.mlp_layers": Rule(0, 64),
    "model.pos_level": Rule(1, 20),
    "model.depth_level": Rule(1, 20),
    "model.lrelu_slope": Rule(0, 1, low_open=True, note="must be positive: the fused backward relies on it"),
    "model.sigmoid_offset": Rule(-1000, 1000, note="< 0: automatic"),
    "model.basis": Rule(choices=("learned", "sh", "fourier")),
    "model.basis_out": Rule(1, 16),
    "model.basis_hidden": Rule(1, 4096),
    "model.basis_mlp_layers": Rule(0, 64),
    "model.basis_order": Rule(0, 20),
    "model.field": Rule(choices=FIELDS),
    "model.compositing": Rule(choices=("srgb", "linear")),
    "model.grid_levels": Rule(1, 32),
    "model.grid_features": Rule(1, 256),
    "model.grid_base": Rule(2, 16384),
    "model.grid_max": Rule(2, 16384),
    "model.grid_hidden": Rule(1, 4096),
    "model.grid_mlp_layers": Rule(0, 64),
    "model.grid_depth_base": Rule(0, 4096),
    # [train]
    "train.steps": Rule(1, 1e9),
    "train.rays": Rule(3, 1e8, note="rays come in L-shaped triples"),
    "train.images_per_step": Rule(1, 100000),
    "train.lr": Rule(0, 10, low_open=True),
    "train.lr_k0": Rule(0, 10, low_open=True),
    "train.lr_basis": Rule(0, 10, low_open=True),
    "train.lr_grid": Rule(0, 10, low_open=True),
    "train.decay_rate": Rule(0, 1, low_open=True, note="the learning rates' factor at each decay"),
    "train.minutes": Rule(0, 1e6, note="a time budget; 0: train.steps decides"),
    "train.decay_at": Rule(0, 1, low_open=True, is_list=True, note="fractions of the run"),
    "train.tv_weight": Rule(0, 1e6),
    "train.grid_tv_weight": Rule(0, 1e6),
    "train.grid_depth_tv_weight": Rule(0, 1e6),
    "train.grid_coarse_to_fine": Rule(0, 1),
    "train.grad_weight": Rule(0, 1e6),
    "train.seed": Rule(0, 2**63 - 1),
    "train.device": Rule(pattern=DEVICE_PATTERN, pattern_text="auto, cpu, cuda or cuda:N"),
    "train.precision": Rule(choices=("auto", "fp32", "bf16")),
    "train.log_every": Rule(1, 1e9),
    "train.evals": Rule(0, 1e6, note="checks per run, evenly spaced; 0 or 1: only at the end"),
    "train.eval_every": Rule(0, 1e9, note="0: none by steps"),
    "train.checkpoints": Rule(0, 1e6, note="checkpoints per run, evenly spaced; 0 or 1: only at the end"),
    "train.checkpoint_every": Rule(0, 1e9, note="0: none by steps"),
    "train.keep_checkpoints": Rule(1, 1e6),
    "train.render_chunk": Rule(64, 1 << 26, note="rays per chunk when rendering whole images"),
    # [train] per-photo colour compensation
    "train.appearance": Rule(choices=("off", "affine")),
    "train.appearance_weight": Rule(0, 1e6, note="0: no pull towards the identity (the mean stays identity)"),
    "train.lr_appearance": Rule(0, 10, low_open=True),
}


def describe(key: str, with_note: bool = True) -> str:
    """The accepted values of ``section.key`` as text, e.g. ``0 < value <= 10`` (with what a special value
    means unless ``with_note`` is False; empty for free text)."""
    return RULES[key].text(with_note)


def check_value(key: str, value: Any) -> None:
    """Raise ConfigError naming ``key`` and its allowed values when ``value`` is outside its rule."""
    rule = RULES[key]
    if rule.is_list:
        ok = (isinstance(value, (list, tuple)) and len(value) <= MAX_ITEMS
              and all(_scalar_ok(rule, item) for item in value))
    else:
        ok = _scalar_ok(rule, value)
    if not ok:
        raise ConfigError(f"{key} = {value!r} is out of range: allowed {rule.text()}")


def _scalar_ok(rule: Rule, value: Any) -> bool:
    if rule.choices or rule.pattern is not None:
        ok = isinstance(value, str) and (value in rule.choices if rule.choices else bool(rule.pattern.match(value)))
    elif rule.low is None and rule.high is None:
        ok = isinstance(value, str)
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (rule.low is None or (value > rule.low if rule.low_open else value >= rule.low))
              and (rule.high is None or value <= rule.high))
    return ok


def check_ranges(cfg: Any) -> None:
    """Check every field of every section of a RunConfig against :data:`RULES`."""
    for section in ("data", "model", "train"):
        part = getattr(cfg, section)
        for f in fields(part):
            check_value(f"{section}.{f.name}", getattr(part, f.name))
