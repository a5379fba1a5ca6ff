"""The wormhole's Triton gated sum (`model.wormhole_gate=triton`, `akira.models.lm.wormhole_gate_kernel`) against the
torch path (`CrossBandWormhole._gated_sum`).

Runs where Triton can run: on CUDA, or on CPU with ``TRITON_INTERPRET=1`` and Triton installed. The CPU CI
environment has no Triton, so there the module only checks the clear refusal.
"""
from __future__ import annotations

import pytest
import torch

from akira.models.lm import CrossBandWormhole, Transformer, lm_preset
from akira.models.lm.wormhole_gate_kernel import band_table
from tests.conftest import KERNEL_DEVICE as DEVICE
from tests.conftest import assert_compiled_bf16_lm_matches, needs_triton, without_triton

WIDTHS = (16, 12, 10, 8, 8, 6, 4)


@without_triton
def test_triton_gate_without_triton_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="wormhole_gate=triton: needs Triton"):
        CrossBandWormhole((8, 8), cross_dim=4, gate="triton")


def test_unknown_gate_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="model.wormhole_gate: must be one of"):
        CrossBandWormhole((8, 8), cross_dim=4, gate="cuda")


def test_band_table_groups_bands_by_padded_width():
    slot_on = torch.ones(6, 7, dtype=torch.int32)
    slot_on[0, 6] = 0
    table, groups = band_table((128, 96, 80, 64, 64, 48, 32), slot_on)
    assert table[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert table[:, 1].tolist() == [0, 128, 224, 304, 368, 432, 480]
    assert table[:, 3].tolist() == [6, 6, 6, 6, 6, 6, 5]
    assert groups == [[128, 0, 3], [64, 3, 3], [32, 6, 1]]
    table, groups = band_table((16, 64, 16), torch.ones(2, 3, dtype=torch.int32))
    assert table[:, 0].tolist() == [1, 0, 2] and groups == [[64, 0, 1], [16, 1, 2]]


def _pair(pairs: str = "all", bias: bool = True, threshold: float = 0.5, widths: tuple[int, ...] = WIDTHS):
    torch.manual_seed(0)
    # the reference names the torch gate: the default (auto) takes the Triton op on CUDA
    ref = CrossBandWormhole(widths, cross_dim=4, pairs=pairs, bias=bias, threshold=threshold, gate="torch")
    ref.reset_parameters(0.3, 0.3)
    if bias:
        with torch.no_grad():
            for b in (ref.b_qkv, ref.b_o, ref.b_g):
                b.normal_(0.0, 0.2)
    tri = CrossBandWormhole(widths, cross_dim=4, pairs=pairs, bias=bias, threshold=threshold, gate="triton")
    tri.load_state_dict(ref.state_dict())
    return ref.to(DEVICE), tri.to(DEVICE)


@needs_triton
@pytest.mark.parametrize("pairs,bias,threshold,seq,widths", [
    ("all", True, 0.5, 37, WIDTHS), ("complementary", True, 0.3, 70, WIDTHS), ("all", False, 0.0, 33, WIDTHS),
    ("all", True, 0.5, 150, (40, 24, 16, 8))])       # three launch groups (64, 32, 16); several token blocks
def test_equals_torch_path_values_and_gradients(pairs, bias, threshold, seq, widths):
    ref, tri = _pair(pairs, bias, threshold, widths)
    x = torch.randn(2, seq, sum(widths), device=DEVICE)
    xr, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = ref(xr), tri(xt)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    dy = torch.randn_like(want)
    want.backward(dy)
    got.backward(dy)
    torch.testing.assert_close(xt.grad, xr.grad, atol=1e-5, rtol=1e-4)
    for (name, p), q in zip(ref.named_parameters(), tri.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


@needs_triton
def test_gate_is_per_token_so_the_wormhole_stays_causal():
    _, tri = _pair()
    x = torch.randn(1, 40, sum(WIDTHS), device=DEVICE)
    x2 = x.clone()
    x2[:, 25:] += 2.0
    y, y2 = tri(x), tri(x2)
    assert torch.equal(y[:, :25], y2[:, :25])
    assert not torch.allclose(y[:, 25:], y2[:, 25:])


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast and torch.compile on the GPU")
@pytest.mark.parametrize("widths", [(128, 96, 80, 64, 64, 48, 32), (64, 64, 64, 64, 64, 64, 64, 64)])
def test_bf16_compiled_model_matches_torch_gate(widths):
    torch.manual_seed(0)
    # threshold 0: no hard-gate flips from bf16 rounding (the torch path rounds o and gp to bf16, the kernel not)
    cfg = lm_preset("band_wormhole", vocab_size=512, max_seq_len=128, n_layer=2, dropout=0.0, wormhole_threshold=0.0,
                    band_widths=widths)
    ref = Transformer(cfg.replace(wormhole_gate="torch")).to(DEVICE)   # not auto: that is the Triton op on CUDA
    tri = Transformer(cfg.replace(wormhole_gate="triton")).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    assert_compiled_bf16_lm_matches(ref, tri)


@needs_triton
def test_opcheck_fake_and_autograd_registrations():
    """torch.library.opcheck: the fake (meta) kernels give the real ops' shapes and strides (torch.compile relies on
    them), the autograd registration is complete."""
    _, tri = _pair()
    r, nb, d = len(tri.offsets), len(WIDTHS), sum(WIDTHS)
    u = torch.randn(2, 5, r * nb, 8, device=DEVICE).transpose(1, 2).requires_grad_()     # strided, as from SDPA
    gx = torch.randn(2, 5, d, device=DEVICE, requires_grad=True)
    w_o = torch.randn(d, 8, device=DEVICE, requires_grad=True)
    w_gf = torch.randn(d, 8, device=DEVICE, requires_grad=True)
    b_o = torch.randn(d, device=DEVICE, requires_grad=True)
    const = (tri.slot_on, tri.gate_table, tri.gate_groups, 0.5)
    torch.library.opcheck(torch.ops.akira.wormhole_gate.default, (u, gx, w_o, w_gf, b_o, *const))
    torch.library.opcheck(torch.ops.akira.wormhole_gate.default, (u, gx, w_o, w_gf, None, *const))
    dy = torch.randn(2, 5, d, device=DEVICE)
    torch.library.opcheck(torch.ops.akira.wormhole_gate_backward.default,
                          (dy, u.detach(), gx.detach(), w_o.detach(), w_gf.detach(), b_o.detach(), *const))
