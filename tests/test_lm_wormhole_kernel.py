"""The fused Triton gate of the wormhole (`akira.models.lm.wormhole_kernel`) against the plain-torch path.

Runs where Triton can run: on CUDA, or on CPU with ``TRITON_INTERPRET=1`` and Triton installed (not in the CPU CI
environment, where the module is skipped; the GPU run is recorded in benchmarks/RESULTS.md).
"""
from __future__ import annotations

import os

import pytest
import torch

from akira.models.lm import CrossBandWormhole, Transformer, lm_preset
from akira.models.lm import wormhole_kernel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    not wormhole_kernel.available() or (DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1"),
    reason="needs Triton on CUDA, or TRITON_INTERPRET=1 on CPU")


def _pair(pairs: str, bias: bool, widths=(16, 12, 10, 8, 8, 6, 4), c: int = 4, threshold: float = 0.5):
    torch.manual_seed(0)
    ref = CrossBandWormhole(widths, cross_dim=c, pairs=pairs, threshold=threshold, bias=bias, kernel="torch")
    ref.reset_parameters(0.3, 0.3)
    for w in ref.w_g:
        w.data.normal_(0, 1.0)  # gates far from the threshold: no flips from rounding
    for b in (ref.b_qkv, ref.b_o, ref.b_g):
        if b is not None:
            b.data.normal_(0, 0.1)
    fused = CrossBandWormhole(widths, cross_dim=c, pairs=pairs, threshold=threshold, bias=bias, kernel="triton")
    fused.load_state_dict(ref.state_dict())
    return ref.to(DEVICE), fused.to(DEVICE)


def _grads(module, x, gy):
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(gy)
    return y.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


SEED = (128, 96, 80, 64, 64, 48, 32)


@pytest.mark.parametrize("pairs,bias,threshold,widths,c", [
    ("all", True, 0.5, (16, 12, 10, 8, 8, 6, 4), 4), ("complementary", True, 0.5, (16, 12, 10, 8, 8, 6, 4), 4),
    ("all", False, 0.0, (16, 12, 10, 8, 8, 6, 4), 4), ("all", True, 0.5, SEED, 16)])
def test_fused_gate_equals_torch_values_and_gradients(pairs, bias, threshold, widths, c):
    ref, fused = _pair(pairs, bias, widths, c, threshold)
    d = sum(widths)
    x = torch.randn(2, 70, d, device=DEVICE)       # 140 tokens: the last token block is partial
    gy = torch.randn(2, 70, d, device=DEVICE)
    y_ref, gx_ref, gp_ref = _grads(ref, x, gy)
    y, gx, gp = _grads(fused, x, gy)
    assert fused.use_triton(x) and not ref.use_triton(x)
    assert (y_ref != 0).float().mean() > 0.05
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx, gx_ref, atol=5e-5, rtol=1e-4)
    assert gp.keys() == gp_ref.keys()
    for name in gp:
        torch.testing.assert_close(gp[name], gp_ref[name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast and torch.compile on the GPU")
def test_fused_gate_bf16_compiled_model_matches_torch_path():
    torch.manual_seed(0)
    cfg = lm_preset("band_wormhole", vocab_size=512, max_seq_len=128, n_layer=2, dropout=0.0)
    ref = Transformer(cfg.replace(wormhole_kernel="torch")).to(DEVICE)
    fused = Transformer(cfg.replace(wormhole_kernel="auto")).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 512, (4, 129), device=DEVICE)
    losses = []
    for model in (ref, torch.compile(fused)):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 2e-3 * abs(losses[0])
    for (name, p), q in zip(ref.named_parameters(), fused.parameters()):
        if p.grad is not None:
            rel = (p.grad - q.grad).norm() / p.grad.norm().clamp(min=1e-12)
            assert rel < 5e-2, name


@pytest.mark.skipif(DEVICE != "cuda", reason="torch.compile of the CUDA path")
def test_wormhole_compiles_without_graph_breaks():
    wh = CrossBandWormhole(SEED, cross_dim=16).to(DEVICE)
    wh.reset_parameters(0.02, 0.02)
    x = torch.randn(2, 64, 512, device=DEVICE, requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = torch.compile(wh, fullgraph=True)(x)
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
