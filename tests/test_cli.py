"""The `nex` entry point and its command modules: how subcommands are registered, the shared console and
stop-flag helpers, and `nex demo` (train + evaluate + render) end to end on the shipped scene."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from nex_core import cli
from nex_core.commands import COMMAND_MODULES
from nex_core.commands.console import Throttle
from nex_core.commands.stop_flag import StopFlag
from nex_core.commands.train import TrainPrinter
from nex_core.io.config import PRESETS


def subparsers(parser):
    return next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices


def test_every_command_module_registers_its_command():
    commands = subparsers(cli.build_parser())
    assert list(commands) == ["train", "eval", "render", "demo", "prepare", "bake", "view", "export", "cameras",
                             "doctor"]
    for name in COMMAND_MODULES:
        assert callable(cli.command_module(name).register)
    for name, sub in commands.items():
        assert callable(sub.get_default("func")), name


def test_preset_choices_are_the_config_presets():
    commands = subparsers(cli.build_parser())
    for name in ("train", "demo"):
        preset = next(a for a in commands[name]._actions if a.dest == "preset")
        assert list(preset.choices) == list(PRESETS) and preset.default in PRESETS


def test_a_command_module_that_does_not_import_is_an_error_naming_it(monkeypatch, tmp_path):
    import nex_core.commands

    (tmp_path / "broken.py").write_text("import no_such_dependency_of_nex\n")
    monkeypatch.setattr(nex_core.commands, "__path__", [*nex_core.commands.__path__, str(tmp_path)])
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*COMMAND_MODULES, "broken"))
    monkeypatch.delitem(sys.modules, "nex_core.commands.broken", raising=False)
    with pytest.raises(ImportError, match=r"nex_core\.commands\.broken.*no_such_dependency_of_nex"):
        cli.build_parser()
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*COMMAND_MODULES, "missing"))
    with pytest.raises(ImportError, match=r"nex_core\.commands\.missing"):
        cli.main(["--help"])


def test_throttle_says_yes_once_per_interval():
    throttle = Throttle(3600)
    assert throttle.ready() and not throttle.ready() and throttle.ready(force=True) and not throttle.ready()


def test_train_printer_plain_lines(capsys):
    printer = TrainPrinter()
    printer({"phase": "setup", "kind": "start", "device": "cpu", "field": "grid", "field_auto": True})
    printer({"phase": "setup", "kind": "start", "device": "cpu", "field": "mlp", "field_auto": False})  # given
    printer({"phase": "train", "kind": "start", "step": 0, "steps": 20, "n_train": 21, "n_test": 3, "planes": 8})
    progress = {"phase": "train", "kind": "progress", "steps": 20, "loss": 0.5, "psnr": 12.0, "rays_per_s": 2500}
    for step in (5, 10, 20):  # the first line, one throttled away, the last one forced
        printer({**progress, "step": step})
    printer({"phase": "train", "kind": "warning", "message": "out of memory [split 2x]"})
    printer({"phase": "cancelled", "kind": "cancelled", "step": 20})
    err = capsys.readouterr().err
    assert "network: grid, chosen for this CPU (--field mlp for the other)" in err and "network: mlp" not in err
    assert "training: 21 views (3 held out), 8 planes, 20 steps" in err
    assert "step 5/20  loss 0.5000  PSNR 12.00  2.5k rays/s" in err and "step 10/20" not in err
    assert "step 20/20" in err and "warning: out of memory [split 2x]" in err  # brackets print as they are
    assert "resume with `nex train --resume RUN`" in err
    TrainPrinter(quiet=True)({**progress, "step": 1})
    assert capsys.readouterr().err == ""


def test_stop_flag_stops_then_interrupts():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = StopFlag()
        stop.install()
        assert not stop()
        signal.raise_signal(signal.SIGTERM)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_demo_trains_evaluates_and_renders(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--preset", "tiny", "--steps", "20", "--frames", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "done: 20 steps" in err and "held-out (3 views)" in err
    assert (out / "eval" / "metrics.csv").is_file() and (out / "render" / "spiral.mp4").stat().st_size > 0
    assert len(list((out / "render" / "test_views").iterdir())) == 3
    assert cli.main(["demo", "--preset", "tiny", "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert cli.main(["demo", "--scene", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "demo scene not found" in capsys.readouterr().err


def test_demo_scene_ships_with_the_repository():
    from nex_core.commands.demo import DEMO_SCENE

    assert DEMO_SCENE == Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"
    assert (DEMO_SCENE / "images").is_dir()


def _train_args(*flags: str):
    return cli.build_parser().parse_args(["train", "scene", *flags])


def test_set_overrides_any_config_entry_with_toml_values():
    from nex_core.commands.train import config_from_args

    cfg = config_from_args(_train_args("--preset", "fast", "--set", "model.grid_max=128", "--set",
                                       "train.decay_at=[0.5, 0.9]", "--set", "model.field=grid",
                                       "--set", "data.invz=false", "--set", "train.lr_grid=5e-3"))
    assert cfg.model.grid_max == 128 and cfg.model.field == "grid" and cfg.data.invz == "false"
    assert cfg.train.decay_at == [0.5, 0.9] and cfg.train.lr_grid == 0.005


@pytest.mark.parametrize("flags, words", [
    (["--set", "model.gridmax=64"], "unknown setting 'model.gridmax'"),
    (["--set", "grid_max=64"], "write SECTION.KEY=VALUE"),
    (["--set", "model.grid_max"], "write SECTION.KEY=VALUE"),
    (["--set", "model.grid_max=sixty"], "expected int, got 'sixty'"),
    (["--set", "model.field=grid", "--field", "mlp"], "both set model.field"),
])
def test_set_refuses_what_it_cannot_apply(flags, words):
    from nex_core.commands.train import config_from_args
    from nex_core.io.errors import ConfigError

    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        config_from_args(_train_args(*flags))
