"""The fused Triton band MLP (`band_impl="fused"`, `akira.models.lm.band_mlp_kernel`) against the per-band loop.

Runs where Triton can run: on CUDA, or on CPU with ``TRITON_INTERPRET=1`` and Triton installed. The CPU CI
environment has no Triton, so there the module only checks the clear refusal.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from akira.models.lm import BandLayerNorm, BandMLP, Transformer, band_mlp_kernel, lm_preset
from tests.conftest import KERNEL_DEVICE as DEVICE
from tests.conftest import assert_compiled_bf16_lm_matches, needs_triton, without_triton


@without_triton
def test_fused_without_triton_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="band_impl=fused: needs Triton"):
        BandMLP((16, 8), (32, 16), impl="fused")


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
    ((128, 96, 80, 64, 64, 48, 32), (200, 150, 130, 100, 100, 75, 50), True),
    ((8, 40, 20, 32, 16), (24, 72, 40, 64, 40), True),    # launch groups (padded widths 16, 64, 32) interleaved
    ((32, 16, 48), (96, 48, 144), True)])                  # all multiples of 16: the kernels' aligned variant
@pytest.mark.parametrize("tokens", [141, 192])
def test_fused_equals_loop_values_and_gradients(widths, hidden, bias, tokens, monkeypatch):
    """141 tokens: the last token block is partial, the dW kernel's 3 splits mask tokens; 192: 3 splits of 64
    tokens cover them exactly (the dW kernel's unmasked loop, EVEN_M)."""
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw_splits", 3)
    ref, fused = _pair(widths, hidden, bias)
    x = torch.randn(3, tokens // 3, sum(widths), device=DEVICE)
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


@needs_triton
@pytest.mark.parametrize("widths,hidden,bias", [
    ((16, 12, 10, 8, 8, 6, 4), (40, 30, 25, 20, 20, 15, 10), True),
    ((32, 16, 48), (96, 48, 144), False)])             # aligned widths, LayerNorm without bias, no MLP biases
def test_fused_layer_norm_equals_band_layer_norm_then_loop(widths, hidden, bias, monkeypatch):
    """``norm=`` (the band LayerNorm applied inside the kernels, on the residual stream): values and gradients of
    the input, the MLP and the LayerNorm parameters equal BandLayerNorm followed by the per-band loop."""
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw_splits", 3)
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dx_block_m", 32)   # LayerNorm partials over several dx blocks
    ref, fused = _pair(widths, hidden, bias)
    norms = []
    for _ in range(2):
        torch.manual_seed(1)
        norm = BandLayerNorm(widths, eps=1e-5, bias=bias).to(DEVICE)
        for p in norm.parameters():
            p.data.normal_(1.0 if p is norm.weight[0] else 0.0, 0.5)
        norms.append(norm)
    x = 3 * torch.randn(3, 47, sum(widths), device=DEVICE) + torch.linspace(-2, 2, sum(widths), device=DEVICE)
    gy = torch.randn_like(x)
    outs = []
    for m, norm in zip((ref, fused), norms):
        xi = x.clone().requires_grad_()
        y = m(xi, ablate_band=1, norm=norm)
        y.backward(gy)
        grads = {n: p.grad for n, p in [*m.named_parameters(), *norm.named_parameters(prefix="ln")]}
        outs.append((y.detach(), xi.grad, grads))
    (y0, gx0, gp0), (y1, gx1, gp1) = outs
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx1, gx0, atol=1e-4, rtol=1e-4)
    assert gp1.keys() == gp0.keys() and any(n.startswith("ln.") for n in gp0)
    for name in gp0:
        torch.testing.assert_close(gp1[name], gp0[name], atol=1e-4, rtol=1e-4, msg=name)
    assert gp1["ln.weight.1"].abs().max() == 0   # the ablated band's norm gets no gradient either


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast and torch.compile on the GPU")
def test_fused_bf16_compiled_model_matches_loop():
    torch.manual_seed(0)
    cfg = lm_preset("band", vocab_size=512, max_seq_len=128, n_layer=2, dropout=0.0, params_matched=True)
    ref = Transformer(cfg.replace(band_impl="loop")).to(DEVICE)
    fused = Transformer(cfg.replace(band_impl="fused")).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    assert_compiled_bf16_lm_matches(ref, fused)
    # with the seed's dropout (0.1) the compiled fused model trains: finite loss, gradients in every band
    drop = Transformer(cfg.replace(band_impl="fused", dropout=0.1)).to(DEVICE)
    idx = torch.randint(0, 512, (4, 129), device=DEVICE)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = torch.compile(drop, fullgraph=True)(idx[:, :-1], idx[:, 1:])
    loss.backward()
    assert torch.isfinite(loss)
    assert all(w.grad.abs().sum() > 0 for w in drop.blocks[0].mlp.w1)


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs")
def test_fused_model_runs_under_cuda_graphs():
    """torch.compile mode reduce-overhead (CUDA graphs) with the fused band MLP: nothing the op allocates outlives
    a captured graph (its band table is `BandMLP`'s buffer), and replays give the eager model's loss and
    gradients. Failed before (the table was allocated, and cached, on the op's first call: "tensor(s) in the
    cudagraph pool not tracked as outputs")."""
    torch.manual_seed(0)
    cfg = lm_preset("band", vocab_size=512, max_seq_len=64, n_layer=1, dropout=0.0, params_matched=True)
    eager = Transformer(cfg.replace(band_impl="fused")).to(DEVICE)
    graphed = Transformer(cfg.replace(band_impl="fused")).to(DEVICE)
    graphed.load_state_dict(eager.state_dict())
    step = torch.compile(graphed, mode="reduce-overhead")
    idx = torch.randint(0, 512, (4, 65), device=DEVICE)
    _, loss_ref = eager(idx[:, :-1], idx[:, 1:])
    loss_ref.backward()
    for _ in range(3):   # warm-up, record, replay
        torch.compiler.cudagraph_mark_step_begin()
        graphed.zero_grad(set_to_none=True)
        _, loss = step(idx[:, :-1], idx[:, 1:])
        loss.backward()
        torch.testing.assert_close(loss.detach().clone(), loss_ref.detach(), atol=1e-4, rtol=1e-4)
    for (name, p), q in zip(eager.named_parameters(), graphed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


def _kernel_mask(n: int, h: int, seed: torch.Tensor, band: int, p: float) -> torch.Tensor:
    """The kernel's (n, h) keep-mask of band ``band``: read out by a one-band probe with zero W1, bias 1 and W2 = I
    (every hidden unit carries gelu(1) and lands in its own output column); the band index offsets the seed."""
    dev = seed.device
    y = band_mlp_kernel.band_mlp(torch.zeros(n, h, device=dev), [torch.zeros(h, h, device=dev)],
                                 [torch.ones(h, device=dev)], [torch.eye(h, device=dev)], [torch.zeros(h, device=dev)],
                                 seed + band, p)
    return y != 0


def _dropout_reference(mlp: BandMLP, x: torch.Tensor, seed: torch.Tensor, p: float) -> torch.Tensor:
    """The per-band loop in torch with the kernel's own hidden-dropout masks."""
    outs = []
    for i, (xi, w1, b1, w2, b2) in enumerate(zip(x.split(mlp.widths, -1), mlp.w1, mlp.b1, mlp.w2, mlp.b2)):
        keep = _kernel_mask(x.shape[0], w1.shape[0], seed, i, p)
        outs.append((torch.nn.functional.gelu(xi @ w1.T + b1) * keep / (1 - p)) @ w2.T + b2)
    return torch.cat(outs, -1)


@needs_triton
def test_fused_dropout_is_a_fixed_mask_per_seed_with_the_right_rate_and_matching_gradients(monkeypatch):
    """Hidden dropout inside the kernel: the rate is p, the mask depends only on the seed, and the backward
    kernels regenerate the forward's mask (gradients equal autograd through the masked loop)."""
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "tuned", 0)  # the tile sizes below are the ones launched
    torch.manual_seed(0)
    widths, hidden, p = (16, 8), (40, 24), 0.3
    mlp = BandMLP(widths, hidden, dropout=0.0, impl="fused").to(DEVICE)
    mlp.reset_parameters(0.3, 0.3)
    x = torch.randn(50, 24, device=DEVICE)
    seed = torch.tensor([1234], device=DEVICE)
    args = ([w for w in mlp.w1], list(mlp.b1), [w for w in mlp.w2], list(mlp.b2))
    keep = _kernel_mask(2000, 64, seed, 0, p)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.01                          # 128k draws: sd 0.0013
    assert not torch.equal(keep, _kernel_mask(2000, 64, seed, 1, p))                 # bands draw differently
    with pytest.MonkeyPatch.context() as mp:                  # the mask does not depend on the hidden tiling
        mp.setitem(band_mlp_kernel.CONFIG, "block_h", 16)
        assert torch.equal(keep, _kernel_mask(2000, 64, seed, 0, p))
    y1 = band_mlp_kernel.band_mlp(x, *args, seed, p)
    # the three kernels tile the hidden units differently (32, 64, 16 units): their masks must still agree
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dx_block_h", 64)
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw_block_h", 16)
    assert torch.equal(y1, band_mlp_kernel.band_mlp(x, *args, seed, p))          # same seed, same mask
    assert not torch.allclose(y1, band_mlp_kernel.band_mlp(x, *args, seed + 1, p))
    xa = x.clone().requires_grad_()
    ya = band_mlp_kernel.band_mlp(xa, *args, seed, p)
    xb = x.clone().requires_grad_()
    yb = _dropout_reference(mlp, xb, seed, p)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-4)
    gy = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, [xa, *mlp.parameters()], gy)
    gb = torch.autograd.grad(yb, [xb, *mlp.parameters()], gy)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@needs_triton
