"""Regression tests of flag values and failed writes: `nex render` (output names, flag ranges, --png),
the video writer's errors, and `nex view` (the port checked before a bake, the camera-span fallback)."""

from __future__ import annotations

import dataclasses
import shutil
import socket
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from nex_core.cli import main
from nex_core.commands import view
from nex_core.export.video import render_frames, view_file_names, write_mp4, write_pngs
from nex_core.io import config as config_mod
from nex_core.io.errors import NexError, SceneError

DEMO = Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"


@pytest.fixture(scope="module")
def frame_run(tmp_path_factory) -> Path:
    """A 2-step tiny run on the demo scene whose photos are renamed frame_0001.png ... frame_0020.png
    (held out: frame_0001, frame_0009, frame_0017), the names the spiral's PNGs also use."""
    from nex_core.training.trainer import Trainer

    root = tmp_path_factory.mktemp("frames")
    (root / "scene" / "images").mkdir(parents=True)
    for i, photo in enumerate(sorted((DEMO / "images").iterdir())):
        shutil.copy(photo, root / "scene" / "images" / f"frame_{i + 1:04d}.png")
    shutil.copy(DEMO / "poses_bounds.npy", root / "scene")
    cfg = config_mod.preset("tiny")
    cfg.data.scene, cfg.train.steps = str(root / "scene"), 2
    Trainer(cfg, root / "run").train()
    return root / "run"


# --------------------------------------------------------------------------------------------------
# nex render


def test_held_out_views_keep_their_own_pixels_under_frame_names(frame_run, tmp_path, monkeypatch):
    from nex_core.runtime.run import open_run

    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))  # --png must not need it
    out = tmp_path / "out"
    assert main(["render", str(frame_run), "--out", str(out), "--frames", "2", "--png"]) == 0
    names = sorted(p.name for p in (out / "test_views").iterdir())
    assert names == ["frame_0001.png", "frame_0009.png", "frame_0017.png"]
    run = open_run(frame_run)
    expected = render_frames(run, [run.scene.cameras[i] for i in run.scene.test_ids])
    for name, want in zip(names, expected):
        np.testing.assert_array_equal(imageio.imread(out / "test_views" / name), want, err_msg=name)
    # --png writes the spiral's frames only: no mp4 attempted (there is no ffmpeg here).
    assert sorted(p.name for p in out.iterdir()) == ["spiral_frames", "test_views"]
    assert sorted(p.name for p in (out / "spiral_frames").iterdir()) == ["frame_0000.png", "frame_0001.png"]


def test_duplicate_held_out_stems_are_refused_before_rendering(frame_run, tmp_path, monkeypatch, capsys):
    from nex_core.runtime import run as run_mod

    real_open = run_mod.open_run

    def open_with_clashing_names(path, device=None):
        run = real_open(path, device)
        a, b = run.scene.test_ids[:2]
        run.scene.cameras[a] = dataclasses.replace(run.scene.cameras[a], name="images/shot.png")
        run.scene.cameras[b] = dataclasses.replace(run.scene.cameras[b], name="more/Shot.jpg")
        return run

    monkeypatch.setattr(run_mod, "open_run", open_with_clashing_names)
    out = tmp_path / "out"
    assert main(["render", str(frame_run), "--out", str(out), "--frames", "2", "--png"]) == 2
    err = capsys.readouterr().err
    assert "images/shot.png" in err and "more/Shot.jpg" in err and "--no-test-views" in err
    assert not out.exists()


def test_view_file_names():
    assert view_file_names(["images/a.png", "b.JPG", "c"]) == ["a.png", "b.png", "c.png"]
    with pytest.raises(SceneError, match=r"x/a\.png and y/a\.jpg would both be written as a\.png"):
        view_file_names(["x/a.png", "b.png", "y/a.jpg"])


