"""Random ``nex`` command lines, built from the parser itself, run in-process on a tiny scene, a tiny
trained run, a baked copy and a glTF export.

Whatever the flags and values (0, -1, huge, NaN, inf, empty, unicode, missing paths, paths below a file,
a read-only file system), every command line must end with exit code 0, 1 or 2, never a traceback,
write nothing outside the test's folder, and leave the existing run, scene, bake and export byte for byte
as they were when it is refused. Hypothesis runs derandomized, so CI tries the same lines every time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import time
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from nex_core import cli

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "scenes" / "shiny_demo"
MAX_EXAMPLES = 150  # with the tiny run, about two minutes on two busy cores, the tiny run included
SLOW_EXAMPLE_S = 60.0

# Sizes that keep any example short. They come first on the line, so a drawn flag may still override
# them, with a value from VALUES (small, or out of every range).
CAPS = {
    "train": ["--preset", "tiny", "--steps", "2", "--width", "40", "--checkpoint-every", "2", "--quiet"],
    "demo": ["--preset", "tiny", "--steps", "2", "--frames", "2"],
    "render": ["--frames", "2"],
    "bake": ["--lut-size", "8"],
    "prepare": ["--quiet"],
}
# Flags never drawn. --preset: only tiny trains in seconds (the presets are argparse choices anyway).
NOT_DRAWN = {"train": {"--preset"}, "demo": {"--preset"}}

HUGE = str(10 ** 30)  # above every range of config_ranges, so never a valid (long) size
# No NUL character: a real command line cannot hold one.
VALUES = ["0", "-1", "1", "2", "3", "nan", "inf", "-inf", "", HUGE, "-" + HUGE, "1e309", "0.5", "ü✓", " 2", "0x10"]
EXTRA_VALUES = {
    "device": ["cpu", "cuda", "cuda:7", "auto", "mps"],
    "precision": ["auto", "fp32", "bf16", "fp16"],
    "basis": ["learned", "sh", "fourier"],
    "field": ["mlp", "grid"],
    "ref_image": ["view_003.png", "view_003", "nope.png"],
    "matcher": ["auto", "exhaustive", "sequential", "bogus"],
}
PATH_DESTS = {"run", "scene", "photos", "out", "gltf", "config", "resume"}
# (command, flag) -> values not drawn, each with the defect it would hit, while one is open.
EXCLUDED_VALUES: dict[tuple[str, str], set[str]] = {}  # none left: the defects it found are fixed


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


SUBCOMMANDS = _subparsers(cli.build_parser())


def tree_hash(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``root`` (or of ``root`` itself when it is a file)."""
    root = Path(root)
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


