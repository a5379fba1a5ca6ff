"""Decoder LMs (akira.models.lm): parameter counts, causality of every arm, vectorised = reference, bad input,
learning sanity (overfit one batch; i.i.d. random tokens stay at ln V)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from akira.models.lm import (
    BandLayerNorm,
    BandMLP,
    CrossBandWormhole,
    DenseMLP,
    LMConfig,
    SplitDenseMLP,
    Transformer,
    band_mlp_kernel,
    lm_preset,
    parameter_count,
    wormhole_pairs,
)

TINY = {"vocab_size": 96, "n_layer": 2, "d_model": 64, "n_head": 4, "max_seq_len": 32, "dropout": 0.0,
        "band_widths": (16, 12, 10, 8, 8, 6, 4)}
ARMS = {
    "baseline": {},
    "dense_split": {"mlp": "dense_split"},
    "band_block_diag": {"mlp": "band", "band_impl": "block_diag"},
    "band_bmm": {"mlp": "band", "band_impl": "bmm"},
    "band_matched": {"mlp": "band", "params_matched": True},
    "wormhole_all": {"mlp": "band", "wormhole": True},
    "wormhole_complementary": {"mlp": "band", "wormhole": True, "wormhole_pairs": "complementary"},
    "wormhole_topk": {"mlp": "band", "wormhole": True, "wormhole_top_k": 4},
    "rotary_tied_nobias": {"mlp": "band", "wormhole": True, "positional": "rotary", "tie_embeddings": True,
                           "bias": False},
}


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(LMConfig(**{**TINY, **kw})).eval()


# ---------------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize("preset,total,non_emb", [
    ("baseline", 70_640_640, 18_915_328),
    ("band", 60_146_688, 8_421_376),
    ("band_wormhole", 60_972_672, 9_247_360),
])
def test_reference_v1_parameter_counts(preset, total, non_emb):
    """REFERENCE §2.3 at seq 512: learned positions, bias, untied head (built model and closed form)."""
    cfg = lm_preset(preset)
    assert parameter_count(cfg)["total"] == total
    model = Transformer(cfg)
    assert model.num_parameters(non_embedding=False) == total
    assert model.num_parameters(non_embedding=True) == non_emb


def test_reference_counts_seq256_and_wormhole_per_layer():
    assert parameter_count(lm_preset("band_wormhole", max_seq_len=256))["total"] == 60_841_600
    assert parameter_count(lm_preset("baseline", max_seq_len=256))["total"] == 70_509_568
    assert parameter_count(lm_preset("band", max_seq_len=256))["total"] == 60_015_616
    wh = CrossBandWormhole((128, 96, 80, 64, 64, 48, 32), cross_dim=16)
    assert sum(p.numel() for p in wh.parameters()) == 137_664


@pytest.mark.parametrize("arm", list(ARMS))
def test_closed_form_count_equals_built_model(arm):
    model = tiny(**ARMS[arm])
    counts = model.parameter_count()
    assert counts["total"] == model.num_parameters(non_embedding=False)
    assert counts["non_embedding"] == model.num_parameters(non_embedding=True)


@pytest.mark.parametrize("wormhole", [False, True])
def test_params_matched_within_2_percent(wormhole):
    base = parameter_count(lm_preset("baseline"))["non_embedding"]
    cfg = lm_preset("band", wormhole=wormhole, params_matched=True)
    matched = parameter_count(cfg)["non_embedding"]
    assert abs(matched - base) / base < 0.02
    assert parameter_count(lm_preset("band", wormhole=wormhole))["non_embedding"] < 0.6 * base  # unmatched
    small = tiny(mlp="band", wormhole=wormhole, params_matched=True)
    small_base = tiny().num_parameters(non_embedding=True)
    assert abs(small.num_parameters(non_embedding=True) - small_base) / small_base < 0.02


# ---------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("arm", list(ARMS))
def test_causal_every_arm(arm):
    """Changing tokens > t leaves logits <= t unchanged; d logits[<=t] / d embeddings[>t] == 0."""
    model = tiny(**ARMS[arm])
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, TINY["vocab_size"], (2, 32), generator=g)
    t = 13
    idx2 = idx.clone()
    idx2[:, t + 1:] = torch.randint(0, TINY["vocab_size"], (2, 32 - t - 1), generator=g)
    with torch.no_grad():
        a, b = model(idx), model(idx2)
    assert torch.allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-5, rtol=0)
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-3  # the future positions did change

    store = {}

    def keep(_m, _inp, out):
        out.retain_grad()
        store["emb"] = out

    h = model.wte.register_forward_hook(keep)
    model(idx)[:, : t + 1].sum().backward()
    h.remove()
    grad = store["emb"].grad
    assert grad[:, t + 1:].abs().max() == 0
    assert grad[:, : t + 1].abs().max() > 0


# ---------------------------------------------------------------------------------------------- equivalences
@pytest.mark.parametrize("widths", [(16, 12, 10, 8, 8, 6, 4), (128, 96, 80, 64, 64, 48, 32), (5, 3, 8)])
def test_band_layernorm_equals_per_band_layer_norm(widths):
    """Chunk size gcd(widths) = 2, 16 (the seed's bands) and 1; values and gradients."""
    torch.manual_seed(0)
    ln = BandLayerNorm(widths).double()
    assert ln.chunk == math.gcd(*widths)
    for w, b in zip(ln.weight, ln.bias):
        w.data.normal_()
        b.data.normal_()
    x = (torch.randn(3, 5, sum(widths), dtype=torch.float64) * 3 + 1).requires_grad_()
    ref = torch.cat([F.layer_norm(xi, (d,), w, b, 1e-5)
                     for xi, d, w, b in zip(x.split(widths, -1), widths, ln.weight, ln.bias)], -1)
    out = ln(x)
    assert torch.allclose(out, ref, atol=1e-10)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, [x, *ln.weight, *ln.bias], g)
    want = torch.autograd.grad(ref, [x, *ln.weight, *ln.bias], g)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


