"""The full spectral 2D predictor: causality, parallel == streaming, gradients, statistics, errors, memory."""

from __future__ import annotations

import math

import pytest
import torch

from akira.models.fields.spectral import Spectral2DPredictor, build_spectral2d

SMALL = dict(
    dim=8,
    attn_dim=6,
    time_depth=4,
    temporal_top_k=2,
    layer_range=2,
    wormhole_top_k=3,
    wormhole_threshold=0.5,
    wormhole_chunk_size=20000,  # one frame of similarities per chunk
)


def _clip(b=2, s=7, h=8, w=9, seed=0, noise=0.05):
    """A moving smooth pattern plus noise, ``(B, S, H, W)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    phase = torch.rand(b, 1, 1, 1, generator=g) * 6
    t = torch.arange(s, dtype=torch.float32)[None, :, None, None]
    x = 0.5 + 0.4 * torch.sin(0.8 * xx + 0.5 * yy - 0.7 * t + phase)
    return (x + noise * torch.rand(b, s, h, w, generator=g)).clamp(0, 1)


def _model(**kw):
    torch.manual_seed(0)
    return Spectral2DPredictor(**{**SMALL, **kw})


def _stream(model, x):
    state = model.init_state(x.shape[0], x.shape[2], x.shape[3])
    preds = []
    for i in range(x.shape[1]):
        p, state = model.step(x[:, i], state)
        preds.append(p)
    return torch.stack(preds, 1)


# ----------------------------------------------------------------------------------------------- causality
ATTN = {
    "temporal": dict(use_neighbor=False, use_wormhole=False),
    "neighbor": dict(use_temporal=False, use_wormhole=False),
    "wormhole": dict(use_temporal=False, use_neighbor=False),
    "all": {},
}


@pytest.mark.parametrize("which", list(ATTN))
def test_parallel_mode_is_causal(which):
    model = _model(residual=False, **ATTN[which])  # sigmoid head: no clamping to hide differences
    x = _clip().requires_grad_(True)
    y = model.forward_sequence(x)
    t = 3
    x2 = x.detach().clone()
    x2[:, t + 1 :] = torch.rand_like(x2[:, t + 1 :])
    y2 = model.forward_sequence(x2)
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1].detach(), atol=1e-5, rtol=0)
    assert (y2[:, t + 1 :] - y[:, t + 1 :]).abs().max() > 1e-4  # later outputs do see the change
    (g,) = torch.autograd.grad(y[:, : t + 1].sum(), x)
    assert g[:, t + 1 :].abs().max() == 0
    assert g[:, : t + 1].abs().amax(dim=(0, 2, 3)).min() > 0  # every past frame matters


@pytest.mark.parametrize("which", ["all", "wormhole"])
def test_streaming_mode_is_causal_and_equals_parallel(which):
    model = _model(**ATTN[which])
    x = _clip(seed=1)
    with torch.no_grad():
        par = model.forward_sequence(x)
        st = _stream(model, x)
        t = 2
        x2 = x.clone()
        x2[:, t + 1 :] = torch.rand_like(x2[:, t + 1 :])
        st2 = _stream(model, x2)
    torch.testing.assert_close(st, par, atol=1e-5, rtol=0)
    torch.testing.assert_close(st2[:, : t + 1], st[:, : t + 1], atol=1e-6, rtol=0)


def test_stream_equals_parallel_and_window_forward_full_model():
    """Also checks the history padding rule (copies of frame 0) and ring wrap-around (S > 2T)."""
    model = _model(return_maps=True, selection="topk", neighbor_norm="per_frame", wormhole_read_next=True)
    x = _clip(b=2, s=10, seed=2)
    with torch.no_grad():
        par = model.forward_sequence(x)
        par_maps = {k: v.clone() for k, v in model.last_maps.items()}
        st = _stream(model, x)
        st_maps = dict(model.last_maps)
        for t in (0, 1, 5, 9):
            torch.testing.assert_close(model(x[:, : t + 1]), par[:, t], atol=1e-5, rtol=0)
        padded = torch.cat([x[:, :1].expand(-1, 3, -1, -1), x[:, :2]], 1)  # explicit padding == implicit
        torch.testing.assert_close(model(padded), par[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(st, par, atol=1e-5, rtol=0)
    # maps of the last step agree between the modes
    assert set(par_maps) == {"temporal_weights", "wormhole_link_counts"}
    assert par_maps["temporal_weights"].shape == (2, 8, 9, 4)
    torch.testing.assert_close(st_maps["temporal_weights"], par_maps["temporal_weights"], atol=1e-5, rtol=0)
    assert torch.equal(st_maps["wormhole_link_counts"], par_maps["wormhole_link_counts"])
    torch.testing.assert_close(par_maps["temporal_weights"].sum(-1), torch.ones(2, 8, 9))


def test_streaming_with_autograd_does_not_break_the_graph():
    model = _model()
    x = _clip(s=6, seed=3)
    preds = _stream(model, x)  # grad mode on: out-of-place ring writes
    preds.sum().backward()
    assert model.fusion[0].weight.grad.abs().max() > 0


# ----------------------------------------------------------------------------------------------- gradients
def test_every_parameter_receives_gradient():
    model = _model(wormhole_threshold=0.3)
    x = _clip(seed=4)
    y = model.forward_sequence(x[:, :-1])
    torch.nn.functional.mse_loss(y, x[:, 1:]).backward()
    assert float(model.last_stats["wormhole_link_rate"]) > 0.3  # links exist, several per query
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    names = {n for n, _ in model.named_parameters()}
    assert "wormhole.sim_proj.weight" in names and "wormhole.sim_scale" in names and "embed.weight" in names


def test_head_folding_equals_explicit_fusion_and_head():
    model = _model()
    torch.manual_seed(5)
    kk = model.feature_kernel**2
    ctxs = [torch.randn(2, 7, 3, kk) for _ in range(3)]
    gate = (torch.rand(2, 7, 3, 1) > 0.4).float()
    ctxs[2] = ctxs[2] * gate  # the wormhole context is zero where a query has no link
    got = model._head(ctxs, gate)
    outs = []
    for (mod, band), ctx in zip(model._attention_bands(), ctxs):
        o = mod.proj.read_out(ctx, *model._emb(band))
        outs.append(o * gate if mod is model.wormhole else o)
    ref = model.head(model.fusion(torch.cat(outs, -1)))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_residual_head_starts_near_copy_last_and_sigmoid_head_is_reference():
    x = _clip(seed=6)
    res = _model()(x)
    assert (res - x[:, -1]).abs().max() < 0.05 and res.min() >= 0 and res.max() <= 1
    sig = _model(residual=False)(x)
    assert sig.min() > 0 and sig.max() < 1 and (sig - x[:, -1]).abs().max() > 0.05


# ----------------------------------------------------------------------------------------------- statistics
def test_last_stats_are_informative():
    model = _model(n_bands=2, temporal_band="band_1", neighbor_band="high", wormhole_value_band="low")
    model(_clip(seed=7))
    s1 = dict(model.last_stats)
    expected = {
        "temporal_entropy",
        "neighbor_entropy",
        "wormhole_links",
        "wormhole_link_rate",
        "wormhole_positions_with_links",
        "wormhole_mean_similarity",
        "band_energy/low",
        "band_energy/high",
        "band_energy/band_1",
    }
    assert set(s1) == expected  # no constant mean-weight statistics, no unused bands
    assert all(v.ndim == 0 and not v.requires_grad for v in s1.values())
    assert 0 <= float(s1["temporal_entropy"]) <= math.log(2) + 1e-5  # top-2 of 4
    assert 0 <= float(s1["neighbor_entropy"]) <= math.log(27) + 1e-5
    assert 0 <= float(s1["wormhole_link_rate"]) <= 1
    model(torch.rand(2, 4, 8, 9))
    s2 = model.last_stats
    assert any(abs(float(s1[k]) - float(s2[k])) > 1e-4 for k in ("temporal_entropy", "neighbor_entropy"))


def test_wormhole_links_respect_top_k_and_threshold():
    for thr in (0.0, 0.9):
        model = _model(return_maps=True, wormhole_threshold=thr, wormhole_top_k=2)
        model.forward_sequence(_clip(seed=8))
        counts = model.last_maps["wormhole_link_counts"]
        st = model.last_stats
        assert counts.max() <= 2 and counts.min() >= 0
        if float(st["wormhole_links"]) > 0:
            assert float(st["wormhole_mean_similarity"]) >= thr
        rate = float(st["wormhole_links"]) / (8 * 9 * 2)
        assert float(st["wormhole_link_rate"]) == pytest.approx(rate, rel=1e-5)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(temporal_top_k=5), r"model\.temporal_top_k=5.*<= 4"),
        (dict(layer_range=4), r"model\.layer_range=4.*model\.time_depth=4"),
        (dict(temporal_band="mid"), r"model\.temporal_band='mid'.*allowed: intensity, low, high"),
        (dict(wormhole_value_band="band_2", n_bands=2), r"model\.wormhole_value_band='band_2'.*band_1"),
        (dict(wormhole_sim_band="band_0"), r"model\.wormhole_sim_band='band_0'"),
        (dict(n_bands=6, grid=32), r"model\.n_bands=6 needs grid >= 34"),
        (dict(selection="sparsemax"), r"model\.selection='sparsemax'.*topk, softmax"),
        (dict(recency="never"), r"model\.recency"),
        (dict(neighbor_norm="mean"), r"model\.neighbor_norm"),
        (dict(wormhole_threshold=1.5), r"model\.wormhole_threshold"),
        (dict(wormhole_skip_steps=2), r"model\.wormhole_skip_steps=2"),
        (
            dict(time_depth=2, layer_range=1, wormhole_include_prev=False),
            r"model\.time_depth=2.*time_depth >= 3",
        ),
        (dict(use_temporal=False, use_neighbor=False, use_wormhole=False), r"at least one"),
        (dict(feature_kernel=2), r"model\.feature_kernel=2"),
        (dict(decay_rate=0.0), r"model\.decay_rate"),
        (dict(dim=0), r"model\.dim=0"),
    ],
)
def test_bad_configs_fail_at_build_naming_the_key(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        _model(**kwargs)


def test_bad_inputs_fail_clearly():
    model = _model(n_bands=5)
    with pytest.raises(ValueError, match=r"model\.n_bands=5 needs grid >= 18"):
        model(torch.rand(1, 4, 8, 8))  # octave bands checked per grid at run time too
    model = _model()
    with pytest.raises(ValueError, match=r"\(B, T, H, W\)"):
        model(torch.rand(4, 8, 8))
    with pytest.raises(ValueError, match=r"frame must have shape"):
        model.step(torch.rand(1, 8, 9), model.init_state(2, 8, 9))
    with pytest.raises(ValueError, match=r"model\.preset='huge'"):
        build_spectral2d("huge")


# ----------------------------------------------------------------------------------------------- memory
def test_memory_estimate_is_bounded_at_128_xlarge():
    model = build_spectral2d("xlarge")
    est = model.estimate_peak_bytes(batch=8, grid=128)  # one prediction step
    assert est["total"] < 4 * 2**30
    # the similarity chunk never holds more than chunk_size entries (plus the windowed key copy)
    we, p = model.wormhole.key_frames, 32 * 32
    assert est["wormhole_similarity_chunk"] <= 4 * (2 * 2**26 + 8 * we * p * model.wormhole.desc_dim)
    # without the key-token budget the full similarity matrix of this step (HW x T*HW) would be ~56 GiB;
    # the chunks still hold at most 2^26 entries
    unpooled = build_spectral2d("xlarge", wormhole_max_key_tokens=128 * 128).estimate_peak_bytes(8, 128)
    full = 4 * 8 * 128 * 128 * we * 128 * 128
    assert unpooled["wormhole_similarity_chunk"] < full / 100 and unpooled["total"] < 4 * 2**30
    # a training clip of 16 frames at batch 8 stays within one H100
    assert model.estimate_peak_bytes(batch=8, grid=128, n_query=16)["total"] < 40 * 2**30
    assert model.estimate_peak_bytes(batch=1, grid=128)["total"] < est["total"]


def test_fast_preset_stream_equals_parallel_with_pooled_keys():
    torch.manual_seed(0)
    model = build_spectral2d("fast", wormhole_max_key_tokens=16, wormhole_threshold=0.97)  # 10x10 -> 4x4
    x = _clip(b=1, s=11, h=10, w=10, seed=9)
    with torch.no_grad():
        par = model.forward_sequence(x)
        assert 0 < float(model.last_stats["wormhole_link_rate"]) < 0.9
        st = _stream(model, x)
    torch.testing.assert_close(st, par, atol=1e-5, rtol=0)


def test_runs_under_bf16_autocast():
    model = _model()
    x = _clip(seed=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model.forward_sequence(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert (y - model.forward_sequence(x)).abs().max() < 0.05


@pytest.mark.parametrize("which", list(ATTN))
def test_forward_sequence_from_a_start_frame_equals_the_tail_of_the_full_sequence(which):
    """Training skips the padded-history queries (start = T - 1): same outputs, only fewer query frames."""
    model = _model(**ATTN[which]).eval()
    x = _clip(s=9)
    with torch.no_grad():
        full = model.forward_sequence(x)
        for start in (1, model.time_depth - 1, model.time_depth, x.shape[1] - 1):
            part = model.forward_sequence(x, start=start)
            assert part.shape == (x.shape[0], x.shape[1] - start, *x.shape[2:])
            torch.testing.assert_close(part, full[:, start:], rtol=0, atol=1e-5)
    for bad in (-1, x.shape[1]):
        with pytest.raises(ValueError, match="start must be in"):
            model.forward_sequence(x, start=bad)
