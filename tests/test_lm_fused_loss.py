"""The chunked head + cross-entropy equals the plain one in value and gradients (fp32 and bf16 autocast)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from akira.models.lm import LMConfig, Transformer
from akira.models.lm.fused_loss import linear_cross_entropy


def _reference(x, w, t):
    return F.cross_entropy(F.linear(x, w).flatten(0, -2), t.flatten(), ignore_index=-100)


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_value_and_gradients_equal_the_plain_loss(chunk):
    torch.manual_seed(0)
    x = torch.randn(3, 11, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 37, (3, 11))
    t[0, :4] = -100  # ignored targets count neither in the mean nor in the gradients
    ref = _reference(x, w, t)
    gx_ref, gw_ref = torch.autograd.grad(ref * 2.5, (x, w))
    got = linear_cross_entropy(x, w, t, chunk=chunk)
    gx, gw = torch.autograd.grad(got * 2.5, (x, w))
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-12)
    assert gx.dtype == x.dtype and gw.dtype == w.dtype


def test_under_bf16_autocast_it_matches_the_autocast_linear_and_keeps_fp32_weight_grads():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    w = torch.randn(50, 32, requires_grad=True)
    t = torch.randint(0, 50, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy(F.linear(x, w).float(), t)
        got = linear_cross_entropy(x, w, t, chunk=16)
    gx_ref, gw_ref = torch.autograd.grad(ref, (x, w))
    gx, gw = torch.autograd.grad(got, (x, w))
    assert got.dtype == torch.float32 and gw.dtype == torch.float32 and gx.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(gx, gx_ref, rtol=5e-2, atol=5e-3)
    torch.testing.assert_close(gw, gw_ref, rtol=5e-2, atol=5e-3)


def test_transformer_fused_loss_trains_like_the_plain_head():
    """Same loss and same parameter gradients (tied head included) with model.fused_loss=true."""
    cfg = LMConfig(vocab_size=97, n_layer=2, d_model=32, n_head=4, max_seq_len=16, dropout=0.0, tie_embeddings=True)
    torch.manual_seed(0)
    plain = Transformer(cfg)
    fused = Transformer(cfg.replace(fused_loss=True, fused_loss_chunk=10))
    fused.load_state_dict(plain.state_dict())
    idx, tgt = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    logits, loss = plain(idx, tgt)
    none, loss_f = fused(idx, tgt)
    assert logits.shape == (3, 16, 97) and none is None
    torch.testing.assert_close(loss_f, loss, rtol=1e-5, atol=1e-6)
    loss.backward()
    loss_f.backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(fused(idx), plain(idx))  # inference still returns logits


def test_bad_chunk_and_shapes_raise():
    x, w, t = torch.randn(4, 8), torch.randn(5, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="fused_loss_chunk"):
        linear_cross_entropy(x, w, t, chunk=0)
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(x, w, t[:3])
    with pytest.raises(ValueError, match="model.fused_loss_chunk"):
        LMConfig(fused_loss_chunk=0)