def test_band_mlp_impls_agree_and_ablation_zeroes_one_band():
    torch.manual_seed(0)
    widths, hidden = (16, 12, 10, 8, 8, 6, 4), (40, 30, 25, 20, 20, 15, 10)
    mlps = {impl: BandMLP(widths, hidden, impl=impl) for impl in ("block_diag", "bmm", "loop")}
    mlps["block_diag"].reset_parameters(0.1, 0.1)
    for b in [*mlps["block_diag"].b1, *mlps["block_diag"].b2]:
        b.data.normal_()
    for m in mlps.values():
        m.load_state_dict(mlps["block_diag"].state_dict())
    x = torch.randn(2, 7, 64)
    ref = mlps["loop"](x)
    for impl in ("block_diag", "bmm"):
        assert torch.allclose(mlps[impl](x), ref, atol=1e-5), impl
    abl = mlps["bmm"](x, ablate_band=2)
    assert abl[..., 28:38].abs().max() == 0
    assert torch.allclose(abl[..., :28], ref[..., :28], atol=1e-5)
    assert torch.allclose(abl[..., 38:], ref[..., 38:], atol=1e-5)


def test_auto_band_impl_is_block_diag_at_e4_and_fused_or_loop_for_the_params_matched_widths():
    matched = tiny(mlp="band", params_matched=True)          # the seed's width ratios: e ~ 23
    assert sum(matched.band_hidden) / TINY["d_model"] > 20
    assert tiny(mlp="band").blocks[0].mlp.impl == "block_diag"
    # e ~ 24: the fused kernel where Triton is installed (with or without dropout), else one matmul per band
    # (both measured, RESULTS.md)
    assert matched.blocks[0].mlp.impl == ("fused" if band_mlp_kernel.available() else "loop")
    with_dropout = tiny(mlp="band", params_matched=True, dropout=0.1).blocks[0].mlp.impl
    assert with_dropout == ("fused" if band_mlp_kernel.available() else "loop")
    assert tiny(mlp="band", params_matched=True, band_impl="bmm").blocks[0].mlp.impl == "bmm"


