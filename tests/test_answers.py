"""`nex cameras --json` and `nex doctor --json`: the commands (in-process) and the add-on side's reading
of their answers (nex_core.io.answers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import nex_core
from nex_core.cli import main
from nex_core.commands import doctor as doctor_cmd
from nex_core.io import jobs
from nex_core.io.answers import cameras as cameras_answer
from nex_core.io.answers.doctor import DoctorReport, PackageStatus
from nex_core.io.errors import FormatError
from nex_core.io.scene.loader import load_cameras

REPO = Path(__file__).resolve().parents[1]
DEMO_SCENE = REPO / "data" / "scenes" / "shiny_demo"


def _same_views(a, b) -> None:
    assert (a.format, a.names, a.train_ids, a.test_ids, a.ref_id, a.size) == \
        (b.format, b.names, b.train_ids, b.test_ids, b.ref_id, b.size)
    assert np.array_equal(a.near, b.near, equal_nan=True) and np.array_equal(a.far, b.far, equal_nan=True)
    for x, y in zip(a.cameras, b.cameras, strict=True):
        assert (x.width, x.height, x.fx, x.fy, x.cx, x.cy) == (y.width, y.height, y.fx, y.fy, y.cx, y.cy)
        assert x.name == y.name
        assert np.array_equal(x.c2w, y.c2w)


# --------------------------------------------------------------------------------------------------
# nex cameras


def test_cameras_json_is_what_load_cameras_reads(capsys):
    assert main(jobs.CamerasJob(DEMO_SCENE, holdout=5, ref_image="view_004").args()) == 0
    out = capsys.readouterr().out
    views = jobs.CamerasJob.read_answer(out)
    direct = load_cameras(DEMO_SCENE, holdout=5, ref_image="view_004")
    _same_views(views, direct)
    assert views.root == DEMO_SCENE and views.names[views.ref_id] == "images/view_004.png"
    assert views.test_ids == [0, 5, 10, 15]


def test_cameras_text_lists_every_view(capsys):
    assert main(["cameras", str(DEMO_SCENE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    views = load_cameras(DEMO_SCENE)
    assert f"{len(views.names)} views ({len(views.test_ids)} held out)" in lines[0]
    assert len(lines) == 1 + len(views.names)
    assert lines[1 + views.ref_id].startswith("ref ") and lines[1].startswith("test")


def test_unknown_bounds_travel_as_null():
    views = load_cameras(DEMO_SCENE)
    near = views.near.copy()
    near[2] = np.nan
    views = replace(views, near=near)
    text = cameras_answer.encode(views)
    assert json.loads(text)["near"][2] is None
    _same_views(cameras_answer.decode(text), views)


def test_bad_scene_is_a_nex_error(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert main(["cameras", str(tmp_path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "nex: error: no photos found" in captured.err


@pytest.mark.parametrize("text, words", [
    ("NEX-CAMERAS {}", "not JSON"),
    ('{"kind": "nex-doctor", "version": 1}', "not an answer of `nex cameras"),
    ('{"kind": "nex-cameras", "version": 99}', "version 99"),
    ('{"kind": "nex-cameras", "version": 1, "root": "/s"}', "incomplete"),
])
def test_camera_answers_refused(text, words):
    with pytest.raises(FormatError, match=words):
        cameras_answer.decode(text)


# --------------------------------------------------------------------------------------------------
# nex doctor


def test_doctor_json_reports_this_python(capsys):
    assert main(jobs.DoctorJob().args()) == 0
    report = jobs.DoctorJob.read_answer(capsys.readouterr().out)
    assert report.ok and report.missing == []
    assert report.python == sys.version.split()[0] and report.executable == sys.executable
    assert report.nex_core == nex_core.__version__
    assert Path(report.nex_core_path) == Path(nex_core.__file__).resolve().parent
    import torch

    assert report.package("torch").version.split("+")[0] == torch.__version__.split("+")[0]
    assert report.cuda == torch.cuda.is_available() and (report.device == "CPU") == (not report.cuda)
    from nex_core.runtime.device import preferred_field, resolve_device

    assert report.network == preferred_field(resolve_device("auto"), "auto") and report.network in ("mlp", "grid")
    assert f"network {report.network}" in report.summary()
    older = report.to_dict()
    del older["network"]  # an answer from before the field was reported
    assert DoctorReport.decode(json.dumps(older)).network == ""
    assert {p.name for p in report.packages} >= {"torch", "numpy", "pillow", "rich", "pycolmap"}


def test_doctor_reports_missing_packages_as_data(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if it were absent
    monkeypatch.setattr(doctor_cmd, "PACKAGES", doctor_cmd.PACKAGES + (
        ("nex-no-such-package", "nex_no_such_package", True, "a test"),
        ("nex-no-such-extra", "nex_no_such_extra", False, "a test")))
    assert main(["doctor", "--json"]) == 1
    report = DoctorReport.decode(capsys.readouterr().out)
    assert not report.ok and report.missing == ["torch", "nex-no-such-package"]
    missing = report.package("nex-no-such-package")
    assert missing.version is None and missing.error.startswith("ModuleNotFoundError")
    assert not report.package("nex-no-such-extra").present and not report.cuda and report.network == ""
    assert report.summary().endswith("torch MISSING, also missing: nex-no-such-package")


def test_doctor_text(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "ok" and "torch" in out and f"nex_core {nex_core.__version__}" in out


def test_doctor_in_a_python_whose_torch_fails_to_import(tmp_path):
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('this torch is broken')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run(jobs.DoctorJob().argv(sys.executable), capture_output=True, text=True, env=env,
                          timeout=300)
    report = jobs.DoctorJob.read_answer(proc.stdout)
    assert proc.returncode == 1 and report.missing == ["torch"]
    assert report.package("torch").error == "ImportError: this torch is broken"
    assert report.package("numpy").present and "torch MISSING" in report.summary()


def _report(**changes) -> DoctorReport:
    packages = [PackageStatus("torch", "torch", True, "training", "2.13.0"),
                PackageStatus("rich", "rich", True, "output", "13.7"),
                PackageStatus("pycolmap", "pycolmap", False, "prepare", None, "ModuleNotFoundError: x")]
    return replace(DoctorReport("3.11.9", "/py", "0.1.0", "/src/nex_core", packages), **changes)


def test_summaries():
    assert _report().summary() == "Python 3.11.9, nex_core 0.1.0, torch 2.13.0, no CUDA (CPU only)"
    assert _report(cuda=True, device="NVIDIA H200").summary().endswith("torch 2.13.0, CUDA: NVIDIA H200")
    report = _report()
    report.packages[0].version = None
    assert report.summary() == "Python 3.11.9, nex_core 0.1.0, torch MISSING" and not report.ok
    assert _report().ok  # an optional package missing is no failure


def test_doctor_answer_round_trip_and_refusals():
    report = _report(cuda=True, device="GPU 0")
    raw = json.loads(report.encode())
    assert raw["kind"] == "nex-doctor" and raw["missing"] == [] and raw["ok"] is True
    assert DoctorReport.decode(report.encode()) == report
    for text, words in (("", "not JSON"), ("[]", "not an answer"),
                        ('{"kind": "nex-doctor", "version": 2}', "version 2"),
                        ('{"kind": "nex-doctor", "version": 1, "python": "3"}', "incomplete")):
        with pytest.raises(FormatError, match=words):
            DoctorReport.decode(text)
