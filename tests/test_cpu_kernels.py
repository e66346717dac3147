"""The compiled CPU kernel (nex_core.model.cpu_kernels) against torch's operations, and the fallbacks where it
can't be built or loaded."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.models import outputs_and_grads, small_model

from nex_core.model import cpu_kernels, fused_mlp


@pytest.fixture(autouse=True)
def fresh_kernels():
    cpu_kernels.reset()
    yield
    cpu_kernels.reset()


def kernels_or_skip():
    lib = cpu_kernels.native_kernels()
    if lib is None:
        pytest.skip(f"no compiled kernels here: {cpu_kernels.native_kernels_error()}")
    return lib


def bf16_pair(rows: int, cols: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(rows, cols, generator=gen).bfloat16()
    out = torch.randn(rows, cols, generator=gen).bfloat16()
    out[0, : cols // 2] = 0.0  # the leaky ReLU's kink: +0 and -0 take the slope, as in torch
    out[-1, : cols // 2] = -0.0
    return grad, out


@pytest.mark.parametrize("rows,cols", [(1001, 128), (7, 25), (1, 384), (4097, 3)])
def test_kernel_equals_torch(rows, cols):
    kernels_or_skip()
    grad, out = bf16_pair(rows, cols)
    got, sums = cpu_kernels.native_leaky_relu_grad(grad, out, 0.01)
    want = torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True)
    assert torch.equal(got, want)  # bit for bit
    assert sums.dtype == torch.float32
    torch.testing.assert_close(sums, want.float().sum(0), rtol=1e-5, atol=1e-4)


def test_kernel_keeps_nan_and_inf():
    kernels_or_skip()
    grad, out = bf16_pair(4, 8)
    grad[1, 2], grad[2, 3] = float("nan"), float("inf")
    got, _ = cpu_kernels.native_leaky_relu_grad(grad, out, 0.2)
    want = torch.ops.aten.leaky_relu_backward(grad, out, 0.2, True)
    assert torch.isnan(got[1, 2]) and torch.equal(got.isinf(), want.isinf())
    finite = want.isfinite()
    assert torch.equal(got[finite], want[finite])


def test_kernel_declines_what_it_does_not_handle():
    kernels_or_skip()
    grad, out = bf16_pair(16, 8)
    assert cpu_kernels.native_leaky_relu_grad(grad.float(), out.float(), 0.01) is None  # fp32
    assert cpu_kernels.native_leaky_relu_grad(grad.t(), out.t(), 0.01) is None  # not contiguous
    assert cpu_kernels.native_leaky_relu_grad(grad[None], out[None], 0.01) is None  # not 2-D
    wide = torch.zeros(2, cpu_kernels.MAX_COLUMNS + 1, dtype=torch.bfloat16)
    assert cpu_kernels.native_leaky_relu_grad(wide, wide, 0.01) is None


def test_turned_off_falls_back_to_torch(monkeypatch):
    monkeypatch.setenv("NEX_NATIVE_KERNELS", "0")
    assert cpu_kernels.native_kernels() is None
    assert "NEX_NATIVE_KERNELS" in cpu_kernels.native_kernels_error()
    grad, out = bf16_pair(33, 16)
    got, sums = fused_mlp.leaky_relu_gradient(grad, out, 0.01, sums=True)
    assert torch.equal(got, torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True))
    torch.testing.assert_close(sums.float(), got.float().sum(0), rtol=1e-2, atol=1e-2)


def test_a_missing_compiler_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert cpu_kernels.native_kernels() is None
    if cpu_kernels.target_flags() is None:  # a CPU without AVX-512: no build is tried, and the reason says why
        assert "AVX-512" in cpu_kernels.native_kernels_error()
    else:
        assert "no-such-cc" in cpu_kernels.native_kernels_error()
    grad, out = bf16_pair(5, 4)
    got, none = fused_mlp.leaky_relu_gradient(grad, out, 0.01, sums=False)
    assert none is None and torch.equal(got, torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True))


def test_a_damaged_cached_build_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path))
    compiler = cpu_kernels._compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    if cpu_kernels.target_flags() is None:
        pytest.skip("no kernel build on this CPU (no AVX-512)")
    damaged = cpu_kernels.library_path(compiler)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a shared library")  # e.g. damaged on disk; builds themselves land by rename
    kernels_or_skip()
    assert damaged.read_bytes()[:4] == b"\x7fELF"
    grad, out = bf16_pair(9, 8)
    got, _ = cpu_kernels.native_leaky_relu_grad(grad, out, 0.01)
    assert torch.equal(got, torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True))


def test_fused_mlp_gradients_are_the_same_with_and_without_the_kernel(monkeypatch):
    """bf16 training through F_theta: identical weight gradients, bias gradients equal up to the sums'
    rounding (fp32 column sums in the kernel, a bf16 ones-product in torch's path)."""
    kernels_or_skip()
    model = small_model(dtype=torch.float32)
    coords = torch.rand(6, 300, 2) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with_kernel = outputs_and_grads(model, coords, fused=True)
        monkeypatch.setenv("NEX_NATIVE_KERNELS", "0")
        cpu_kernels.reset()
        without = outputs_and_grads(model, coords, fused=True)
    assert cpu_kernels.native_kernels() is None
    for name, grad in with_kernel[2].items():
        ref = without[2][name]
        scale = float(ref.abs().max())
        assert float((grad - ref).abs().max()) <= 1e-2 * scale + 1e-6, name
        if name.endswith("weight"):
            assert torch.equal(grad, ref), name


# ------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_column_sums_are_the_same_bits_at_any_thread_count(threads):
    """The sums are added in a fixed order: equal across runs and across thread counts, bit for bit."""
    kernels_or_skip()
    grad, out = bf16_pair(20011, 96, seed=3)  # many blocks, a ragged last one
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, reference = cpu_kernels.native_leaky_relu_grad(grad, out, 0.01)
        torch.set_num_threads(threads)
        runs = [cpu_kernels.native_leaky_relu_grad(grad, out, 0.01)[1] for _ in range(5)]
    finally:
        torch.set_num_threads(before)
    for sums in runs:
        assert torch.equal(sums, reference)
    torch.testing.assert_close(reference, torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True).float().sum(0),
                               rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------------------ target


V4_FLAGS = " ".join(sorted(cpu_kernels.X86_64_V4))


def test_the_build_target_is_a_fixed_level_never_native():
    with_v4 = f"processor\t: 0\nflags\t\t: {V4_FLAGS} amx_bf16\n"
    avx2_only = "processor\t: 0\nflags\t\t: " + " ".join(sorted(cpu_kernels.X86_64_V4 - {"avx512f", "avx512bw"}))
    assert cpu_kernels.target_flags(with_v4, "x86_64") == ["-march=x86-64-v4"]
    assert cpu_kernels.target_flags(avx2_only, "x86_64") is None  # no build: torch is faster there
    assert cpu_kernels.target_flags("", "aarch64") == []
    assert not [f for f in cpu_kernels.BASE_FLAGS if "native" in f]


def test_no_build_where_the_kernel_would_not_be_used(monkeypatch, tmp_path):
    """fp32 tensors never reach the kernel, so nothing is compiled (fp32 CPUs pay nothing)."""
    log = tmp_path / "cc.log"
    monkeypatch.setenv("CC", str(logging_compiler(tmp_path, log)))
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path / "cache"))
    grad, out = bf16_pair(16, 8)
    assert cpu_kernels.native_leaky_relu_grad(grad.float(), out.float(), 0.01) is None
    assert not log.exists() and not (tmp_path / "cache").exists()


