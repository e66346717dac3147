"""Held-out quality of every setting on every scene of the suite at fixed wall-clock budgets: the table
that decides the defaults (issue 15).

    .venv/bin/python tools/bench_quality.py                                   # the whole matrix (hours)
    .venv/bin/python tools/bench_quality.py --scenes deep_matte,refraction --settings fast,fast:grid \\
        --minutes 1,3 --captures clean
    .venv/bin/python tools/bench_quality.py --report-only --write-docs       # the table from cached cells

Each cell trains with ``nex train --minutes M`` (the schedule, evaluations and checkpoints are fractions of
the run) and is scored by ``nex eval`` on the held-out views (every 8th): PSNR and SSIM of the render as
it is (identity colour), and for phone captures also after fitting each view's colour on one half and
scoring the other (``psnr_colour_fit``). Scenes: the shipped one (``shiny_demo``) and the five of
``tools/scene_suite.py`` (rendered with Blender on first use and cached there); the ``phone`` capture of
a suite scene is a hand-held, distorted, exposure-drifting JPEG capture that ``nex prepare`` poses and
undistorts first. A setting is ``preset[:field[:appearance]]``.

Every finished cell is stored under ``--work`` (keyed by the setting and a hash of nex_core's sources),
so an interrupted run resumes and a changed nex_core trains again. Budgets are wall clock: run it on an
idle machine (the load average before each cell is recorded). The montages (ground truth | render |
error) show the first held-out view of the first setting at the largest budget each scene and capture has.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from benchmark.montage import montage  # noqa: E402
from benchmark.quality_matrix import (CAPTURES, REPO, SHIPPED, Case, SceneRequest, Setting,  # noqa: E402
                                      cached_result, code_hash, store_result, train_and_evaluate,
                                      training_scene)
from benchmark.quality_table import report, write_section  # noqa: E402

SUITE = ("shiny_tabletop", "deep_matte", "refraction", "fine_detail", "low_light")
DEFAULT_WORK = Path.home() / ".cache" / "nex-bench-quality"
DOCS = REPO / "docs"


def _list(text: str) -> list[str]:
    """Split on the commas outside brackets, so that a setting may hold a TOML list
    (``fast@train.decay_at=[0.5,0.75]``)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [t for t in items if t]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default=",".join((SHIPPED, *SUITE)), help="comma-separated (default: all six)")
    p.add_argument("--captures", default="clean,phone", help="clean, phone or both (phone: suite scenes only)")
    p.add_argument("--settings", default="fast,fast:grid", help="comma-separated preset[:field[:appearance]][@section.key=value+...]")
    p.add_argument("--minutes", default="1,3,10", help="comma-separated wall-clock budgets per cell")
    p.add_argument("--size", type=int, nargs=2, default=[160, 120], metavar=("W", "H"), help="suite render size")
    p.add_argument("--views", type=int, default=20, help="views per suite render")
    p.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel of the suite renders")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"cells, runs and logs (default {DEFAULT_WORK})")
    p.add_argument("--json", type=Path, help="write every cell and the machine here")
    p.add_argument("--montages", type=Path, default=DOCS / "img" / "quality", help="folder for the montage PNGs")
    p.add_argument("--write-docs", action="store_true", help="put the tables into --doc")
    p.add_argument("--doc", type=Path, default=DOCS / "benchmarks.md", help="the page --write-docs updates")
    p.add_argument("--heading", default="## Quality at fixed wall-clock budgets (`tools/bench_quality.py`)")
    p.add_argument("--rerun", action="store_true", help="train every cell again even if it is cached")
    p.add_argument("--reuse-code", default="",
                   help="comma-separated earlier nex_core hashes whose cached cells stand in where the current code "
                        "has none: only for changes that do not alter what the cells train (e.g. a new setting "
                        "that is off in them, checked bit-identical); the report names each cell's code")
    p.add_argument("--report-only", action="store_true", help="train nothing: the table from the cached cells")
    p.add_argument("--prepare-only", action="store_true",
                   help="render the scenes and run nex prepare on the phone captures, train nothing (the untimed "
                        "work, e.g. while the machine is busy)")
    args = p.parse_args(argv)
    args.scenes, args.captures = _list(args.scenes), _list(args.captures)
    args.reuse_code = _list(args.reuse_code)
    try:
        args.settings = [Setting.parse(s) for s in _list(args.settings)]
        args.minutes = [float(m) for m in _list(args.minutes)]
    except ValueError as exc:
        p.error(f"--settings/--minutes: {exc}")
    for scene in args.scenes:
        if scene not in (SHIPPED, *SUITE):
            p.error(f"--scenes: unknown scene {scene!r} (choose from {', '.join((SHIPPED, *SUITE))})")
    for capture in args.captures:
        if capture not in CAPTURES:
            p.error(f"--captures: unknown capture {capture!r} (clean or phone)")
    if not args.settings or not args.minutes or any(m <= 0 for m in args.minutes):
        p.error("--settings and --minutes need at least one entry each, and every budget must be positive")
    if args.views < 8:
        p.error(f"--views {args.views}: give at least 8, so that every 8th view can be held out")
    if not cases(args):
        p.error("no cells: the phone capture exists only for the suite scenes (" + ", ".join(SUITE) + ")")
    return args


