"""Every setting of every config section has a range, and values outside it are refused by name."""

import dataclasses
import math

import pytest

from nex_core.io import config as config_mod
from nex_core.io.config_ranges import RULES, check_value, describe
from nex_core.io.errors import ConfigError


def all_keys() -> list[str]:
    cfg = config_mod.RunConfig()
    return [f"{s}.{f.name}" for s in ("data", "model", "train") for f in dataclasses.fields(getattr(cfg, s))]


def test_every_field_has_a_rule_and_no_rule_is_stale():
    assert sorted(RULES) == sorted(all_keys())


@pytest.mark.parametrize("name", sorted(config_mod.PRESETS))
def test_every_preset_is_within_the_ranges(name):
    config_mod.validate(config_mod.preset(name))


def _with(key: str, value):
    raw = config_mod.to_dict(config_mod.preset("tiny"))
    section, _, field = key.partition(".")
    raw[section][field] = value
    return raw


BAD = [
    ("train.lr", -1e-3), ("train.lr", math.nan), ("train.lr", math.inf), ("train.lr", 0.0),
    ("train.lr_k0", -0.5), ("train.decay_rate", 0.0), ("train.decay_rate", 1.5),
    ("train.checkpoint_every", -1), ("train.log_every", 0), ("train.eval_every", -1), ("train.evals", -1),
    ("train.checkpoints", -2), ("train.minutes", -1.0), ("train.minutes", math.inf), ("train.decay_at", [0.0]),
    ("train.decay_at", [0.5, 1.01]), ("train.decay_at", [math.nan]), ("train.decay_at", [0.5] * 65),
    ("train.keep_checkpoints", 0), ("train.render_chunk", 0), ("train.device", "foo"),
    ("train.device", "cuda:x"), ("train.seed", -1), ("train.tv_weight", math.nan),
    ("data.offset_fraction", 2.0), ("data.holdout", -3), ("data.offset", -2), ("data.dmin", math.inf),
    ("model.lrelu_slope", 0.0), ("model.lrelu_slope", -0.1), ("model.hidden", 0), ("model.pos_level", 0),
    ("model.sigmoid_offset", math.nan), ("model.grid_base", 1),
]


@pytest.mark.parametrize("key,value", BAD)
def test_out_of_range_values_are_refused_by_name(key, value):
    with pytest.raises(ConfigError) as info:
        config_mod.from_dict(_with(key, value))
    assert key.split(".")[1] in str(info.value)


@pytest.mark.parametrize("key,value", [("train.device", "cuda:1"), ("train.device", "cpu"),
                                       ("train.eval_every", 0), ("data.offset", -1), ("train.lr", 10.0),
                                       ("train.checkpoint_every", 0), ("train.decay_at", []),
                                       ("train.decay_at", [1.0]), ("train.minutes", 0.05), ("train.evals", 1)])
def test_edge_values_inside_the_ranges_are_accepted(key, value):
    config_mod.from_dict(_with(key, value))


def test_overrides_from_the_command_line_are_checked_too():
    with pytest.raises(ConfigError, match="train.log_every = 0"):
        config_mod.apply_overrides(config_mod.preset("tiny"), {"train.log_every": 0})


def test_descriptions_name_the_range():
    assert describe("train.lr") == "0 < value <= 10"
    assert describe("train.precision") == "one of auto, fp32, bf16"
    assert "0: none by steps" in describe("train.eval_every")
    assert describe("train.decay_at") == "a list of at most 64 values, each 0 < value <= 1 (fractions of the run)"
    assert "cuda:N" in describe("train.device")
    for key in RULES:
        assert describe(key)


def test_check_value_rejects_wrong_types():
    with pytest.raises(ConfigError):
        check_value("train.steps", "ten")
    with pytest.raises(ConfigError):
        check_value("train.steps", True)
    with pytest.raises(ConfigError):
        check_value("train.precision", 3)
