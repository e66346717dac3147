"""Run configs for tests: the ``tiny`` preset on the shipped scene."""

from __future__ import annotations

from pathlib import Path

from nex_core.io import config as config_mod

DEMO_SCENE = Path(__file__).resolve().parents[2] / "data" / "scenes" / "shiny_demo"


def tiny_config(**train) -> config_mod.RunConfig:
    """The ``tiny`` preset on the shipped scene, with ``train`` settings overridden (``steps=30``, ...)."""
    cfg = config_mod.preset("tiny")
    cfg.data.scene = str(DEMO_SCENE)
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg
