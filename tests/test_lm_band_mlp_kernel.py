"""The fused Triton band MLP (`band_impl="fused"`, `akira.models.lm.band_mlp_kernel`) against the per-band loop.

Runs where Triton can run: on CUDA, or on CPU with ``TRITON_INTERPRET=1`` and Triton installed. The CPU CI
environment has no Triton, so there the module only checks the clear refusal.
"""
from __future__ import annotations

import pytest
import torch

from akira.models.lm import BandMLP, Transformer, band_mlp_kernel, lm_preset
from tests.conftest import KERNEL_DEVICE as DEVICE
from tests.conftest import needs_triton, without_triton


@without_triton
def test_fused_without_triton_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="band_impl=fused: needs Triton"):
        BandMLP((16, 8), (32, 16), impl="fused")


@needs_triton
def test_fused_refuses_dropout():
    with pytest.raises(ValueError, match="no dropout"):
        BandMLP((16, 8), (32, 16), dropout=0.1, impl="fused")


def _pair(widths, hidden, bias):
    torch.manual_seed(0)
    ref = BandMLP(widths, hidden, bias=bias, impl="loop")
    ref.reset_parameters(0.2, 0.2)
    for b in [*(ref.b1 or []), *(ref.b2 or [])]:
        b.data.normal_(0, 0.3)
    fused = BandMLP(widths, hidden, bias=bias, impl="fused")
    fused.load_state_dict(ref.state_dict())
    return ref.to(DEVICE), fused.to(DEVICE)


@needs_triton
@pytest.mark.parametrize("widths,hidden,bias", [
    ((16, 12, 10, 8, 8, 6, 4), (40, 30, 25, 20, 20, 15, 10), True),     # hidden not a multiple of the tile
    ((16, 12, 10, 8, 8, 6, 4), (64, 48, 40, 32, 32, 24, 16), False),
    ((128, 96, 80, 64, 64, 48, 32), (200, 150, 130, 100, 100, 75, 50), True)])
@pytest.mark.parametrize("dw", ["fused", "gemm"])
def test_fused_equals_loop_values_and_gradients(widths, hidden, bias, dw, monkeypatch):
    """Both weight-gradient paths (the dW kernel with token splits; dpre stored + cuBLAS)."""
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw", dw)
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw_splits", 3 if dw == "fused" else 0)
    ref, fused = _pair(widths, hidden, bias)
    x = torch.randn(3, 47, sum(widths), device=DEVICE)     # 141 tokens: the last token block is partial
    gy = torch.randn_like(x)
    outs = []
    for m in (ref, fused):
        xi = x.clone().requires_grad_()
        y = m(xi, ablate_band=2)
        y.backward(gy)
        outs.append((y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()}))
    (y0, gx0, gp0), (y1, gx1, gp1) = outs
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx1, gx0, atol=1e-5, rtol=1e-4)
    assert gp1.keys() == gp0.keys()
    for name in gp0:
        torch.testing.assert_close(gp1[name], gp0[name], atol=1e-4, rtol=1e-4, msg=name)
    assert gp1["w1.2"].abs().max() == 0  # the ablated band gets no gradient


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast and torch.compile on the GPU")
@pytest.mark.parametrize("dw", ["fused", "gemm"])
def test_fused_bf16_compiled_model_matches_loop(dw, monkeypatch):
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw", dw)
    torch.manual_seed(0)
    cfg = lm_preset("band", vocab_size=512, max_seq_len=128, n_layer=2, dropout=0.0, params_matched=True)
    ref = Transformer(cfg.replace(band_impl="loop")).to(DEVICE)
    fused = Transformer(cfg.replace(band_impl="fused")).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 512, (4, 129), device=DEVICE)
    losses = []
    for model in (ref, torch.compile(fused, fullgraph=True)):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 2e-3 * abs(losses[0])
    for (name, p), q in zip(ref.named_parameters(), fused.parameters()):
        rel = (p.grad - q.grad).norm() / p.grad.norm().clamp(min=1e-12)
        assert rel < 3e-2, name


@needs_triton
@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_fake_and_autograd_registrations(bias):
    """torch.library.opcheck: fake kernels match the real ops' shapes and strides; autograd is registered."""
    torch.manual_seed(0)
    widths, hidden = (16, 8), (40, 24)
    x = torch.randn(7, 24, device=DEVICE, requires_grad=True)
    w1 = [torch.randn(h, d, device=DEVICE, requires_grad=True) for d, h in zip(widths, hidden)]
    w2 = [torch.randn(d, h, device=DEVICE, requires_grad=True) for d, h in zip(widths, hidden)]
    b1 = [torch.randn(h, device=DEVICE, requires_grad=True) for h in hidden] if bias else []
    b2 = [torch.randn(d, device=DEVICE, requires_grad=True) for d in widths] if bias else []
    torch.library.opcheck(torch.ops.akira.band_mlp.default, (x, w1, b1, w2, b2))
    dy = torch.randn(7, 24, device=DEVICE)
    torch.library.opcheck(torch.ops.akira.band_mlp_backward.default,
                          (dy, x.detach(), [w.detach() for w in w1], [b.detach() for b in b1],
                           [w.detach() for w in w2]))
