"""The add-on's jobs (nex_core.io.jobs): each builds the command line it should, and the real parser
accepts every flag it emits with the values it meant."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nex_core.cli import build_parser
from nex_core.io import jobs

PY = sys.executable
RUN = Path("/runs/shiny")


def _parsed(job: jobs.NexJob):
    argv = job.argv(PY)
    assert argv[:3] == [PY, "-m", "nex_core.cli"]
    return build_parser().parse_args(argv[3:])


def test_prepare():
    job = jobs.PrepareJob(Path("/photos"), Path("/photos_scene"), force=True)
    assert job.args() == ["prepare", "/photos", "--out", "/photos_scene", "--force"]
    args = _parsed(job)
    assert (args.command, args.photos, args.out, args.force) == ("prepare", "/photos", "/photos_scene", True)
    assert job.events_path == Path("/photos_scene/events.jsonl") and job.run_dir is None and job.log_path is None
    assert "--force" not in jobs.PrepareJob(Path("/p"), Path("/s")).args()


def test_train_with_the_preset_only():
    job = jobs.TrainJob(Path("/scene"), RUN, preset="tiny")
    assert job.args() == ["train", "/scene", "--preset", "tiny", "--out", str(RUN)]
    args = _parsed(job)
    assert (args.scene, args.preset, args.out, args.resume, args.no_eval) == ("/scene", "tiny", str(RUN), None, False)
    assert (args.layers, args.sublayers, args.width, args.steps, args.minutes, args.field) == (None,) * 6
    assert job.events_path == RUN / "events.jsonl" and job.log_path == RUN / "train.log" and job.run_dir == RUN


def test_train_with_every_override():
    job = jobs.TrainJob(Path("/scene"), RUN, preset="fast", layers=4, sublayers=3, width=200, steps=30,
                        field="grid", evaluate=False)
    assert job.args()[-3:] == ["--field", "grid", "--no-eval"]
    args = _parsed(job)
    assert (args.layers, args.sublayers, args.width, args.steps, args.field, args.no_eval) == \
        (4, 3, 200, 30, "grid", True)


def test_train_to_a_time_budget():
    job = jobs.TrainJob(Path("/scene"), RUN, preset="fast", minutes=2.5)
    assert job.args() == ["train", "/scene", "--preset", "fast", "--out", str(RUN), "--minutes", "2.5"]
    args = _parsed(job)
    assert (args.minutes, args.steps) == (2.5, None)
    with pytest.raises(ValueError, match="steps .30. or minutes .2.5., not both"):
        jobs.TrainJob(Path("/scene"), RUN, steps=30, minutes=2.5)


def test_resume():
    job = jobs.ResumeJob(RUN, evaluate=False)
    assert job.args() == ["train", "--resume", str(RUN), "--no-eval"]
    args = _parsed(job)
    assert (args.command, args.resume, args.scene, args.no_eval) == ("train", str(RUN), None, True)
    assert job.kind == "train" and job.log_path == RUN / "train.log" and job.events_path == RUN / "events.jsonl"
    assert not _parsed(jobs.ResumeJob(RUN)).no_eval


def test_bake():
    job = jobs.BakeJob(RUN)
    args = _parsed(job)
    assert (args.command, args.run, args.out) == ("bake", str(RUN), None)
    assert job.log_path == RUN / "bake.log" and job.baked_dir == RUN / "baked" and job.events_path is None


def test_export():
    job = jobs.ExportJob(RUN)
    assert job.out == RUN / "export" / "mpi.glb"
    args = _parsed(job)
    assert (args.command, args.run, args.gltf) == ("export", str(RUN), str(RUN / "export" / "mpi.glb"))
    assert _parsed(jobs.ExportJob(RUN, Path("/out/x.glb"))).gltf == "/out/x.glb"
    assert job.log_path == RUN / "export.log"


def test_cameras():
    job = jobs.CamerasJob(Path("/scene"), holdout=0, ref_image="view_003")
    args = _parsed(job)
    assert (args.command, args.scene, args.json, args.holdout, args.ref_image) == \
        ("cameras", "/scene", True, 0, "view_003")
    assert "--ref-image" not in jobs.CamerasJob(Path("/scene")).args()
    assert _parsed(jobs.CamerasJob(Path("/scene"))).holdout == 8


def test_doctor():
    args = _parsed(jobs.DoctorJob())
    assert (args.command, args.json) == ("doctor", True)
    assert jobs.DoctorJob().log_path is None


@pytest.mark.parametrize("job", [jobs.PrepareJob(Path("/p"), Path("/s")), jobs.TrainJob(Path("/s"), RUN),
                                 jobs.ResumeJob(RUN), jobs.BakeJob(RUN), jobs.ExportJob(RUN),
                                 jobs.CamerasJob(Path("/s")), jobs.DoctorJob()])
def test_every_job_runs_a_command_of_its_kind(job):
    assert _parsed(job).command == ("train" if job.kind == "train" else job.kind)
    assert callable(_parsed(job).func)