@pytest.mark.parametrize("flags, message", [
    (["--frames", "0"], "--frames 0: choose 1..100000"),
    (["--frames", "-5"], "--frames -5: choose 1..100000"),
    (["--fps", "0"], "--fps 0: choose 1..1000"),
    (["--fps", "100000"], "--fps 100000: choose 1..1000"),
])
def test_render_refuses_out_of_range_flags(tmp_path, capsys, flags, message):
    # Checked before the run is opened: the run does not even exist.
    assert main(["render", str(tmp_path / "no-run"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "no-run" not in err


# --------------------------------------------------------------------------------------------------
# The video writer's errors

FRAMES = [np.full((9, 11, 3), 40 * i, np.uint8) for i in range(3)]


def test_missing_ffmpeg_names_ffmpeg_and_the_png_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(NexError, match="ffmpeg is not available") as info:
        write_mp4(FRAMES, tmp_path / "v.mp4")
    assert "--png" in str(info.value) and "--frames" not in str(info.value)
    assert not (tmp_path / "v.mp4").exists()


def test_write_errors_name_the_path_not_ffmpeg(tmp_path):
    (tmp_path / "taken").write_text("a file where the output folder should be")
    with pytest.raises(NexError, match=r"cannot write .*taken/spiral\.mp4") as info:
        write_mp4(FRAMES, tmp_path / "taken" / "spiral.mp4")
    assert "ffmpeg is not available" not in str(info.value)
    with pytest.raises(NexError, match=r"cannot write .*taken/pngs/frame_0000\.png"):
        write_pngs(FRAMES, tmp_path / "taken" / "pngs")


def test_a_failed_video_keeps_the_earlier_one(tmp_path):
    video = write_mp4(FRAMES, tmp_path / "spiral.mp4")
    before = video.read_bytes()
    assert len(before) > 0
    mixed = [FRAMES[0], np.zeros((20, 30, 3), np.uint8)]  # frames of two sizes: the encoder refuses
    with pytest.raises(NexError, match=r"cannot write .*spiral\.mp4"):
        write_mp4(mixed, video)
    assert video.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spiral.mp4"]  # no partial file left behind


def test_pngs_are_written_under_the_given_names(tmp_path):
    paths = write_pngs(FRAMES, tmp_path / "v", ["one.png", "two.png", "three.png"])
    assert [p.name for p in paths] == ["one.png", "two.png", "three.png"]
    np.testing.assert_array_equal(imageio.imread(paths[2]), FRAMES[2])


# --------------------------------------------------------------------------------------------------
# nex view


@pytest.fixture
def unbaked_run(tmp_path, monkeypatch) -> tuple[Path, list]:
    """A run folder with a config but no baked MPI; `nex view` would bake it (recorded, not done)."""
    from nex_core.commands import bake

    cfg = config_mod.preset("tiny")
    cfg.data.scene = str(DEMO)
    (tmp_path / "run").mkdir()
    config_mod.save(cfg, tmp_path / "run" / "config.toml")
    bakes: list = []
    monkeypatch.setattr(bake, "bake_and_report", lambda path, *a, **k: bakes.append(path))
    return tmp_path / "run", bakes


def test_view_refuses_a_busy_port_before_baking(unbaked_run, capsys):
    run_dir, bakes = unbaked_run
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["view", str(run_dir), "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err
    assert bakes == [] and not (run_dir / "baked").exists()


@pytest.mark.parametrize("port", ["65536", "-1"])
def test_view_refuses_an_out_of_range_port_before_baking(unbaked_run, capsys, port):
    run_dir, bakes = unbaked_run
    assert main(["view", str(run_dir), "--port", port, "--no-browser"]) == 2
    assert f"--port {port}: choose 0..65535" in capsys.readouterr().err
    assert bakes == []


def test_training_span_reads_the_run(unbaked_run):
    span = view.training_span(unbaked_run[0])
    assert set(span) == {"min", "max"} and all(lo <= hi for lo, hi in zip(span["min"], span["max"]))


def test_training_span_falls_back_saying_why(unbaked_run, capsys):
    run_dir, _ = unbaked_run
    cfg = config_mod.load(run_dir / "config.toml")
    cfg.data.scene = str(run_dir / "moved-away")
    config_mod.save(cfg, run_dir / "config.toml")
    assert view.training_span(run_dir) is None
    err = capsys.readouterr().err
    assert "small box around the reference camera" in err and "moved-away" in err
    assert view.training_span(run_dir.parent / "no-run") is None
    assert "no such config file" in capsys.readouterr().err


def test_training_span_lets_bugs_surface(unbaked_run, monkeypatch):
    from nex_core.runtime import setup

    def broken(cfg):
        raise TypeError("a bug in the loader")

    monkeypatch.setattr(setup, "load_scene_for", broken)
    with pytest.raises(TypeError, match="a bug in the loader"):
        view.training_span(unbaked_run[0])


def test_demo_refuses_a_bad_frame_count_before_training(tmp_path):
    """`nex demo --frames 0` is refused at once, not after the training it would otherwise run first."""
    from nex_core import cli

    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--frames", "0"]) == 2
    assert not (tmp_path / "demo").exists()


def test_train_refuses_an_out_that_is_not_a_run_folder(tmp_path):
    """--out at a folder of other files (here the scene itself) or below a regular file is refused by name
    before anything is written; a folder of only a run's own files (an earlier start) is accepted."""
    from nex_core import cli
    from nex_core.io.run_files import is_run_entry

    scene = tmp_path / "scene"
    shutil.copytree(DEMO, scene)
    before = sorted(p.name for p in scene.iterdir())
    assert cli.main(["train", str(scene), "--preset", "tiny", "--steps", "2", "--out", str(scene), "--quiet"]) == 2
    assert sorted(p.name for p in scene.iterdir()) == before
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(["train", str(scene), "--preset", "tiny", "--steps", "2", "--out", str(blocker / "run"),
                     "--quiet"]) == 2
    assert is_run_entry("config.toml") and is_run_entry("train.log") and not is_run_entry("images")