def cases(args: argparse.Namespace) -> list[Case]:
    """The matrix in the order it runs: scene by scene, so a partial run already covers whole scenes."""
    out = []
    for scene in args.scenes:
        for capture in args.captures:
            if scene == SHIPPED and capture != "clean":
                continue
            out += [Case(scene, capture, s, m) for m in args.minutes for s in args.settings]
    return out


def _scene_request(args: argparse.Namespace) -> SceneRequest:
    return SceneRequest(args.size[0], args.size[1], args.views, args.samples)


def _cached_cell(args: argparse.Namespace, case: Case, code: str) -> dict | None:
    """The case's cached result for the current code, else for the first of ``--reuse-code`` that has one."""
    for candidate in (code, *args.reuse_code):
        result = cached_result(args.work / "cells" / f"{case.key(candidate)}.json")
        if result is not None:
            return result
    return None


def run_matrix(args: argparse.Namespace, code: str, log=print) -> list[dict]:
    """Every cell, from the cache where it is there (and not ``--rerun``), else trained now."""
    req = _scene_request(args)
    todo = cases(args)
    results, scene_dirs = [], {}
    cached = {c: None if args.rerun else _cached_cell(args, c, code) for c in todo}
    fresh = [c for c in todo if cached[c] is None]
    log(f"[quality] {len(todo)} cells, {len(todo) - len(fresh)} cached; training the rest takes at least "
        f"{sum(c.minutes for c in fresh):g} minutes")
    for k, case in enumerate(todo, 1):
        cell = args.work / "cells" / f"{case.key(code)}.json"
        result = cached[case]
        if result is None and not args.report_only:
            where = (case.scene, case.capture)
            if where not in scene_dirs:
                scene_dirs[where] = training_scene(case.scene, case.capture, req, args.work)
            figures = train_and_evaluate(case, scene_dirs[where], args.work / "runs" / case.key(code),
                                         args.work / "logs")
            result = store_result(cell, case, figures, code)
        if result is None:
            continue
        log(f"[quality] {k}/{len(todo)} {case.scene:15s} {case.capture:5s} {case.setting.label:18s} "
            f"{case.minutes:4g} min: {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f} ({result['steps']} steps)")
        results.append(result)
    return results


def make_montages(args: argparse.Namespace, results: list[dict], code: str) -> list[Path]:
    """One montage per scene and capture: the first setting at the largest budget that scene has, first
    held-out view."""
    first = args.settings[0]
    chosen: dict[tuple[str, str], dict] = {}
    for r in results:
        if r["label"] == first.label and r.get("first_view"):
            where = (r["scene"], r["capture"])
            if where not in chosen or r["minutes"] > chosen[where]["minutes"]:
                chosen[where] = r
    paths = []
    for r in chosen.values():
        case = Case(r["scene"], r["capture"], first, r["minutes"])
        eval_dir = args.work / "runs" / case.key(r.get("code", code)) / "eval"
        stem = r["first_view"]
        if not (eval_dir / f"{stem}.png").is_file():
            continue  # the run folder was removed: the cell's figures are cached, its pictures are not
        title = (f"{r['scene']} ({r['capture']}), {first.label}, {r['minutes']:g} min: {stem}, "
                 f"mean of the held-out views {r['psnr']:.2f} dB")
        paths.append(montage(eval_dir / f"{stem}_gt.png", eval_dir / f"{stem}.png",
                             args.montages / f"{r['scene']}-{r['capture']}.png", title))
    return paths


def prepare_scenes(args: argparse.Namespace) -> None:
    """Render every scene and capture of the matrix and pose the phone captures (all cached)."""
    req = _scene_request(args)
    for scene, capture in dict.fromkeys((c.scene, c.capture) for c in cases(args)):
        print(f"[quality] {scene} ({capture}): {training_scene(scene, capture, req, args.work)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare_only:
        try:
            prepare_scenes(args)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    from benchmark.machine import load_average, machine_info

    machine = machine_info()
    machine["load_start"] = load_average()
    code = code_hash()
    try:
        results = run_matrix(args, code)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    machine["load_end"] = load_average()
    montages = make_montages(args, results, code)
    command = "tools/bench_quality.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    body = report(results, machine, command, montages, args.doc.parent, code)
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "code": code, "command": command, "cells": results},
                                        indent=1))
    if args.write_docs:
        stamp = time.strftime("%Y-%m-%d")
        write_section(args.doc, f"{args.heading}, {stamp}", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