class Assets:
    """The tiny scene, trained run, baked copy and export: masters, and the live copies commands see."""

    NAMES = ("scene", "run", "baked", "export.glb")

    def __init__(self, root: Path):
        self.root = root
        self.master = root / "master"
        self.live = root / "live"
        self.work = root / "work"  # the commands' working directory (default outputs land here)
        self.master.mkdir()
        self.work.mkdir()
        shutil.copytree(DEMO, self.master / "scene")
        run = self.master / "run"
        quiet = io.StringIO()
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            assert cli.main(["train", str(self.master / "scene"), "--preset", "tiny", "--steps", "4", "--width", "40",
                             "--checkpoint-every", "4", "--quiet", "--out", str(run)]) == 0, quiet.getvalue()
            assert cli.main(["bake", str(run), "--lut-size", "8"]) == 0, quiet.getvalue()
            assert cli.main(["export", str(run), "--gltf", str(self.master / "export.glb")]) == 0, quiet.getvalue()
        shutil.copytree(run / "baked", self.master / "baked")
        self.hashes = {name: tree_hash(self.master / name) for name in self.NAMES}
        blocker = root / "a_file"
        blocker.write_text("a regular file: nothing can be created below it, not even by root")
        self.blocker = blocker
        self.few_photos = root / "few_photos"  # too few for nex prepare, outside the run and the scene
        self.few_photos.mkdir()
        for image in sorted((DEMO / "images").iterdir())[:6]:
            shutil.copy2(image, self.few_photos / image.name)
        self.restore()

    def restore(self) -> None:
        """Make the live copies equal to the masters again (after a command that changed them)."""
        for name in self.NAMES:
            live = self.live / name
            if live.exists() and tree_hash(live) == self.hashes[name]:
                continue
            if live.is_dir():
                shutil.rmtree(live)
            elif live.exists():
                live.unlink()
            self.live.mkdir(exist_ok=True)
            (shutil.copytree if (self.master / name).is_dir() else shutil.copy2)(self.master / name, live)

    def changed(self) -> list[str]:
        return [name for name in self.NAMES if tree_hash(self.live / name) != self.hashes[name]]

    def good_paths(self, dest: str) -> list[str]:
        """Path values a command accepts, so that the other flags are exercised past the path checks."""
        live, work = self.live, self.work
        return {"run": [str(live / "run"), str(live / "baked")], "scene": [str(live / "scene")],
                "out": [str(work / "new_out")], "gltf": [str(work / "new.glb")],
                "config": [str(live / "run" / "config.toml")], "resume": [str(live / "run")]}.get(dest, [])

    def paths(self, dest: str) -> list[str]:
        """Path values for an argument: real inputs, fresh outputs, missing and unwritable places."""
        live, work = self.live, self.work
        common = [str(live / "run"), str(live / "baked"), str(live / "scene"), str(work / "new_out"),
                  str(work / "missing" / "deeper"), str(self.blocker), str(self.blocker / "below"), "",
                  "/proc/nex-fuzz", str(work / "dïr ü✓")]
        specific = {
            "gltf": [str(work / "new.glb"), str(live / "export.glb"), str(self.blocker / "x.glb"),
                     "/proc/nex-fuzz.glb", str(work / "out.gltf"), str(live / "run" / "export" / "mpi.glb")],
            "config": [str(live / "run" / "config.toml"), str(live / "scene" / "transforms.json")],
            "run": [str(live / "run" / "checkpoints"), str(live / "run" / "config.toml")],
            # No real photo folder: structure from motion takes far longer than an example may
            # (test_prepare.py runs it).
            "photos": [str(self.few_photos)],
        }
        return specific.get(dest, []) + common


def _value_strategy(assets: Assets, command: str, action: argparse.Action) -> st.SearchStrategy[str]:
    # Half the draws come from values a command accepts, so that a line gets past its first bad value.
    flag = action.option_strings[0] if action.option_strings else action.dest
    excluded = {v.format(blocker=assets.blocker) for v in EXCLUDED_VALUES.get((command, flag), set())}
    if action.dest in PATH_DESTS:
        good = assets.good_paths(action.dest)
        bad = st.sampled_from([p for p in assets.paths(action.dest) if p not in excluded])
        return st.one_of(st.sampled_from(good), bad) if good else bad
    extra = EXTRA_VALUES.get(action.dest, [])
    choices = [str(c) for c in action.choices] if action.choices is not None else []
    good = [v for v in (choices or extra or ["1", "2", "3"]) if v not in excluded]
    pool = [v for v in dict.fromkeys(VALUES + extra + choices + ["bogus"]) if v not in excluded]
    return st.one_of(st.sampled_from(good), st.sampled_from(pool))


@st.composite
def command_lines(draw, assets: Assets) -> list[str]:
    """One ``nex`` command line: a subcommand, its positionals and up to three of its flags."""
    command = draw(st.sampled_from(sorted(SUBCOMMANDS)))
    parser = SUBCOMMANDS[command]
    argv = [command, *CAPS.get(command, [])]
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        if action.nargs == "?" and draw(st.booleans()):
            continue
        argv.append(draw(_value_strategy(assets, command, action)))
    flags = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
             and not set(a.option_strings) & NOT_DRAWN.get(command, set())]
    for action in draw(st.lists(st.sampled_from(flags), max_size=3, unique_by=lambda a: a.dest)):
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs != 0:
            argv.append(draw(_value_strategy(assets, command, action)))
    return argv


def run_nex(argv: list[str]) -> tuple[int, str]:
    """``nex ARGV`` in this process -> (exit code, stderr); argparse's SystemExit counts with its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:  # reported by the test with the command line, not raised through Hypothesis
            traceback.print_exc(file=err)
            code = -1
    return code, err.getvalue()


def outside_listing() -> dict[str, list[str]]:
    """What lies in the places a stray default output would land outside the test's folder."""
    places = [REPO, REPO / "data" / "scenes", DEMO, Path.home()]
    # Hidden entries and caches change under other processes (pytest, tool caches in the home folder).
    return {str(p): sorted(n for n in os.listdir(p) if not n.startswith((".", "__pycache__")))
            for p in places if p.is_dir()}