def test_auto_band_impl_picks_fused_where_triton_is_installed(monkeypatch):
    monkeypatch.setattr(band_mlp_kernel, "available", lambda: True)
    assert tiny(mlp="band", params_matched=True).blocks[0].mlp.impl == "fused"
    assert tiny(mlp="band", params_matched=True, dropout=0.1).blocks[0].mlp.impl == "fused"
    assert tiny(mlp="band").blocks[0].mlp.impl == "block_diag"


def test_fused_bf16_gelu_reaches_the_band_mlp():
    """model.fused_bf16_gelu (the fused kernel's GELU arithmetic) is the band MLP's ``gelu16``."""
    assert tiny(mlp="band", params_matched=True).blocks[0].mlp.gelu16 is True
    assert tiny(mlp="band", params_matched=True, fused_bf16_gelu=False).blocks[0].mlp.gelu16 is False


def test_dense_split_equals_dense_mlp():
    torch.manual_seed(0)
    split = SplitDenseMLP(64, [64, 48, 40, 32, 32, 24, 16])
    split.reset_parameters(0.1, 0.1)
    for b in [*split.fc1_b, split.fc2_b]:
        b.data.normal_()
    dense = DenseMLP(64, 256)
    w1, b1, w2, b2 = split.dense_weights()
    dense.fc1.weight.data, dense.fc1.bias.data = w1.detach().clone(), b1.detach().clone()
    dense.fc2.weight.data, dense.fc2.bias.data = w2.detach().clone(), b2.detach().clone()
    x = torch.randn(2, 9, 64)
    assert torch.allclose(split(x), dense(x), atol=1e-6)
    assert len(split.band_parameters()) == 21  # fc1 rows, fc1 biases, fc2 columns for each of 7 groups


def _reference_wormhole(wh: CrossBandWormhole, x: torch.Tensor) -> torch.Tensor:
    """The seed's nested loops over (target, source) pairs, with a causal mask and optional top-k."""
    bands, s, c = x.split(wh.widths, -1), x.shape[1], wh.c
    future = torch.ones(s, s, dtype=torch.bool).triu(1)
    outs = []
    for i in range(len(wh.widths)):
        wi = wh.band_weights(i)
        q = F.linear(bands[i], wi["wq"], wi["bq"])
        srcs = [j for t, j in wh.pairs if t == i]
        cross = torch.zeros_like(bands[i])
        for j in srcs:
            wj = wh.band_weights(j)
            k, v = F.linear(bands[j], wj["wk"], wj["bk"]), F.linear(bands[j], wj["wv"], wj["bv"])
            scores = (q @ k.transpose(-2, -1) / math.sqrt(c)).masked_fill(future, float("-inf"))
            if wh.top_k is not None and wh.top_k < s:
                kth = scores.topk(wh.top_k, -1).values[..., -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            o = F.linear(scores.softmax(-1) @ v, wi["wo"], wi["bo"])
            g = torch.sigmoid(F.linear(torch.cat([bands[i], o], -1), wi["wg"], wi["bg"]))
            cross = cross + g * (g > wh.threshold) * o
        outs.append(cross / max(len(srcs), 1))
    return torch.cat(outs, -1)


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))


@pytest.mark.parametrize("device", ["cpu", CUDA])  # CUDA: on Hopper+ the pair attention runs unpadded (cuDNN)
@pytest.mark.parametrize("pairs,top_k,threshold", [("all", None, 0.5), ("complementary", None, 0.5),
                                                   ("all", 3, 0.5), ("all", None, 0.0)])