def test_no_build_on_a_cpu_without_avx512(monkeypatch, tmp_path):
    log = tmp_path / "cc.log"
    monkeypatch.setenv("CC", str(logging_compiler(tmp_path, log)))
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu_kernels, "target_flags", lambda *a: None)
    assert cpu_kernels.native_kernels() is None
    assert "AVX-512" in cpu_kernels.native_kernels_error()
    assert not log.exists()


# ------------------------------------------------------------------------------------ the cache


def logging_compiler(folder: Path, log: Path, fail: bool = False, version: str = "") -> Path:
    """A $CC that appends each build's arguments to ``log`` and runs the real compiler (or fails)."""
    real = shutil.which("cc") or shutil.which("gcc")
    script = folder / f"cc-{'fail' if fail else 'ok'}{version}"
    version_line = f'echo "test cc {version}"; exit 0' if version else f'exec {real} --version'
    body = "echo 'cc: error: broken' >&2; exit 1" if fail else f'exec {real} "$@"'
    script.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then {version_line}; fi\n"
                      f"echo \"$@\" >> {log}\nsleep 0.5\n{body}\n")
    script.chmod(0o755)
    return script


def builds_logged(log: Path) -> int:
    return sum("-shared" in line for line in log.read_text().splitlines()) if log.exists() else 0


