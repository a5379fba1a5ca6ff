"""The Triton pair attention (`model.wormhole_attention=triton`, `akira.models.lm.pair_attention_kernel`) against
`scaled_dot_product_attention` and the wormhole's SDPA path.

Runs where Triton can run: on CUDA, or on CPU with ``TRITON_INTERPRET=1`` and Triton installed. The CPU CI
environment has no Triton, so there the module only checks the clear refusal.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from akira.models.lm import CrossBandWormhole, Transformer, lm_preset, pair_attention_kernel
from tests.conftest import KERNEL_DEVICE as DEVICE
from tests.conftest import assert_compiled_bf16_lm_matches, needs_triton, without_triton


@without_triton
def test_triton_attention_without_triton_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="wormhole_attention=triton: needs Triton"):
        CrossBandWormhole((8, 8), cross_dim=4, attention="triton")


@needs_triton
@pytest.mark.parametrize("shape", [(2, 3, 70, 16, 32), (1, 2, 33, 4, 8), (1, 1, 130, 16, 32)])
def test_equals_sdpa_values_and_gradients(shape):
    b, h, s, dk, dv = shape
    torch.manual_seed(0)
    q = torch.randn(b, s, h, dk, device=DEVICE).transpose(1, 2).requires_grad_()   # strided, as in the wormhole
    k = torch.randn(b, h, s, dk, device=DEVICE, requires_grad=True)
    v = torch.randn(b, h, s, dv, device=DEVICE, requires_grad=True)
    do = torch.randn(b, h, s, dv, device=DEVICE)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=dk ** -0.5)
    got = pair_attention_kernel.attention(q, k, v, dk ** -0.5)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    for a, b_ in zip(torch.autograd.grad(got, (q, k, v), do), torch.autograd.grad(want, (q, k, v), do)):
        torch.testing.assert_close(a, b_, atol=1e-5, rtol=1e-4)


@needs_triton
def test_is_causal_by_perturbation():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 40, d, device=DEVICE) for d in (16, 16, 32))
    out = pair_attention_kernel.attention(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 25:] += 5.0
    v2[:, :, 25:] -= 3.0
    out2 = pair_attention_kernel.attention(q, k2, v2)
    assert torch.equal(out[:, :, :25], out2[:, :, :25])
    assert not torch.allclose(out[:, :, 25:], out2[:, :, 25:])


@needs_triton
def test_wormhole_with_triton_attention_equals_sdpa_path():
    torch.manual_seed(0)
    widths = (16, 12, 10, 8, 8, 6, 4)
    ref = CrossBandWormhole(widths, cross_dim=4)
    ref.reset_parameters(0.3, 0.3)
    tri = CrossBandWormhole(widths, cross_dim=4, attention="triton")
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 37, 64, device=DEVICE)
    torch.testing.assert_close(tri.to(DEVICE)(x), ref.to(DEVICE)(x), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast and torch.compile on the GPU")
def test_bf16_compiled_model_matches_sdpa():
    torch.manual_seed(0)
    # threshold 0: no hard-gate flips from bf16 rounding differences between the two attention kernels
    cfg = lm_preset("band_wormhole", vocab_size=512, max_seq_len=128, n_layer=2, dropout=0.0, wormhole_threshold=0.0)
    ref = Transformer(cfg).to(DEVICE)
    tri = Transformer(cfg.replace(wormhole_attention="triton")).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    assert_compiled_bf16_lm_matches(ref, tri)


@needs_triton
def test_opcheck_fake_and_autograd_registrations():
    """torch.library.opcheck: the fake (meta) kernels give the real ops' shapes and strides (torch.compile relies on
    them), the autograd registration is complete."""
    q = torch.randn(1, 5, 2, 16, device=DEVICE).transpose(1, 2).requires_grad_()
    k = torch.randn(1, 2, 5, 16, device=DEVICE, requires_grad=True)
    v = torch.randn(1, 2, 5, 32, device=DEVICE, requires_grad=True)
    torch.library.opcheck(torch.ops.akira.pair_attention.default, (q, k, v, 0.25))
    o, lse = torch.ops.akira.pair_attention(q, k, v, 0.25)
    do = torch.randn_like(o)
    torch.library.opcheck(torch.ops.akira.pair_attention_backward.default,
                          (do, q.detach(), k.detach(), v.detach(), o.detach(), lse.detach(), 0.25))
