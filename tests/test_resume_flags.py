"""`nex train --resume` and `nex demo --resume` honour their flags: more steps extend a finished run along
the curve of a longer one, device, precision and intervals change and are recorded, flags that would change
the model or its data are refused by name; and the Ctrl-C handlers go back when training ends."""

import shutil
import signal
from pathlib import Path

import pytest
from support.configs import tiny_config

from nex_core.cli import main
from nex_core.commands import demo as demo_mod
from nex_core.commands import train as train_mod
from nex_core.commands.stop_flag import SIGNALS, StopFlag
from nex_core.io import config as config_mod
from nex_core.io.errors import ConfigError
from nex_core.io.events import read_events
from nex_core.runtime.checkpoint import list_checkpoints
from nex_core.training import trainer as trainer_mod
from nex_core.training.trainer import Trainer

DEMO = Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"
QUIET = ["--no-eval", "--quiet"]



def events_of(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["kind"] == kind]


def final_psnr(run: Path) -> float:
    return events_of(run, "done")[-1]["test_psnr"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run trained to the end (6 steps), and its files' bytes to show a refused resume leaves them."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", str(DEMO), "--preset", "tiny", "--steps", "6", "--out", str(run), *QUIET]) == 0
    return run


def run_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in [run / "config.toml", *(p for _, p in list_checkpoints(run))]}


def test_extending_a_finished_run_ends_where_a_longer_run_does(tmp_path):
    """Without a decay point in the way (here: none) the schedule does not depend on the total, so 12
    steps then 12 more repeat a 24-step run: the same held-out PSNR (the bar, 0.1 dB, is the issue's)."""
    config = tmp_path / "c.toml"
    config_mod.save(tiny_config(decay_at=[], checkpoint_every=1000), config)
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    assert main(["train", "--config", str(config), "--steps", "24", "--out", str(straight), *QUIET]) == 0
    assert main(["train", "--config", str(config), "--steps", "12", "--out", str(extended), *QUIET]) == 0
    assert main(["train", "--resume", str(extended), "--steps", "24", *QUIET]) == 0
    assert list_checkpoints(extended)[-1][0] == 24
    assert config_mod.load(extended / "config.toml").train.steps == 24
    [change] = events_of(extended, "settings_changed")
    assert change["changes"] == {"train.steps": {"old": 12, "new": 24}} and change["step"] == 12
    assert events_of(extended, "resume")[-1]["step"] == 12
    first_end, second_end = (e["test_psnr"] for e in events_of(extended, "done"))
    assert second_end > first_end  # the extension trained on
    assert abs(final_psnr(extended) - final_psnr(straight)) < 0.1, (final_psnr(extended), final_psnr(straight))
    assert not [e for e in events_of(extended, "warning") if "step back up" in e.get("message", "")]