def test_wormhole_equals_pairwise_reference(pairs, top_k, threshold, device):
    torch.manual_seed(0)
    wh = CrossBandWormhole((16, 12, 10, 8, 8, 6, 4), cross_dim=4, pairs=pairs, top_k=top_k, threshold=threshold)
    wh.reset_parameters(0.3, 0.3)
    for w in wh.w_g:
        w.data.normal_(0, 1.0)  # gates far from the threshold: no flips from rounding
    for b in (wh.b_qkv, wh.b_o, wh.b_g):
        b.data.normal_(0, 0.1)
    x = torch.randn(2, 11, 64)
    out, ref = wh.to(device)(x.to(device)).cpu(), _reference_wormhole(wh.cpu(), x)
    assert torch.allclose(out, ref, atol=1e-5)
    gate_on = (out != 0).float().mean()
    assert 0.05 < gate_on <= 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_wormhole_compiles_on_cuda_without_graph_breaks():
    """The attention choice (unpadded on Hopper+) is made at trace time: fullgraph compile must hold."""
    wh = CrossBandWormhole((128, 96, 80, 64, 64, 48, 32), cross_dim=16).cuda()
    wh.reset_parameters(0.02, 0.02)
    for w in wh.w_g:
        w.data.normal_(0, 1.0)  # gates away from the threshold
    x = torch.randn(2, 64, 512, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = torch.compile(wh, fullgraph=True)(x)
        ref = wh(x)
    close = torch.isclose(y.float(), ref.float(), atol=2e-2, rtol=2e-2).float().mean()
    assert close > 0.99  # bf16 rounding may flip a few hard gates
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_wormhole_pairs():
    assert len(wormhole_pairs(7, "all")) == 42
    comp = wormhole_pairs(7, "complementary")
    assert (0, 6) in comp and (6, 0) in comp and (2, 4) in comp and (0, 5) not in comp
    assert sorted(j for i, j in comp if i == 3) == [0, 1, 2, 4, 5, 6]
    assert len(comp) == 18


def test_topk_at_full_length_equals_dense_and_attention_weights():
    dense = tiny(mlp="band", wormhole=True)
    topk = tiny(mlp="band", wormhole=True, wormhole_top_k=32)
    idx = torch.randint(0, 96, (2, 32))
    with torch.no_grad():
        assert torch.allclose(dense(idx), topk(idx), atol=1e-5)
    logits, probs = dense.forward_with_attention(idx)
    assert torch.allclose(logits, dense(idx), atol=1e-5)
    assert len(probs) == 2 and probs[0].shape == (2, 4, 32, 32)
    assert torch.allclose(probs[0].sum(-1), torch.ones(2, 4, 32), atol=1e-5)
    assert probs[0].triu(1).abs().max() == 0
    assert len(dense.forward_hidden(idx)) == 3


def test_ablate_band_changes_loss_and_flops():
    model = tiny(mlp="band")
    for m in model.blocks:
        for b in m.mlp.b2:
            b.data.normal_(0, 1.0)
    idx = torch.randint(0, 96, (2, 16))
    with torch.no_grad():
        _, full = model(idx, idx)
        _, abl = model(idx, idx, ablate_band=0)
    assert abs(float(full - abl)) > 1e-4
    with pytest.raises(ValueError, match="ablate_band"):
        model(idx, ablate_band=7)
    with pytest.raises(ValueError, match="ablate_band"):
        tiny()(idx, ablate_band=0)
    big = Transformer(lm_preset("baseline"))
    n = big.num_parameters(True) + 50257 * 512
    assert big.flops_per_token(512) == 6 * n + 12 * 6 * 512 * 512


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,key", [
    ({"n_head": 5}, "model.n_head"),
    ({"mlp": "band", "band_widths": (16, 16, 16)}, "model.band_widths"),
    ({"mlp": "dense_split", "band_widths": (32, 16)}, "model.band_widths"),
    ({"wormhole": True}, "model.wormhole"),
    ({"mlp": "band", "params_matched": True, "band_expansion": 3.0}, "model.band_expansion"),
    ({"positional": "alibi"}, "model.positional"),
    ({"mlp": "moe"}, "model.mlp"),
    ({"mlp": "band", "wormhole": True, "wormhole_top_k": 0}, "model.wormhole_top_k"),
    ({"dropout": 1.0}, "model.dropout"),
])
def test_bad_config_raises_naming_key(kw, key):
    with pytest.raises(ValueError, match=key):
        LMConfig(**{**TINY, **kw})