def test_fused_module_applies_dropout_only_in_training():
    torch.manual_seed(0)
    ref = BandMLP((16, 8), (40, 24), dropout=0.5, impl="loop").to(DEVICE)
    ref.reset_parameters(0.3, 0.3)
    fused = BandMLP((16, 8), (40, 24), dropout=0.5, impl="fused").to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(30, 24, device=DEVICE)
    ref.eval(), fused.eval()
    torch.testing.assert_close(fused(x), ref(x), atol=1e-5, rtol=1e-4)
    fused.train()
    assert not torch.allclose(fused(x), fused(x))  # a new mask per call


def test_fused_on_a_non_cuda_tensor_runs_the_loop(monkeypatch):
    """`band_impl=fused` (what `auto` picks for the matched arms where Triton is installed) still runs on the CPU."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(band_mlp_kernel, "available", lambda: True)
    ref, _ = _pair((16, 8), (40, 24), True)
    fused = BandMLP((16, 8), (40, 24), impl="fused")
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(5, 24)
    torch.testing.assert_close(fused(x), ref.cpu()(x))


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
    pad = [band_mlp_kernel.padded_hidden(h) - h for h in hidden]    # the packed layout (as band_mlp packs)
    dims = [n for d, h, p in zip(widths, hidden, pad) for n in (d, h + p)]
    widths_hidden = tuple(zip(widths, hidden))
    w1f = torch.cat([F.pad(w, (0, 0, 0, p)).reshape(-1) for w, p in zip(w1, pad)]).detach().requires_grad_()
    w2tf = torch.cat([F.pad(w.t(), (0, 0, 0, p)).reshape(-1) for w, p in zip(w2, pad)]).detach().requires_grad_()
    b1f = torch.cat([F.pad(b, (0, p)) for b, p in zip(b1, pad)]).detach().requires_grad_() if bias else None
    lnw, lnb = torch.randn(24, device=DEVICE, requires_grad=True), torch.randn(24, device=DEVICE, requires_grad=True)

    def detach(a):
        return a.detach() if isinstance(a, torch.Tensor) else a
    for seed, p, norm in ((None, 0.0, (None, None)), (torch.tensor([7], device=DEVICE), 0.2, (lnw, None)),
                          (None, 0.0, (lnw, lnb))):
        args = (w1f, b1f, w2tf, *norm, 1e-5, seed, p, dims, band_mlp_kernel.band_table(widths_hidden).to(DEVICE))
        torch.library.opcheck(torch.ops.akira.band_mlp_packed.default, (x, *args, True))
        dy = torch.randn(7, 24, device=DEVICE)
        _, xn = torch.ops.akira.band_mlp_packed(x.detach(), *[detach(a) for a in args], True)
        rows = band_mlp_kernel._partial_rows(7, dims, w1f.dtype)
        torch.library.opcheck(torch.ops.akira.band_mlp_packed_backward.default,
                              (dy, x.detach(), xn, *[detach(a) for a in args], rows, True))


def test_band_table_rows_are_contiguous_per_launch_group_grouped_or_not():
    """The kernels' band table (a `BandMLP` buffer): rows (band, col0, d, h, woff, hoff) for the packed weights,
    whose hidden sizes are padded to multiples of H_ALIGN, ordered so that each launch group's bands are
    contiguous rows from its row0, for grouped and per-band launches alike."""
    assert band_mlp_kernel.H_ALIGN == 128
    pairs = ((8, 24), (40, 200), (20, 40), (32, 64), (16, 300))      # padded widths 16, 64, 32, 32, 16
    padded = tuple((d, band_mlp_kernel.padded_hidden(h)) for d, h in pairs)
    assert [h for _, h in padded] == [128, 256, 128, 128, 384]
    table = band_mlp_kernel.band_table(pairs)
    assert torch.equal(table, band_mlp_kernel.band_table(padded))
    assert table.dtype == torch.int32 and table.tolist() == [
        [0, 0, 8, 128, 0, 0], [4, 100, 16, 384, 8 * 128 + 40 * 256 + 20 * 128 + 32 * 128, 128 + 256 + 128 + 128],
        [1, 8, 40, 256, 8 * 128, 128], [2, 48, 20, 128, 8 * 128 + 40 * 256, 128 + 256],
        [3, 68, 32, 128, 8 * 128 + 40 * 256 + 20 * 128, 128 + 256 + 128]]
    grouped = band_mlp_kernel._launch_groups(padded)
    assert [(g["BD"], g["row0"], g["n"], g["h"]) for g in grouped] == [
        (16, 0, 2, [128, 384]), (64, 2, 1, [256]), (32, 3, 2, [128, 128])]
    assert band_mlp_kernel._work_items(grouped[2], 32) == 4 + 4    # dW items: hidden tiles over the group's bands
    single = band_mlp_kernel._launch_groups(padded, grouped=False)
    assert sorted(table[g["row0"], 0].item() for g in single) == list(range(5))     # every band once
    assert all(g["n"] == 1 and g["h"] == [table[g["row0"], 3].item()] for g in single)


@needs_triton
def test_a_table_of_other_bands_or_a_dropout_of_one_is_refused():
    x = torch.randn(4, 24, device=DEVICE)
    w1, w2 = [torch.randn(40, 16, device=DEVICE), torch.randn(24, 8, device=DEVICE)], \
        [torch.randn(16, 40, device=DEVICE), torch.randn(8, 24, device=DEVICE)]
    wrong = band_mlp_kernel.band_table(((16, 40), (4, 8), (4, 16))).to(DEVICE)
    with pytest.raises(ValueError, match="table must be band_table of the 2 bands"):
        band_mlp_kernel.band_mlp(x, w1, [], w2, [], None, 0.0, table=wrong)
    with pytest.raises(ValueError, match=r"p_drop must be in \[0, 1\), got 1.0"):
        band_mlp_kernel.band_mlp(x, w1, [], w2, [], torch.tensor([1], device=DEVICE), 1.0)


def test_launch_config_takes_a_widths_tuned_settings_over_the_defaults(monkeypatch):
    """Per padded width, TUNED's measured settings replace CONFIG's (per kernel) for 16-bit inputs; tuned=0 turns
    the table off."""
    cfg = band_mlp_kernel.CONFIG
    monkeypatch.setattr(band_mlp_kernel, "TUNED", {128: {"dw_block_h": 64, "block_m": 128}})
    assert band_mlp_kernel.launch_config("dw", 128) == {"block_m": cfg["dw_block_m"], "block_h": 64,
                                                        "warps": cfg["dw_warps"], "stages": cfg["dw_stages"]}
    assert band_mlp_kernel.launch_config("fwd", 128)["block_m"] == 128
    assert band_mlp_kernel.launch_config("dx", 128)["block_m"] == cfg["dx_block_m"]
    assert band_mlp_kernel.launch_config("dw", 64)["block_h"] == cfg["dw_block_h"]
    assert band_mlp_kernel.launch_config("dw", 128, torch.float32)["block_h"] == cfg["dw_block_h"]  # 16-bit only
    monkeypatch.setitem(cfg, "tuned", 0)
    assert band_mlp_kernel.launch_config("dw", 128)["block_h"] == cfg["dw_block_h"]


@needs_triton
def test_kernel_gelu_and_its_derivative_match_the_exact_erf_form():
    """The kernels' branch-free GELU (`_cdf_and_gauss`, erfc by Abramowitz & Stegun 7.1.26) against float64
    erf over [-12, 12] (fp32 inputs): gelu to 2.5e-7 absolute plus two ulps of fp32 (the rounding of p Phi(p)),
    gelu' to 2e-7 plus two ulps (the approximation's own errors: 2.1e-7 and 7e-8; the rest is fp32 arithmetic)."""
    triton, tl = band_mlp_kernel.triton, band_mlp_kernel.tl

    @triton.jit
    def _probe(p_ptr, g_ptr, d_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = i < n
        p = tl.load(p_ptr + i, mask=ok, other=0.0)
        act, grad = band_mlp_kernel._gelu_and_grad(p)
        tl.store(g_ptr + i, act, mask=ok)
        tl.store(d_ptr + i, grad, mask=ok)
        tl.store(p_ptr + i, band_mlp_kernel._gelu(p), mask=ok)   # the forward kernel's gelu

    p = torch.cat([torch.linspace(-12, 12, 40_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])]).to(DEVICE)
    g, d = torch.empty_like(p), torch.empty_like(p)
    probe = p.clone()
    _probe[(triton.cdiv(p.numel(), 1024),)](probe, g, d, p.numel(), BLOCK=1024)
    x = p.double()
    cdf = 0.5 * (1 + torch.erf(x / 2 ** 0.5))
    want_g, want_d = x * cdf, cdf + x * torch.exp(-x * x / 2) / (2 * torch.pi) ** 0.5
    ulp2 = 2.4e-7
    for gelu in (g, probe):
        assert ((gelu.double() - want_g).abs() - ulp2 * want_g.abs()).max() < 2.5e-7
    assert ((d.double() - want_d).abs() - ulp2 * want_d.abs()).max() < 2e-7
    assert g[p < -6].abs().max() < 1e-8 and (g[p > 6] - p[p > 6]).abs().max() < 1e-5


@needs_triton
def test_packed_bf16_gelu_is_as_accurate_as_the_loop_under_bf16_autocast():
    """The kernels' GELU in packed bf16 arithmetic (`_act16`, `_act_dpre16`, `_dpre16`: PTX on the GPU,
    `_gelu16_emulated` under the interpreter) against float64 over [-12, 12] (fp32 inputs; neighbours differ, so
    a mix-up of the two units of a pair shows): act within 2^-7 |p| (rounding p to bf16 and the result), dpre =
    dact gelu'(p) within |dact| (2^-7 |gelu'| + 6e-3); root-mean-square errors within 1.1x (act) and 1.25x (dpre)
    of those of the per-band loop under bf16 autocast (torch's GELU of the bf16-rounded pre-activation, rounded
    to bf16: emulated 1.00x and 1.05x)."""
    triton, tl = band_mlp_kernel.triton, band_mlp_kernel.tl

    @triton.jit
    def _probe(p_ptr, d_ptr, a_ptr, a2_ptr, g_ptr, g2_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = i < n
        p, dact = tl.load(p_ptr + i, mask=ok, other=0.0), tl.load(d_ptr + i, mask=ok, other=0.0)
        act, dpre = band_mlp_kernel._act_dpre16(p, dact)
        tl.store(a_ptr + i, act, mask=ok)
        tl.store(a2_ptr + i, band_mlp_kernel._act16(p), mask=ok)
        tl.store(g_ptr + i, dpre, mask=ok)
        tl.store(g2_ptr + i, band_mlp_kernel._dpre16(p, dact), mask=ok)

    torch.manual_seed(0)
    p = torch.cat([torch.linspace(-12, 12, 40_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 3.0])]).to(DEVICE)
    dact = torch.randn_like(p)
    act, act2, dpre, dpre2 = (torch.empty(p.shape, dtype=torch.bfloat16, device=DEVICE) for _ in range(4))
    _probe[(triton.cdiv(p.numel(), 1024),)](p, dact, act, act2, dpre, dpre2, p.numel(), BLOCK=1024)
    assert torch.equal(act, act2) and torch.equal(dpre, dpre2)
    x, d = p.double(), dact.double()
    cdf = 0.5 * (1 + torch.erf(x / 2 ** 0.5))
    want_a, grad = x * cdf, cdf + x * torch.exp(-x * x / 2) / (2 * torch.pi) ** 0.5
    err_a, err_d = (act.double() - want_a).abs(), (dpre.double() - d * grad).abs()
    assert (err_a - 2 ** -7 * x.abs()).max() <= 1e-6
    assert (err_d - d.abs() * (2 ** -7 * grad.abs() + 6e-3)).max() <= 0
    xb = x.bfloat16().double()      # the loop under autocast: the pre-activation rounded to bf16
    cdf_b = 0.5 * (1 + torch.erf(xb / 2 ** 0.5))
    ref_a = (xb * cdf_b).bfloat16().double()
    ref_d = (d.bfloat16().double() * (cdf_b + xb * torch.exp(-xb * xb / 2) / (2 * torch.pi) ** 0.5)).bfloat16()
    rms = lambda e: e.pow(2).mean().sqrt().item()   # noqa: E731
    assert rms(err_a) <= 1.1 * rms(ref_a - want_a)
    assert rms(err_d) <= 1.25 * rms(ref_d.double() - d * grad)
    assert act[p < -6].abs().max() < 1e-6 and torch.equal(act[p > 6], p[p > 6].bfloat16())


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 matmuls (the Triton interpreter multiplies bf16's bits)")
@pytest.mark.parametrize("bias", [True, False])
def test_fused_bf16_gradients_with_the_packed_gelu_are_as_close_as_with_the_fp32_gelu(bias, monkeypatch):
    """bf16 weights (where the kernels take the packed-bf16 GELU, `BandMLP.gelu16`): the output and the input's and
    weights' gradients of the fused MLP (LayerNorm inside) are as close to float64's as with the fp32 GELU
    (relative norm errors within 1.5x plus 1e-3, and both under 2e-2; a mix-up of the two units of a pair, or of
    the bias gradient's row pairs, would be O(1))."""
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw_splits", 3)
    widths, hidden = (32, 16, 48), (96, 48, 144)
    ref, fused = _pair(widths, hidden, bias)
    torch.manual_seed(1)
    norm = BandLayerNorm(widths).to(DEVICE)
    x = torch.randn(2, 96, sum(widths), device=DEVICE)
    gy = torch.randn_like(x)

    def grads(m, dtype):
        m, ln = m.to(dtype), norm.to(dtype)
        m.zero_grad(), ln.zero_grad()
        xi = x.to(dtype).requires_grad_()
        y = m(xi, norm=ln)
        y.backward(gy.to(dtype))
        return [y.detach().double(), xi.grad.double(), *(p.grad.double() for p in m.parameters())]

    want = grads(ref, torch.float64)
    errors = {}
    for g16 in (False, True):
        fused.gelu16 = g16
        errors[g16] = [((g - w).norm() / w.norm()).item() for g, w in zip(grads(fused, torch.bfloat16), want)]
    for e16, e32 in zip(errors[True], errors[False]):
        assert e16 <= 1.5 * e32 + 1e-3 and e16 < 2e-2, errors


@needs_triton
def test_row_pair_sums_add_rows_r_and_r_plus_8_of_each_16():
    """`_row_pair_sums16` (the dW kernel's bias gradient under the packed GELU): row i of its output is the
    bf16 sum of rows 16 (i // 8) + i % 8 and that + 8 of its input."""
    triton, tl = band_mlp_kernel.triton, band_mlp_kernel.tl

    @triton.jit
    def _probe(t_ptr, out_ptr, BM: tl.constexpr, BH: tl.constexpr):
        rows, cols = tl.arange(0, BM), tl.arange(0, BH)
        t = tl.load(t_ptr + rows[:, None] * BH + cols[None, :])
        half = tl.arange(0, BM // 2)
        tl.store(out_ptr + half[:, None] * BH + cols[None, :], band_mlp_kernel._row_pair_sums16(t, BM, BH))

    t = torch.randn(64, 32, device=DEVICE).bfloat16()
    out = torch.empty(32, 32, device=DEVICE)
    _probe[(1,)](t, out, BM=64, BH=32)
    pairs = t.float().view(4, 2, 8, 32)
    torch.testing.assert_close(out, (pairs[:, 0] + pairs[:, 1]).bfloat16().float().reshape(32, 32), atol=0, rtol=0)


def test_cached_launch_keys_on_what_triton_specialises_on():
    """`CachedLaunch` reuses a compiled kernel only for arguments Triton would compile the same kernel for."""
    from akira.models.lm.triton_support import _spec
    buf = torch.zeros(64)
    assert _spec(buf[:8]) == _spec(buf[4:12]) != _spec(buf[1:9])          # 16-byte aligned or not
    assert _spec(buf.half()) != _spec(buf)
    assert len({_spec(1), _spec(16), _spec(17), _spec(32), _spec(2 ** 40)}) == 4   # 16 and 32 alike
    assert _spec(0.5) == _spec(1e-5) != _spec(True)


@pytest.mark.skipif(DEVICE != "cuda", reason="the cached launch path runs on the GPU only")
def test_cached_launch_gives_what_tritons_launch_gives(monkeypatch):
    """Values and gradients with the cached launches equal those of Triton's own launch path, over token counts
    and input alignments that change the kernels' specialisation (so cached kernels must not be mixed up)."""
    _, fused = _pair((32, 16), (80, 40), True)      # one launch group: three kernels per specialisation
    norm = BandLayerNorm(fused.widths).to(DEVICE)
    results = {}
    for mode in ("1", "0", "1"):
        monkeypatch.setenv("AKIRA_TRITON_CACHED_LAUNCH", mode)
        out = []
        for n, offset in ((141, 0), (144, 0), (144, 1), (1, 0), (141, 0)):
            torch.manual_seed(n + offset)
            x = torch.randn(n * 48 + offset, device=DEVICE)[offset:].view(n, 48).requires_grad_()
            y = fused(x, norm=norm)
            y.backward(torch.ones_like(y))
            out.append((y.detach(), x.grad, fused.w1[0].grad.clone(), norm.weight[0].grad.clone()))
            fused.zero_grad(), norm.zero_grad()
        results.setdefault(mode, []).append(out)
    for a, b in zip(results["1"][0], results["0"][0]):
        for u, v in zip(a, b):
            assert torch.equal(u, v)
    for a, b in zip(results["1"][1], results["0"][0]):   # second pass: every launch from the cache
        for u, v in zip(a, b):
            assert torch.equal(u, v)


def test_backward_partial_shapes_come_from_its_arguments_not_the_config(monkeypatch):
    """The backward op's partial-sum shapes are its ``rows`` argument (part of a traced graph, so of its cache
    key), never `CONFIG` read at run time: a graph traced under one `dw_splits` and replayed from Inductor's cache
    under another must still agree with its fake kernel (it did not, before rows became an argument)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    monkeypatch.setitem(band_mlp_kernel.CONFIG, "dw_splits", 8)
    dims = [16, 40, 8, 24]
    with FakeTensorMode():
        x, dy = torch.empty(100, 24), torch.empty(100, 24)
        w1f, w2tf, b1f, ln = torch.empty(16 * 40 + 8 * 24), torch.empty(16 * 40 + 8 * 24), torch.empty(64), torch.empty(24)
        table = torch.empty(2, 6, dtype=torch.int32)
        out = torch.ops.akira.band_mlp_packed_backward(dy, x, x, w1f, b1f, w2tf, ln, ln, 1e-5, None, 0.0, dims, table,
                                                       [3, 5], True)
    assert [tuple(t.shape) for t in out] == [(100, 24), (3, 832), (3, 64), (3, 832), (5, 24), (5, 24)]
    assert band_mlp_kernel._partial_rows(100, dims, torch.bfloat16)[0] == 2      # 100 tokens: 2 splits of >= 64
