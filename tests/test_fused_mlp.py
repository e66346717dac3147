"""The CPU fused form of F_theta (nex_core.model.fused_mlp) against the plain autograd form of the same MLP:
values and gradients in float64, gradcheck, bf16 autocast, inference without saved activations; the
k0 total variation against its plain autograd form."""

import numpy as np
import pytest
import torch

from nex_core.model import fused_mlp
from nex_core.model.nex_model import encode_frequencies
from support.models import outputs_and_grads, small_model


@pytest.mark.parametrize("sublayers,mlp_layers", [(2, 2), (3, 1), (1, 0)])
def test_fused_equals_autograd_in_float64(sublayers, mlp_layers):
    model = small_model(sublayers, mlp_layers)
    assert model.use_fused_mlp(torch.device("cpu"))
    coords = torch.rand(3 * sublayers, 40, 2, dtype=torch.float64) * 2 - 1
    a0, c0, g0 = outputs_and_grads(model, coords, fused=False)
    a1, c1, g1 = outputs_and_grads(model, coords, fused=True)
    torch.testing.assert_close(a1, a0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c1, c0, rtol=1e-12, atol=1e-12)
    assert g0.keys() == g1.keys()
    for name in g0:
        assert g0[name].abs().sum() > 0, name
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-10, atol=1e-12, msg=name)


def test_fused_trunk_gradcheck():
    model = small_model(sublayers=2, mlp_layers=1)
    first, hidden, last = model.coeff_mlp[0], model.coeff_mlp[2], model.coeff_mlp[-1]
    x = torch.randn(6, 5, first.in_features + 1, dtype=torch.float64)
    x[..., -1] = 1  # the column that carries the first layer's bias

    def f(w_out, b_out, *params):
        return fused_mlp._FusedTrunk.apply(x, w_out, b_out, 0.01, 2, *params)

    params = [last.weight, last.bias, first.weight, first.bias, hidden.weight, hidden.bias]
    assert torch.autograd.gradcheck(f, tuple(p.detach().clone().requires_grad_() for p in params))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_trunk_input_is_the_encodings_and_a_one(dtype):
    model = small_model()
    coords = torch.rand(6, 7, 2, dtype=torch.float64) * 2 - 1
    x = fused_mlp.trunk_input(coords, model.pos_freqs.double(), model.plane_pe.double(), dtype)
    expected = torch.cat([encode_frequencies(coords, model.pos_freqs.double()),
                          model.plane_pe.double()[:, None, :].expand(6, 7, -1), torch.ones(6, 7, 1)], -1)
    assert x.dtype == dtype and x.shape == (6, 7, model.coeff_mlp[0].in_features + 1)
    torch.testing.assert_close(x, expected.to(dtype), rtol=0, atol=0)


def test_fused_bf16_is_as_accurate_as_autograd_bf16():
    """Under bf16 autocast both forms round differently; measured against fp32, the fused one's error
    must be of the same size as autograd's (values and every gradient)."""
    model = small_model(dtype=torch.float32)
    coords = torch.rand(6, 300, 2) * 2 - 1
    exact = outputs_and_grads(model, coords, fused=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = outputs_and_grads(model, coords, fused=False)
        fused = outputs_and_grads(model, coords, fused=True)
    assert fused[0].dtype == plain[0].dtype == torch.bfloat16 and fused[1].dtype == torch.bfloat16

    def error(got, ref):
        return float((got.float() - ref).abs().max() / ref.abs().max())

    pairs = [(fused[0], plain[0], exact[0]), (fused[1], plain[1], exact[1])]
    pairs += [(fused[2][k], plain[2][k], exact[2][k]) for k in exact[2]]
    for got, other, ref in pairs:
        assert got.dtype == other.dtype
        assert error(got, ref) <= 2.0 * error(other, ref) + 2e-3


def test_fused_inference_matches_and_keeps_nothing():
    model = small_model(dtype=torch.float32)
    coords = torch.rand(6, 50, 2) * 2 - 1
    model.fused_mlp = False
    with torch.no_grad():
        a0, c0 = model.alpha_and_coefficients(coords)
        model.fused_mlp = True
        a1, c1 = model.alpha_and_coefficients(coords)
    assert a1.grad_fn is None
    torch.testing.assert_close(a1, a0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c1, c0, rtol=1e-5, atol=1e-5)


def test_plain_form_is_used_where_the_fused_one_does_not_apply():
    model = small_model(dtype=torch.float32)
    assert model.use_fused_mlp(torch.device("cpu"))
    assert not model.use_fused_mlp(torch.device("cuda"))  # GPUs keep autograd's large kernels
    model.cfg.lrelu_slope = 0.0  # a plain ReLU: its output's sign no longer gives the gradient
    assert not model.use_fused_mlp(torch.device("cpu"))
    layers = [model.coeff_mlp[0]]
    x = torch.zeros(6, 2, layers[0].in_features + 1)
    with pytest.raises(ValueError, match="positive leaky-ReLU slope"):
        fused_mlp.fused_trunk(x, layers, model.coeff_mlp[-1], 0.0, 2)
    with pytest.raises(ValueError, match="whole layers"):
        fused_mlp.fused_trunk(x[:5], layers, model.coeff_mlp[-1], 0.01, 2)
    with pytest.raises(ValueError, match="does not fit"):
        fused_mlp.fused_trunk(x[..., :3], layers, model.coeff_mlp[-1], 0.01, 2)


def test_total_variation_equals_its_autograd_form():
    from nex_core.model.total_variation import total_variation, total_variation_reference
    torch.manual_seed(1)
    images = torch.rand(3, 2, 6, 7, dtype=torch.float64)
    images[0, 1, 2, 3] = images[0, 1, 2, 4]  # a zero difference: both take sign(0) = 0
    images[1, 0, 4, 5] = images[1, 0, 3, 5]
    images.requires_grad_()
    got = total_variation(images)
    (g_got,) = torch.autograd.grad(3.0 * got, images)
    want = total_variation_reference(images)
    (g_want,) = torch.autograd.grad(3.0 * want, images)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0.0)
    torch.testing.assert_close(g_got, g_want, rtol=1e-14, atol=1e-16)
    assert torch.autograd.gradcheck(total_variation, (torch.rand(2, 1, 4, 5, dtype=torch.float64,
                                                                 requires_grad=True),))