def test_extending_past_a_decay_point_follows_the_new_total_and_warns(tmp_path):
    """The decay points are fractions of the run (tiny: 1/3 and 2/3): after extending 6 -> 12 the rates are
    a 12-step run's, so they step back up at step 6 (from x0.01 to x0.1), and the resume says so."""
    run = tmp_path / "run"
    Trainer(tiny_config(steps=6, checkpoint_every=1000), run).train()
    resumed = Trainer(tiny_config(steps=12, checkpoint_every=1000), run)
    assert resumed.step == 6
    assert [resumed.learning_rate_factor(s) for s in range(12)] == pytest.approx([0.1 ** (s // 4) for s in range(12)])
    warnings = [e["message"] for e in events_of(run, "warning")]
    assert any("step back up from x0.01 to x0.1" in m and "steps 4, 8" in m for m in warnings), warnings


@pytest.mark.parametrize("flags, named", [
    (["--layers", "3"], "--layers (model.layers 4 -> 3)"),
    (["--seed", "7"], "--seed (train.seed 1 -> 7)"),
    (["--lr", "0.01"], "--lr (train.lr"),
    (["--rays", "300", "--no-invz"], "--invz/--no-invz (data.invz 'auto' -> 'false'), --rays (train.rays 600 -> 300)"),
    (["--width", "60"], "--width (data.width 80 -> 60)"),
    (["--field", "grid"], "--field (model.field 'mlp' -> 'grid')"),
])
def test_flags_that_change_the_model_or_data_are_refused(finished_run, capsys, flags, named):
    before = run_bytes(finished_run)
    assert main(["train", "--resume", str(finished_run), "--steps", "8", *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert named in err and "another --out" in err and "--steps" in err, err
    assert run_bytes(finished_run) == before  # neither config.toml nor a checkpoint was touched


def test_field_auto_on_resume_keeps_the_network_the_run_chose(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["train", "--resume", str(run), "--steps", "8", "--field", "auto", *QUIET]) == 0
    assert config_mod.load(run / "config.toml").model.field == "mlp"
    assert events_of(run, "done")[-1]["step"] == 8


def test_another_scene_config_preset_or_out_on_resume_are_refused(finished_run, tmp_path, capsys):
    before = run_bytes(finished_run)
    assert main(["train", str(tmp_path), "--resume", str(finished_run), *QUIET]) == 2
    assert "SCENE (data.scene" in capsys.readouterr().err
    for flags, named in ((["--preset", "fast"], "--preset"), (["--config", "x.toml"], "--config"),
                         (["--out", str(tmp_path / "elsewhere")], "--out")):
        assert main(["train", "--resume", str(finished_run), *flags, *QUIET]) == 2
        err = capsys.readouterr().err
        assert f"drop {named}" in err, err
    assert main(["train", "--resume", str(tmp_path / "nothing"), *QUIET]) == 2
    assert "no run to resume here" in capsys.readouterr().err
    assert run_bytes(finished_run) == before


def test_the_trainer_refuses_changes_and_fewer_steps_than_reached(finished_run):
    before = run_bytes(finished_run)
    with pytest.raises(ConfigError, match=r"train\.rays 600 -> 300.*other settings"):
        Trainer(tiny_config(steps=6, rays=300), finished_run)
    with pytest.raises(ConfigError, match=r"train\.steps = 4 is below step 6.*--steps 6 or more"):
        Trainer(tiny_config(steps=4), finished_run)
    assert run_bytes(finished_run) == before


def test_device_precision_and_intervals_change_and_are_recorded(finished_run, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    seen = []
    real = trainer_mod.autocast_dtype
    monkeypatch.setattr(trainer_mod, "autocast_dtype", lambda p, d: seen.append((p, d.type)) or real(p, d))
    flags = ["--steps", "10", "--device", "cpu", "--precision", "fp32", "--eval-every", "2",
             "--checkpoint-every", "3", "--keep-checkpoints", "5", "--log-every", "1", "--render-chunk", "2048"]
    assert main(["train", "--resume", str(run), *flags, *QUIET]) == 0
    assert seen == [("fp32", "cpu")]
    t = config_mod.load(run / "config.toml").train
    assert (t.steps, t.device, t.precision, t.eval_every, t.checkpoint_every, t.keep_checkpoints, t.log_every,
            t.render_chunk) == (10, "cpu", "fp32", 2, 3, 5, 1, 2048)
    [change] = events_of(run, "settings_changed")
    assert change["changes"] == {
        "train.steps": {"old": 6, "new": 10}, "train.device": {"old": "auto", "new": "cpu"},
        "train.precision": {"old": "auto", "new": "fp32"}, "train.log_every": {"old": 10, "new": 1},
        "train.eval_every": {"old": 0, "new": 2}, "train.checkpoint_every": {"old": 50, "new": 3},
        "train.keep_checkpoints": {"old": 2, "new": 5}, "train.render_chunk": {"old": 4096, "new": 2048}}
    assert "train.device 'auto' -> 'cpu'" in change["message"]
    assert [s for s, _ in list_checkpoints(run)] == [6, 9, 10]  # every 3rd step now, and up to 5 kept
    assert [e["step"] for e in events_of(run, "test_psnr")] == [6, 8, 10]  # 6: the first run's end
    assert [e["step"] for e in events_of(run, "progress")][-4:] == [7, 8, 9, 10]
    assert main(["train", "--resume", str(run), *QUIET]) == 0  # nothing new: no second change event
    assert len(events_of(run, "settings_changed")) == 1


def test_demo_honours_steps_also_on_resume(tmp_path, monkeypatch, capsys):
    """`nex demo --steps` reaches the training, also with --resume (extending the run); the render,
    tested elsewhere, is skipped here."""
    calls = []
    real = demo_mod.run_command

    def train_only(module, argv):
        calls.append(argv)
        return real(module, [*argv, "--no-eval"]) if module is train_mod else 0

    monkeypatch.setattr(demo_mod, "run_command", train_only)
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--steps", "5", "--out", str(out)]) == 0
    assert list_checkpoints(out)[-1][0] == 5
    assert main(["demo", "--resume", "--steps", "8", "--out", str(out)]) == 0
    assert list_checkpoints(out)[-1][0] == 8 and config_mod.load(out / "config.toml").train.steps == 8
    assert "done: 8 steps" in capsys.readouterr().err
    assert [argv[0] for argv in calls] == ["train", "render", "train", "render"]


def _custom(signum, frame):
    """A stand-in for whatever handler the caller had."""


@pytest.fixture
def custom_handlers():
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _custom)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_stop_flag_restores_the_handlers_it_replaced(custom_handlers):
    with pytest.raises(RuntimeError):
        with StopFlag() as stop:
            assert all(signal.getsignal(s) == stop._handle for s in SIGNALS)
            signal.raise_signal(signal.SIGINT)
            assert stop()
            raise RuntimeError("boom")
    assert all(signal.getsignal(s) is _custom for s in SIGNALS)


def test_train_gives_the_handlers_back(custom_handlers, tmp_path, monkeypatch):
    assert main(["train", str(DEMO), "--preset", "tiny", "--steps", "2", "--out", str(tmp_path / "a"), *QUIET]) == 0
    assert all(signal.getsignal(s) is _custom for s in SIGNALS)
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "b"), *QUIET]) == 2  # a NexError
    assert all(signal.getsignal(s) is _custom for s in SIGNALS)

    def crash(self):
        raise RuntimeError("crash in training")

    monkeypatch.setattr(Trainer, "train", crash)
    with pytest.raises(RuntimeError, match="crash in training"):
        main(["train", str(DEMO), "--preset", "tiny", "--steps", "2", "--out", str(tmp_path / "c"), *QUIET])
    assert all(signal.getsignal(s) is _custom for s in SIGNALS)


def test_ctrl_c_interrupts_the_evaluation_after_training(tmp_path, monkeypatch):
    """Once training is over, Ctrl-C is Python's KeyboardInterrupt again (nex exits with 130), not a
    stop request nobody polls any more."""
    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(train_mod, "report_evaluation", lambda *a, **k: signal.raise_signal(signal.SIGINT))
        run = tmp_path / "run"
        assert main(["train", str(DEMO), "--preset", "tiny", "--steps", "2", "--out", str(run), "--quiet"]) == 130
        assert list_checkpoints(run)[-1][0] == 2
    finally:
        signal.signal(signal.SIGINT, saved)