def test_the_cache_folder_is_private(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path / "cache"))
    kernels_or_skip()
    folder = tmp_path / "cache" / "native"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    path = cpu_kernels.loaded_library_path()
    assert path.parent == folder and not path.stat().st_mode & 0o022


def plant(tmp_path: Path, mode: int, owner: int | None = None) -> Path:
    """A file where the next build would be cached, planted before anything is loaded from there."""
    compiler = cpu_kernels._compiler()
    if compiler is None or cpu_kernels.target_flags() is None:
        pytest.skip("no kernel build on this machine")
    folder = cpu_kernels.private_folder(tmp_path / "cache" / "native")
    planted = cpu_kernels.library_path(compiler, cpu_kernels.build_flags(), folder)
    planted.write_bytes(b"planted")  # loading it would fail (the rebuild below shows it was not loaded)
    planted.chmod(mode)
    if owner is not None:
        os.chown(planted, owner, owner)
    return planted


def test_a_library_others_can_write_is_never_loaded(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path / "cache"))
    planted = plant(tmp_path, 0o666)
    kernels_or_skip()
    assert cpu_kernels.loaded_library_path() == planted
    assert planted.read_bytes()[:4] == b"\x7fELF" and not planted.stat().st_mode & 0o022


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_library_owned_by_someone_else_is_never_loaded(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path / "cache"))
    planted = plant(tmp_path, 0o644, owner=65534)
    kernels_or_skip()
    assert planted.stat().st_uid == os.getuid() and planted.read_bytes()[:4] == b"\x7fELF"


def test_a_shared_cache_folder_is_not_used(monkeypatch, tmp_path):
    """A cache folder others can write to is refused as a whole: the build goes to a private folder."""
    shared = tmp_path / "shared"
    (shared / "native").mkdir(parents=True)
    (shared / "native").chmod(0o777)
    monkeypatch.setenv("NEX_CACHE_DIR", str(shared))
    kernels_or_skip()
    path = cpu_kernels.loaded_library_path()
    assert shared not in path.parents
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and path.parent.stat().st_uid == os.getuid()
    assert not list((shared / "native").iterdir())


def test_compiler_version_is_part_of_the_key(tmp_path):
    log = tmp_path / "cc.log"
    one = logging_compiler(tmp_path, log, version="1")
    two = logging_compiler(tmp_path, log, version="2")
    flags = ["-O3"]
    assert cpu_kernels.library_path(str(one), flags, tmp_path) != cpu_kernels.library_path(str(two), flags, tmp_path)
    assert cpu_kernels.library_path(str(one), flags, tmp_path) == cpu_kernels.library_path(str(one), flags, tmp_path)


def test_a_failed_build_is_tried_once(monkeypatch, tmp_path):
    log = tmp_path / "cc.log"
    monkeypatch.setenv("CC", str(logging_compiler(tmp_path, log, fail=True)))
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu_kernels, "target_flags", lambda *a: [])
    assert cpu_kernels.native_kernels() is None
    assert "broken" in cpu_kernels.native_kernels_error()
    cpu_kernels.reset()  # as a second process would
    assert cpu_kernels.native_kernels() is None
    assert "earlier build failed" in cpu_kernels.native_kernels_error()
    assert ".failed" in cpu_kernels.native_kernels_error()  # names the file to delete
    assert builds_logged(log) == 1


PROBE = """
import torch
from nex_core.model import cpu_kernels
print(cpu_kernels.native_kernels() is not None, cpu_kernels.native_kernels_error())
"""


def test_processes_starting_together_build_once(monkeypatch, tmp_path):
    """DDP ranks on one machine: the first builds under the lock, the others wait and load its build."""
    kernels_or_skip()
    log = tmp_path / "cc.log"
    env = {**os.environ, "CC": str(logging_compiler(tmp_path, log)), "NEX_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(o.startswith("True") for o in outputs), outputs
    assert builds_logged(log) == 1