def test_plain_ops_stand_in_where_onednn_cannot(monkeypatch):
    """Where oneDNN's fused linear is missing or refuses (an old CPU asked for bf16), addmm + leaky ReLU
    give the same result."""
    model = small_model(dtype=torch.float32)
    coords = torch.rand(6, 50, 2) * 2 - 1
    a0, c0, g0 = outputs_and_grads(model, coords, fused=False)

    def refuse(*args, **kwargs):
        raise RuntimeError("mkldnn bf16 path needs the cpu support avx512bw, avx512vl and avx512dq")

    monkeypatch.setattr(fused_mlp, "_fused_linear_works", {})
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", refuse, raising=False)
    a1, c1, g1 = outputs_and_grads(model, coords, fused=True)
    assert fused_mlp._fused_linear_works == {torch.float32: False}
    torch.testing.assert_close(a1, a0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c1, c0, rtol=1e-5, atol=1e-5)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-5, msg=name)


def test_out_of_memory_in_the_fused_call_surfaces_and_keeps_the_fused_path(monkeypatch):
    """Only the up-front probe decides whether the fused call is used: an allocation failure in a real
    call is raised (the caller halves its chunk), not taken for "unsupported" and hidden for good."""
    if not fused_mlp.has_fused_linear(torch.ones(2, 2)):
        pytest.skip("oneDNN's fused linear is not available here")
    real = torch.ops.mkldnn._linear_pointwise

    def out_of_memory(x, *args):
        if x.shape[0] > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")
        return real(x, *args)

    monkeypatch.setattr(fused_mlp, "_fused_linear_works", {})
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", out_of_memory, raising=False)
    x, w = torch.ones(64, 4), torch.ones(3, 4)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        fused_mlp.linear_leaky_relu(x, w, None, 0.01)
    assert fused_mlp._fused_linear_works == {torch.float32: True} and fused_mlp.has_fused_linear(x)


@pytest.mark.parametrize("grad", [False, True])
def test_rendering_frees_each_layer_as_it_goes(monkeypatch, grad):
    """Without autograd (rendering) a layer's output is dropped once the next layer has used it, so
    memory stays that of one layer pair; with autograd every output is kept for the backward."""
    import weakref

    model = small_model(sublayers=2, mlp_layers=3, dtype=torch.float32)
    coords = torch.rand(6, 40, 2) * 2 - 1
    outputs: list[weakref.ref] = []
    alive_at_each_call: list[int] = []
    original = fused_mlp.linear_leaky_relu

    def spy(x, weight, bias, slope):
        alive_at_each_call.append(sum(ref() is not None for ref in outputs))
        out = original(x, weight, bias, slope)
        outputs.append(weakref.ref(out))
        return out

    monkeypatch.setattr(fused_mlp, "linear_leaky_relu", spy)
    with torch.set_grad_enabled(grad):
        alpha, _ = model.alpha_and_coefficients(coords)
    assert len(alive_at_each_call) == 4  # the input layer and three hidden ones
    if grad:
        assert alive_at_each_call == [0, 1, 2, 3]
    else:
        assert alive_at_each_call == [0, 1, 1, 1]  # only the layer's own input
        assert alpha.grad_fn is None


@pytest.mark.parametrize("rows,blocks", [(1000, 3), (1024, 4), (300, 8)])
def test_weight_gradient_in_row_blocks_equals_the_product(rows, blocks):
    """The batched form (row blocks, a remainder, or too few rows for blocks) is g.T @ a."""
    torch.manual_seed(2)
    g = torch.randn(rows, 5, dtype=torch.float64)
    a = torch.randn(rows, 7, dtype=torch.float64)
    got = fused_mlp.weight_gradient(g, a, blocks)
    torch.testing.assert_close(got, g.t() @ a, rtol=1e-12, atol=1e-12)
    low = fused_mlp.weight_gradient(g.bfloat16(), a.bfloat16(), blocks)
    assert low.dtype == torch.float32  # summed in fp32
    torch.testing.assert_close(low.double(), g.bfloat16().double().t() @ a.bfloat16().double(), rtol=0.02, atol=0.3)


def test_training_follows_the_autograd_loss_curve(tmp_path):
    """Twenty fp32 steps of the tiny preset on the shipped scene: the fused form and the autograd form
    (what GPUs run) give the same losses, up to summation order amplified by Adam."""
    from pathlib import Path

    from nex_core.io import config as config_mod
    from nex_core.training.trainer import Trainer

    def losses(fused: bool) -> list[float]:
        cfg = config_mod.preset("tiny")
        cfg.data.scene = str(Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo")
        cfg.train.precision = "fp32"
        trainer = Trainer(cfg, tmp_path / f"fused-{fused}")
        trainer.model.fused_mlp = fused
        assert trainer.model.use_fused_mlp(trainer.device) == fused
        return [trainer.train_step()[0] for _ in range(20)]

    fused, plain = losses(True), losses(False)
    assert fused[-1] < fused[0]  # it learns
    np.testing.assert_allclose(fused, plain, rtol=5e-5)  # measured: 3e-6