@pytest.fixture(scope="module")
def assets(tmp_path_factory, request):
    import nex_core.export.webview as webview
    import webbrowser

    root = tmp_path_factory.mktemp("fuzz")
    saved_cwd = os.getcwd()
    # `nex view` serves until Ctrl-C: here it returns as soon as it would start serving (the server is
    # still built, bound and stopped), and never opens a browser.
    patch = pytest.MonkeyPatch()
    patch.setattr(webview.ViewerServer, "serve_forever", lambda self: None)
    patch.setattr(webbrowser, "open", lambda *a, **k: True)
    try:
        made = Assets(root)
        os.chdir(made.work)
        yield made
    finally:
        os.chdir(saved_cwd)
        patch.undo()


TRIED: list[tuple[list[str], int, float]] = []


def test_random_command_lines_fail_cleanly(assets):
    demo_before = tree_hash(DEMO)
    outside_before = outside_listing()

    # No shrinking: each step reruns commands, and the failure message names the whole command line.
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(argv=command_lines(assets))
    def check(argv: list[str]) -> None:
        assets.restore()
        start = time.perf_counter()
        code, err = run_nex(argv)
        seconds = time.perf_counter() - start
        TRIED.append((argv, code, seconds))
        assert code in (0, 1, 2), f"nex {argv}: exit code {code}\n{err}"
        assert "Traceback (most recent call last)" not in err, f"nex {argv}: traceback\n{err}"
        assert cli.UNEXPECTED_OS_ERROR not in err, f"nex {argv}: an OS error no command handled\n{err}"
        assert seconds < SLOW_EXAMPLE_S, f"nex {argv}: took {seconds:.0f} s"
        if code != 0:
            assert err.strip(), f"nex {argv}: exit code {code} without a message"
            assert assets.changed() == [], f"nex {argv} was refused but changed {assets.changed()}\n{err}"
        assert outside_listing() == outside_before, f"nex {argv} wrote outside the test's folder"

    for name in SUBCOMMANDS:  # every subcommand at least once, whatever the draws
        check = example(argv=[name, *CAPS.get(name, [])])(check)
    check()
    assert tree_hash(DEMO) == demo_before
    codes = {c: sum(1 for _, code, _ in TRIED if code == c) for c in (0, 1, 2)}
    commands = {name for (argv, _, _) in TRIED for name in argv[:1]}
    print(f"\ncli fuzz: {len(TRIED)} command lines, exit codes {codes}, "
          f"{sum(s for *_, s in TRIED):.0f} s in commands, subcommands {sorted(commands)}")
    assert commands == set(SUBCOMMANDS), f"not every subcommand was tried: {sorted(set(SUBCOMMANDS) - commands)}"


def test_the_strategy_reads_every_flag_from_the_parser():
    """Every subcommand's flags are there to draw, so a new flag is fuzzed without editing this file."""
    for name, parser in SUBCOMMANDS.items():
        options = {s for a in parser._actions for s in a.option_strings}
        assert "--help" in options
        for flag in CAPS.get(name, []):
            if flag.startswith("--"):
                assert flag in options, f"{name}: CAPS names {flag}, which the parser does not have"


@pytest.mark.parametrize("flag, value", [("--seed", HUGE), ("--seed", "-1"), ("--threads", "0"),
                                         ("--threads", HUGE), ("--max-features", HUGE), ("--width", "-1")])
def test_prepare_refuses_integers_colmap_cannot_take(tmp_path, flag, value):
    code, err = run_nex(["prepare", str(tmp_path / "photos"), flag, value])
    assert code == 2 and f"nex: error: {flag} {value}" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("device", ["mps", "", "ü✓", "cuda:x"])
def test_bake_refuses_a_device_torch_does_not_know(tmp_path, device):
    code, err = run_nex(["bake", str(tmp_path), "--device", device])
    assert code == 2 and f"nex: error: --device {device!r}" in err and os.listdir(tmp_path) == []


def test_prepare_refuses_an_out_folder_that_holds_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text('{"kind": "start"}\n')
    (run / "config.toml").write_text("preset = 'tiny'\n")
    before = tree_hash(run)
    code, err = run_nex(["prepare", str(tmp_path / "photos"), "--out", str(run)])
    assert code == 2 and f"{run} exists and is not a scene folder" in err and tree_hash(run) == before
