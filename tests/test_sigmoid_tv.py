"""k0's sigmoid and total variation in the C kernel (nex_core.model.sigmoid_tv) against the plain autograd
reference, and the fallbacks where the kernel does not apply."""

from __future__ import annotations

import pytest
import torch

from nex_core.model import cpu_kernels, sigmoid_tv
from nex_core.model.total_variation import total_variation_reference


@pytest.fixture(autouse=True)
def fresh_kernels():
    cpu_kernels.reset()
    yield
    cpu_kernels.reset()


def needs_kernel():
    if sigmoid_tv.native_sigmoid_tv() is None:
        pytest.skip(f"no compiled kernel here: {sigmoid_tv.kernel_error()}")


def reference(x: torch.Tensor, render_weight: torch.Tensor | None, tv_weight: float):
    """Value and gradient of ``tv_weight * TV(sigmoid(x)) + sum(render_weight * sigmoid(x))`` by autograd."""
    x = x.detach().clone().requires_grad_()
    s = torch.sigmoid(x)
    tv = total_variation_reference(s)
    loss = tv_weight * tv + ((s * render_weight).sum() if render_weight is not None else 0.0)
    loss.backward()
    return s.detach(), tv.detach(), x.grad


def fused(x: torch.Tensor, render_weight: torch.Tensor | None, tv_weight: float):
    x = x.detach().clone().requires_grad_()
    s, tv = sigmoid_tv.sigmoid_and_tv(x)
    loss = tv_weight * tv + ((s * render_weight).sum() if render_weight is not None else 0.0)
    loss.backward()
    return s.detach(), tv.detach(), x.grad


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 3, 2, 2), (3, 3, 2, 40), (2, 3, 31, 2)])
@pytest.mark.parametrize("with_render", [True, False])
def test_kernel_equals_the_autograd_reference(shape, with_render):
    needs_kernel()
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g) * 2.0
    x[..., 1, :] = x[..., 0, :]  # equal neighbours: the sign of a zero difference is 0 in both
    render = torch.randn(shape, generator=g) if with_render else None
    want_s, want_tv, want_g = reference(x, render, 0.7)
    got_s, got_tv, got_g = fused(x, render, 0.7)
    assert torch.equal(got_s, want_s)
    torch.testing.assert_close(got_tv, want_tv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_g, want_g, rtol=1e-5, atol=1e-7)


def test_the_render_alone_or_the_tv_alone_gets_its_gradient():
    needs_kernel()
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    for use_s, use_tv in ((True, False), (False, True)):
        leaf = x.clone().requires_grad_()
        s, tv = sigmoid_tv.sigmoid_and_tv(leaf)
        (s.sum() if use_s else tv * 3.0).backward()
        ref = x.clone().requires_grad_()
        rs = torch.sigmoid(ref)
        (rs.sum() if use_s else total_variation_reference(rs) * 3.0).backward()
        torch.testing.assert_close(leaf.grad, ref.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_value_is_the_same_bits_at_any_thread_count(threads):
    needs_kernel()
    x = torch.randn(2, 3, 64, 70, generator=torch.Generator().manual_seed(2))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, reference_tv = sigmoid_tv.sigmoid_and_tv(x)
        torch.set_num_threads(threads)
        assert all(torch.equal(sigmoid_tv.sigmoid_and_tv(x)[1], reference_tv) for _ in range(3))
    finally:
        torch.set_num_threads(before)


def test_where_the_kernel_does_not_apply_torch_gives_the_same(monkeypatch):
    x = torch.randn(2, 3, 8, 9, generator=torch.Generator().manual_seed(3))
    render = torch.randn(2, 3, 8, 9, generator=torch.Generator().manual_seed(4))
    want = reference(x, render, 0.5)
    assert not sigmoid_tv.kernel_applies(x.double())
    assert not sigmoid_tv.kernel_applies(x.transpose(2, 3))
    monkeypatch.setenv("NEX_NATIVE_KERNELS", "0")
    cpu_kernels.reset()
    assert not sigmoid_tv.kernel_applies(x)
    assert "NEX_NATIVE_KERNELS" in sigmoid_tv.kernel_error()
    for got, expected in zip(fused(x, render, 0.5), want):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_a_missing_compiler_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("NEX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert sigmoid_tv.native_sigmoid_tv() is None
    assert "no-such-cc" in sigmoid_tv.kernel_error()
    x = torch.randn(1, 3, 4, 5)
    s, tv = sigmoid_tv.sigmoid_and_tv(x)
    torch.testing.assert_close(tv, total_variation_reference(torch.sigmoid(x)))


def test_the_build_target_is_a_fixed_level_never_native():
    v3 = "processor\t: 0\nflags\t\t: " + " ".join(sorted(sigmoid_tv.X86_64_V3))
    older = "processor\t: 0\nflags\t\t: sse2 ssse3 sse4_1 sse4_2 popcnt"
    assert sigmoid_tv.target_flags(v3, "x86_64") == ["-march=x86-64-v3"]
    assert sigmoid_tv.target_flags(older, "x86_64") == []  # still built, for the compiler's default target
    assert sigmoid_tv.target_flags("", "aarch64") == []
    assert not [f for f in sigmoid_tv.build_flags() if "native" in f]


def test_a_training_step_is_the_same_with_and_without_the_kernel(monkeypatch):
    """TrainingObjective's regularised loss and k0's gradient, kernel against torch's operations."""
    needs_kernel()
    from support.models import random_model

    from nex_core.model.appearance import AppearanceTransform
    from nex_core.training.trainer import TrainingObjective

    results = []
    for kernel in (True, False):
        if not kernel:
            monkeypatch.setenv("NEX_NATIVE_KERNELS", "0")
            cpu_kernels.reset()
        model, _, ref, _ = random_model("learned", seed=11)
        objective = TrainingObjective(model, AppearanceTransform(1, "off"), tv_weight=0.03)
        g = torch.Generator().manual_seed(5)
        origins = torch.zeros(64, 3)
        dirs = torch.cat([torch.rand(64, 2, generator=g) * 0.6 - 0.3, torch.ones(64, 1)], -1)
        rgb, reg = objective(origins, dirs, torch.zeros(64, dtype=torch.long))
        (rgb.square().mean() + reg).backward()
        results.append((float(reg.detach()), model.k0.grad.clone()))
    (reg_k, grad_k), (reg_t, grad_t) = results
    assert reg_k == pytest.approx(reg_t, rel=1e-5)
    torch.testing.assert_close(grad_k, grad_t, rtol=1e-4, atol=1e-9)
