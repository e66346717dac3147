"""The compiled CPU kernel (nex_core.model.cpu_kernels) against torch's operations, and the fallbacks where it
can't be built or loaded."""

import pytest
import torch

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
    assert "no-such-cc" in cpu_kernels.native_kernels_error()
    grad, out = bf16_pair(5, 4)
    got, none = fused_mlp.leaky_relu_gradient(grad, out, 0.01, sums=False)
    assert none is None and torch.equal(got, torch.ops.aten.leaky_relu_backward(grad, out, 0.01, True))


def test_a_damaged_cached_build_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path))
    compiler = cpu_kernels._compiler()
    if compiler is None:
        pytest.skip("no C compiler")
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
    from test_fused_mlp import outputs_and_grads, small_model
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