def test_sequence_longer_than_positions_raises():
    model = tiny()
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- learning
def _train(model, batches, steps, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = None
    for step in range(steps):
        x, y = batches(step)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize("arm", ["baseline", "wormhole_all"])
def test_tiny_model_overfits_one_batch(arm):
    model = tiny(**ARMS[arm], max_seq_len=16)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 96, (4, 16), generator=g)
    y = torch.randint(0, 96, (4, 16), generator=g)
    loss = _train(model, lambda _s: (x, y), steps=120, lr=1e-2)
    assert loss < 0.2 * math.log(96)


def _iid_run(arm: str) -> tuple[float, float]:
    """Train on i.i.d. uniform tokens (V=16, S=16); return (last train loss, held-out loss) / ln V."""
    v, s, g = 16, 16, torch.Generator().manual_seed(0)
    data = [torch.randint(0, v, (16, s + 1), generator=g) for _ in range(100)]
    model = tiny(**ARMS[arm], vocab_size=v, max_seq_len=s)
    loss = _train(model, lambda i: (data[i][:, :-1], data[i][:, 1:]), steps=100, lr=1e-2)
    model.eval()
    held = torch.randint(0, v, (32, s + 1), generator=g)
    with torch.no_grad():
        _, val = model(held[:, :-1], held[:, 1:])
    return loss / math.log(v), val.item() / math.log(v)


@pytest.mark.parametrize("arm", ["baseline", "wormhole_all", "dense_split"])
def test_iid_random_tokens_stay_at_ln_v(arm):
    """The next token is independent of the past: a causal model cannot beat ln V."""
    train, val = _iid_run(arm)
    assert abs(val - 1) < 0.02
    assert abs(train - 1) < 0.05


def test_iid_random_tokens_leaky_control_drops(monkeypatch):
    """Control: the same run with non-causal attention (sees token t+1) drops far below ln V."""
    import akira.models.lm.attention as attention

    sdpa = F.scaled_dot_product_attention

    class LeakyF:
        def __getattr__(self, name):
            if name == "scaled_dot_product_attention":
                return lambda *a, is_causal=False, **k: sdpa(*a, is_causal=False, **k)
            return getattr(F, name)

    monkeypatch.setattr(attention, "F", LeakyF())
    train, val = _iid_run("baseline")
    assert val < 0.5 and train < 0.5


def test_init_and_scaled_residual_init():
    torch.manual_seed(0)
    cfg = lm_preset("band_wormhole", vocab_size=256, max_seq_len=64, n_layer=8)
    plain, scaled = Transformer(cfg), Transformer(cfg.replace(scaled_residual_init=True))
    assert plain.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert plain.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02, rel=0.02)
    out_std = 0.02 / math.sqrt(16)
    assert scaled.blocks[0].attn.proj.weight.std().item() == pytest.approx(out_std, rel=0.03)
    assert scaled.blocks[0].mlp.w2[0].std().item() == pytest.approx(out_std, rel=0.03)
    assert scaled.blocks[0].mlp.w1[0].std().item() == pytest.approx(0.02, rel=0.03)
    assert scaled.blocks[0].attn.qkv.bias.abs().max() == 0 and scaled.blocks[0].ln_2.weight[3].min() == 1
