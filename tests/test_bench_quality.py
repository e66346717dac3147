"""tools/bench_quality.py: its miniature (the shipped scene, the tiny preset, seconds of budget), its cache,
tables, montages and the docs section it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "bench_quality.py"
sys.path.insert(0, str(ROOT / "tools"))

from benchmark.montage import ERROR_GAIN, error_image  # noqa: E402
from benchmark.quality_matrix import Setting  # noqa: E402
from benchmark.quality_table import END, START, capture_table, write_section  # noqa: E402


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_the_miniature_trains_scores_caches_and_draws(tmp_path):
    work, img, doc = tmp_path / "work", tmp_path / "docs" / "img", tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    doc.write_text("# Benchmarks\n\nearlier text\n")
    flags = ["--scenes", "shiny_demo", "--captures", "clean", "--settings", "tiny,tiny:grid", "--minutes", "0.1",
             "--work", str(work), "--montages", str(img), "--doc", str(doc)]
    out = _run(*flags, "--json", str(tmp_path / "a.json"), "--write-docs")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cells = json.loads((tmp_path / "a.json").read_text())["cells"]
    assert [c["label"] for c in cells] == ["tiny", "tiny grid"]
    for c in cells:
        # Trained for real: steps were taken in the budget and the render is far from a blank image.
        assert c["steps"] > 0 and c["psnr"] > 12 and 0 < c["ssim"] <= 1 and c["views"] >= 1, c
        assert c["train_s"] >= 6 * 0.9  # a 0.1-minute budget, the whole command counted
    picture = Image.open(img / "shiny_demo-clean.png")
    render = Image.open(next((work / "runs").glob("shiny_demo-clean-tiny-mlp-off-plain-*")) / "eval" / "view_000.png")
    assert picture.width == 3 * 2 * render.width + 8  # three panels at twice the size, two gaps
    page = doc.read_text()
    assert "earlier text" in page and START in page and END in page and "| shiny_demo | " in page
    assert "![shiny_demo-clean](img/shiny_demo-clean.png)" in page

    # Again, with the cells cached: nothing trains, the same figures come back, the section is replaced.
    again = _run(*flags, "--json", str(tmp_path / "b.json"), "--write-docs", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 cells, 2 cached" in again.stdout
    assert json.loads((tmp_path / "b.json").read_text())["cells"] == cells
    assert doc.read_text().count(START) == 1

    # Cells of an earlier nex_core stand in only when asked for, and the report names their code.
    current = cells[0]["code"]
    for path in (work / "cells").glob(f"*-{current}.json"):
        cell = json.loads(path.read_text())
        cell["code"] = "0123456789"
        path.with_name(path.name.replace(current, "0123456789")).write_text(json.dumps(cell))
        path.unlink()
    alone = _run(*flags, "--report-only", timeout=120)
    assert alone.returncode == 0 and "2 cells, 0 cached" in alone.stdout, alone.stdout[-2000:]
    reused = _run(*flags, "--report-only", "--reuse-code", "0123456789", timeout=120)
    assert reused.returncode == 0 and "2 cells, 2 cached" in reused.stdout, reused.stdout[-2000:]
    assert "0123456789 (2 cells, reused with --reuse-code)" in reused.stdout


def test_bad_flags_are_refused_before_anything_runs(tmp_path):
    for flags, words in [(["--scenes", "nowhere"], "unknown scene 'nowhere'"),
                         (["--settings", "fast:voxels"], "field must be one of mlp, grid"),
                         (["--minutes", "0"], "every budget must be positive"),
                         (["--scenes", "shiny_demo", "--captures", "phone"], "only for the suite scenes"),
                         (["--captures", "film"], "unknown capture 'film'")]:
        out = _run(*flags, "--work", str(tmp_path), timeout=120)
        assert out.returncode == 2 and words in out.stderr, (flags, out.stderr)
    assert not any(tmp_path.iterdir())


def test_settings_parse_with_their_defaults():
    assert Setting.parse("fast") == Setting("fast", "mlp", "off")
    assert Setting.parse("fast:grid").label == "fast grid"
    assert Setting.parse("paper:mlp:affine").train_flags()[-2:] == ["--appearance", "affine"]
    with pytest.raises(ValueError, match="preset must be"):
        Setting.parse("quick")
    tuned = Setting.parse("fast:grid@model.grid_max=64+train.lr_grid=0.005")
    assert tuned.label == "fast grid (grid_max=64, lr_grid=0.005)"
    assert tuned.train_flags()[-4:] == ["--set", "model.grid_max=64", "--set", "train.lr_grid=0.005"]
    assert tuned.slug != Setting.parse("fast:grid").slug
    with pytest.raises(ValueError, match="not SECTION.KEY=VALUE"):
        Setting.parse("fast:grid@grid_max=64")


def test_a_setting_may_hold_a_toml_list():
    import bench_quality

    texts = bench_quality._list("fast, fast@train.decay_at=[0.36,0.73]+train.evals=2 ,fast:grid")
    assert texts == ["fast", "fast@train.decay_at=[0.36,0.73]+train.evals=2", "fast:grid"]
    assert Setting.parse(texts[1]).train_flags()[-4:] == ["--set", "train.decay_at=[0.36,0.73]",
                                                         "--set", "train.evals=2"]


def test_the_table_means_each_column_over_the_scenes_that_have_it():
    cell = lambda scene, label, psnr: {"scene": scene, "capture": "clean", "label": label, "minutes": 1.0,  # noqa: E731
                                       "psnr": psnr, "ssim": 0.5, "steps": 10}
    rows = [cell("a", "fast", 30.0), cell("a", "fast grid", 28.0), cell("b", "fast", 20.0),
            cell("b", "fast grid", 24.0), cell("c", "fast", 99.0)]
    table = capture_table(rows, "clean").splitlines()
    assert table[0] == "| scene | fast, 1 min | fast grid, 1 min |"
    assert table[4] == "| c | 99.00 / 0.500 | - |"
    assert table[5] == "| mean (3 scenes) | **49.67** / 0.500 | **26.00** / 0.500 (2 scenes) |"
    assert capture_table(rows, "phone") == ""


def test_the_docs_section_is_replaced_not_repeated(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# B\n\nkeep me\n")
    write_section(doc, "## Q, day 1", "first\n")
    write_section(doc, "## Q, day 2", "second\n")
    text = doc.read_text()
    assert "keep me" in text and "second" in text and "first" not in text and text.count(START) == 1


def test_the_error_panel_is_black_where_the_render_is_right():
    truth = np.full((4, 5, 3), 100, np.uint8)
    render = truth.copy()
    render[1, 2] = [110, 100, 90]
    err = error_image(render, truth)
    assert err.shape == (4, 5, 3) and err[0, 0].tolist() == [0, 0, 0]
    assert err[1, 2, 0] == int(20 / 3 * ERROR_GAIN)
