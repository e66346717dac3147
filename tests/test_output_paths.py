"""Safe output writes (nex_core/io/output_paths.py) and the outputs that go through them: an unwritable
location is refused up front with the path named, a full disk while writing becomes a clear error, and
earlier outputs survive byte for byte."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nex_core import cli
from nex_core.io import output_paths
from nex_core.io.baked import read_baked, write_baked
from nex_core.io.baked import writer as baked_writer
from nex_core.io.errors import NexError, OutputError

from support.baked import write_small_baked


def tree_hash(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``root`` (folders as "dir")."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file: anything below it cannot be created, even by root."""
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def test_a_location_below_a_file_is_refused_up_front(blocker):
    with pytest.raises(OutputError, match=rf"{blocker}/sub/out.glb.*{blocker} is a file"):
        output_paths.check_output_file(blocker / "sub" / "out.glb", "glTF file")
    with pytest.raises(OutputError, match=rf"{blocker}/baked.*{blocker} is a file"):
        output_paths.check_output_dir(blocker / "baked")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        output_paths.check_output_dir(blocker)
    with pytest.raises(OutputError, match="is a folder; choose a file name"):
        output_paths.check_output_file(blocker.parent)
    assert blocker.read_text() == "not a folder"


def test_a_folder_of_other_files_is_never_replaced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="is not a folder of nex output .*move them"):
        with output_paths.replacing_dir(mine):
            pytest.fail("the body must not run")
    assert (mine / "notes.txt").read_text() == "keep" and sorted(os.listdir(tmp_path)) == ["mine"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: chmod cannot simulate it")
def test_an_unwritable_folder_is_refused_up_front(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=rf"no permission to write in {locked}"):
            output_paths.check_output_dir(locked / "a" / "eval")
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where nobody can create folders")
def test_a_folder_nobody_can_write_is_refused_up_front_even_for_root():
    with pytest.raises(OutputError, match=r"cannot create the .* /proc/nex-output-test/eval: /proc does not accept"):
        output_paths.check_output_dir(Path("/proc/nex-output-test/eval"))


def test_a_read_only_file_system_is_refused_up_front(tmp_path, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    (tmp_path / "old.glb").write_bytes(b"old")
    monkeypatch.setattr(output_paths.os, "mkdir", read_only)
    expected = rf"cannot replace the glTF file {tmp_path}/old.glb: {tmp_path} does not accept new files \(Read-only"
    with pytest.raises(OutputError, match=expected):
        output_paths.check_output_file(tmp_path / "old.glb", "glTF file")
    assert os.listdir(tmp_path) == ["old.glb"]


def test_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    output_paths.write_text(path, "old contents")
    monkeypatch.setattr(output_paths.os, "fsync", full_disk)
    with pytest.raises(OutputError, match=rf"cannot write the output file {path}: the disk is full"):
        output_paths.write_text(path, "new contents")
    assert path.read_text() == "old contents" and os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path):
    out = tmp_path / "eval"
    with output_paths.replacing_dir(out, "evaluation folder") as tmp:
        (tmp / "a.png").write_bytes(b"first")
    before = tree_hash(out)
    with pytest.raises(OutputError, match=rf"evaluation folder {out}: the disk is full"):
        with output_paths.replacing_dir(out, "evaluation folder", replaceable=lambda p: True) as tmp:
            (tmp / "a.png").write_bytes(b"second")
            full_disk()
    assert tree_hash(out) == before and os.listdir(tmp_path) == ["eval"]
    with output_paths.replacing_dir(out, replaceable=lambda p: True) as tmp:
        (tmp / "b.png").write_bytes(b"third")
    assert tree_hash(out) == {"b.png": hashlib.sha256(b"third").hexdigest()}


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    old, new = tmp_path / "out", tmp_path / "new"
    old.mkdir()
    (old / "x").write_text("old")
    new.mkdir()
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == new:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(output_paths.os, "replace", replace)
    with pytest.raises(OSError):
        output_paths.swap_into_place(new, old)
    assert (old / "x").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["new", "out"]


def test_a_bake_that_fills_the_disk_keeps_the_old_bake(tmp_path, monkeypatch):
    out = write_small_baked(tmp_path / "baked")
    baked = read_baked(out)
    before = tree_hash(out)
    monkeypatch.setattr(baked_writer, "_save_png", full_disk)
    with pytest.raises(OutputError, match=rf"baked MPI folder {out}: the disk is full"):
        write_baked(baked, out, max_texture=64)
    assert tree_hash(out) == before and os.listdir(tmp_path) == ["baked"]
    np.testing.assert_array_equal(read_baked(out).alpha.shape, baked.alpha.shape)


def test_a_bake_below_a_file_is_refused_before_anything_is_written(blocker):
    with pytest.raises(OutputError, match=rf"{blocker} is a file"):
        write_small_baked(blocker / "baked")
    assert sorted(os.listdir(blocker.parent)) == ["a_file"]


class _FillingFile(io.BytesIO):
    """A file that takes a few bytes, then reports a full disk."""

    def write(self, data) -> int:
        if self.tell() > 16:
            full_disk()
        return super().write(data)


def test_a_gltf_export_that_fills_the_disk_keeps_the_old_file(tmp_path, monkeypatch):
    from nex_core.export import gltf

    src = write_small_baked(tmp_path / "baked")
    glb = tmp_path / "mpi.glb"
    gltf.export_glb(src, glb, compress_level=1)
    before = glb.read_bytes()
    monkeypatch.setattr(gltf, "open", lambda *a, **k: _FillingFile(), raising=False)
    with pytest.raises(OutputError, match=rf"glTF file {glb}: the disk is full"):
        gltf.export_glb(src, glb, compress_level=1)
    assert glb.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["baked", "mpi.glb"]


def _fake_run(run_dir: Path, n_test: int = 2) -> SimpleNamespace:
    """Just what evaluate_run reads of a trained run (its renderer is replaced in the test)."""
    rng = np.random.default_rng(0)
    images = [rng.random((12, 16, 3), dtype=np.float32) for _ in range(n_test)]
    scene = SimpleNamespace(test_ids=list(range(n_test)), cameras=[None] * n_test, images=images,
                            names=[f"view_{i:03d}.png" for i in range(n_test)])
    return SimpleNamespace(run_dir=run_dir, scene=scene, model=None, ref_camera=None, amp_dtype=None, step=3,
                           cfg=SimpleNamespace(train=SimpleNamespace(render_chunk=64, appearance="off")))


def test_an_evaluation_that_fills_the_disk_keeps_the_old_one(tmp_path, monkeypatch):
    from nex_core.evaluation import evaluate

    run = _fake_run(tmp_path)
    monkeypatch.setattr(evaluate, "render_views", lambda model, ref, cams: (run.scene.images[0] * 0.9 for _ in cams))
    first = evaluate.evaluate_run(run, with_lpips=False)
    assert sorted(os.listdir(first.out_dir)) == ["metrics.csv", "metrics.json", "view_000.png", "view_000_gt.png",
                                                 "view_001.png", "view_001_gt.png"]
    before = tree_hash(first.out_dir)
    calls = []

    def imwrite(path, image):
        calls.append(path)
        if len(calls) == 3:
            full_disk()
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(evaluate.iio, "imwrite", imwrite)
    with pytest.raises(OutputError, match=rf"held-out evaluation folder {first.out_dir}: the disk is full"):
        evaluate.evaluate_run(run, with_lpips=False)
    assert tree_hash(first.out_dir) == before and os.listdir(tmp_path) == ["eval"]
    (first.out_dir / "keep.txt").write_text("user notes")  # no longer only evaluation output
    with pytest.raises(OutputError, match="is not a held-out evaluation folder"):
        evaluate.evaluate_run(run, with_lpips=False)
    assert len(calls) == 3  # refused before rendering anything


def test_cli_refuses_an_unwritable_output_with_exit_code_2(blocker, capsys):
    scene_like = blocker.parent / "run"
    scene_like.mkdir()
    assert cli.main(["bake", str(scene_like), "--out", str(blocker / "baked")]) == 2
    assert f"{blocker} is a file" in capsys.readouterr().err
    assert cli.main(["export", str(scene_like), "--gltf", str(blocker / "x.glb")]) == 2
    assert f"{blocker} is a file" in capsys.readouterr().err
    assert cli.main(["prepare", str(scene_like), "--out", str(blocker / "scene")]) == 2
    assert f"{blocker} is a file" in capsys.readouterr().err
    assert sorted(os.listdir(blocker.parent)) == ["a_file", "run"] and not any(scene_like.iterdir())


def test_output_errors_are_nex_errors():
    assert issubclass(OutputError, NexError)


def test_an_os_error_no_command_handled_is_exit_code_2_without_a_traceback(monkeypatch, capsys, tmp_path):
    import nex_core.io.scene.loader as loader

    def fails(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "somewhere"))

    monkeypatch.setattr(loader, "load_cameras", fails)
    assert cli.main(["cameras", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(cli.UNEXPECTED_OS_ERROR) and f"{tmp_path / 'somewhere'}: the disk is full" in err
    assert "Traceback" not in err
