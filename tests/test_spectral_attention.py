"""Temporal, neighbor and wormhole attention of the spectral 2D predictor.

Each module is checked against a naive, explicit implementation of the reference formulas (explicit
``D``-dim features, explicit ``W_q, W_k, W_v, W_o``, loops over query frames / offsets / candidates), so the
vectorised patch-space computation is shown to be the same function; plus causality (outputs and gradients)
per attention type.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from akira.models.fields.spectral.features import BandEmbedding, patches
from akira.models.fields.spectral.neighbor import NeighborAttention
from akira.models.fields.spectral.temporal import TemporalAttention
from akira.models.fields.spectral.window import windowed_attention
from akira.models.fields.spectral.wormhole import WormholeAttention, pooled_grid

B, H, W, D, A, K = 2, 6, 5, 8, 6, 3  # K: feature kernel
N = H * W


def _setup(frames: int, seed: int = 0):
    """Random band ``(B, frames, H, W)``, embedding, patches ``(B, frames, k*k, H, W)``."""
    torch.manual_seed(seed)
    band = torch.rand(B, frames, H, W)
    emb = BandEmbedding(1, D, K)
    pt = patches(band[:, :, None], K)[:, :, 0]
    return band, emb, pt


def _feat(emb, pt):
    """Explicit features ``(B, S, D, H, W)`` of patches ``(B, S, k*k, H, W)``."""
    return emb.features(pt.movedim(2, -1), 0).movedim(-1, 2)


# ----------------------------------------------------------------------------------------------- temporal
def _naive_temporal(mod: TemporalAttention, f: torch.Tensor, s_q: int) -> torch.Tensor:
    """``f (B, S+T-1, D, H, W)`` -> ``(B, S, D, H, W)``: REFERENCE §1.4 with the current frame as a key."""
    t = mod.window
    wq, wk, wv, wo = (m.weight for m in (mod.proj.w_q, mod.proj.w_k, mod.proj.w_v, mod.proj.w_o))
    fx = f.movedim(2, -1)  # (B, S', H, W, D)
    outs = []
    for s in range(s_q):
        q = fx[:, s + t - 1] @ wq.t()  # (B, H, W, A)
        keys = fx[:, s : s + t]  # (B, T, H, W, D), oldest first
        k = keys @ wk.t()
        v = keys @ wv.t()
        scores = torch.einsum("bhwa,bthwa->bhwt", q, k) / math.sqrt(mod.proj.attn_dim)
        age = torch.arange(t - 1, -1, -1, dtype=scores.dtype)
        prior = age * math.log(mod.decay_rate)
        if mod.selection == "topk" and mod.top_k < t:
            sel = scores + prior if mod.recency == "before" else scores
            idx = sel.topk(mod.top_k, dim=-1).indices
            keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, idx, True)
            logits = (scores + prior).masked_fill(~keep, float("-inf"))
        else:
            logits = scores + prior
        wts = torch.softmax(logits, dim=-1)
        outs.append(torch.einsum("bhwt,bthwa->bhwa", wts, v) @ wo.t())
    return torch.stack(outs, 1).movedim(-1, 2)


@pytest.mark.parametrize(
    "selection,recency,top_k",
    [("topk", "after", 2), ("topk", "before", 2), ("softmax", "after", 4), ("topk", "after", 4)],
)
def test_temporal_matches_naive_reference(selection, recency, top_k):
    s, t = 5, 4
    band, emb, pt = _setup(s + t - 1)
    mod = TemporalAttention(D, A, t, top_k, 0.8, selection, recency, block=2)  # 2 blocks + a padded one
    kv = pt.flatten(3).permute(0, 3, 1, 2)
    w, c = emb.band(0)
    pbar, ent, wmap = mod(kv[:, :, t - 1 :], kv, w, c, want_map=True)
    got = mod.proj.read_out(pbar, w, c).permute(0, 2, 3, 1).reshape(B, s, D, H, W)
    torch.testing.assert_close(got, _naive_temporal(mod, _feat(emb, pt), s), atol=1e-5, rtol=1e-4)
    assert ent.shape == (B, N) and wmap.shape == (B, N, t)
    torch.testing.assert_close(wmap.sum(-1), torch.ones(B, N))
    assert int((wmap > 0).sum(-1).max()) <= (top_k if selection == "topk" else t)


def test_windowed_attention_is_causal_in_values_and_gradients():
    torch.manual_seed(3)
    s, win, g, d = 7, 3, 2, 4
    q = torch.randn(1, 5, s, d, requires_grad=True)
    kv = torch.randn(1, 5, s + win - 1, g, d, requires_grad=True)
    for norm, top_k in [("joint", 2), ("joint", None), ("per_frame", None)]:
        out, _, _ = windowed_attention(q, kv, win, top_k=top_k, log_gamma=-0.1, norm=norm, block=3)
        t = 3  # query t sees kv steps t .. t + win - 1
        kv2 = kv.detach().clone()
        kv2[:, :, t + win :] += 5.0
        q2 = q.detach().clone()
        q2[:, :, t + 1 :] += 5.0
        out2, _, _ = windowed_attention(q2, kv2, win, top_k=top_k, log_gamma=-0.1, norm=norm, block=3)
        torch.testing.assert_close(out2[:, :, : t + 1], out[:, :, : t + 1].detach(), atol=1e-6, rtol=0)
        assert (out2[:, :, t + 1 :] - out[:, :, t + 1 :]).abs().max() > 1e-3  # the perturbation is seen
        gq, gkv = torch.autograd.grad(out[:, :, : t + 1].sum(), (q, kv))
        assert gq[:, :, t + 1 :].abs().max() == 0 and gkv[:, :, t + win :].abs().max() == 0
        assert gkv[:, :, : t + win].abs().max() > 0


def test_temporal_causal_and_gradients():
    s, t = 6, 4
    _, emb, pt = _setup(s + t - 1)
    mod = TemporalAttention(D, A, t, 2, 0.9)
    w, c = emb.band(0)
    kv = pt.flatten(3).permute(0, 3, 1, 2).clone().requires_grad_(True)
    out = mod.proj.read_out(mod(kv[:, :, t - 1 :], kv, w, c)[0], w, c)
    q_t = 2  # query frame 2 = kv index 2 + t - 1
    kv2 = kv.detach().clone()
    kv2[:, :, q_t + t :] = torch.rand_like(kv2[:, :, q_t + t :])
    out2 = mod.proj.read_out(mod(kv2[:, :, t - 1 :], kv2, w, c)[0], w, c)
    torch.testing.assert_close(out2[:, :, : q_t + 1], out[:, :, : q_t + 1].detach(), atol=1e-6, rtol=0)
    (g,) = torch.autograd.grad(out[:, :, : q_t + 1].sum(), kv)
    assert g[:, :, q_t + t :].abs().max() == 0 and g[:, :, : q_t + t].abs().max() > 0


# ----------------------------------------------------------------------------------------------- neighbor
def _naive_neighbor(mod: NeighborAttention, f: torch.Tensor, s_q: int) -> torch.Tensor:
    """``f (B, S+L, D, H, W)`` -> ``(B, S, D, H, W)``: 3x3 x (L+1) frames, joint or per-frame softmax."""
    L = mod.layer_range
    wq, wk, wv, wo = (m.weight for m in (mod.proj.w_q, mod.proj.w_k, mod.proj.w_v, mod.proj.w_o))
    fp = F.pad(f.flatten(0, 1), (1, 1, 1, 1), mode="replicate").view(B, -1, D, H + 2, W + 2)
    outs = []
    for s in range(s_q):
        q = f[:, s + L].movedim(1, -1) @ wq.t()  # (B, H, W, A)
        scores, vals = [], []
        for fr in range(s, s + L + 1):
            for dy in range(3):
                for dx in range(3):
                    nb = fp[:, fr, :, dy : dy + H, dx : dx + W].movedim(1, -1)  # (B, H, W, D)
                    scores.append(((nb @ wk.t()) * q).sum(-1) / math.sqrt(mod.proj.attn_dim))
                    vals.append(nb @ wv.t())
        sc = torch.stack(scores, -1)  # (B, H, W, 9 (L+1)), frame-major
        vv = torch.stack(vals, -2)  # (B, H, W, 9 (L+1), A)
        if mod.norm == "joint":
            wts = torch.softmax(sc, -1)
        else:
            wts = torch.softmax(sc.view(B, H, W, L + 1, 9), -1).flatten(-2) / (L + 1)
        outs.append((wts.unsqueeze(-1) * vv).sum(-2) @ wo.t())
    return torch.stack(outs, 1).movedim(-1, 2)


@pytest.mark.parametrize("norm,L", [("joint", 2), ("per_frame", 2), ("joint", 0)])
def test_neighbor_matches_naive_reference(norm, L):
    s = 4
    _, emb, pt = _setup(s + L, seed=4)
    mod = NeighborAttention(D, A, L, norm)
    w, c = emb.band(0)
    q = pt[:, L:].flatten(3).permute(0, 3, 1, 2)
    pbar, ent = mod(q, pt, w, c)
    got = mod.proj.read_out(pbar, w, c).permute(0, 2, 3, 1).reshape(B, s, D, H, W)
    torch.testing.assert_close(got, _naive_neighbor(mod, _feat(emb, pt), s), atol=1e-5, rtol=1e-4)
    assert ent.shape == (B, N) and float(ent.max()) <= math.log(9 * (L + 1)) + 1e-5


def test_neighbor_causal_and_gradients():
    s, L = 5, 2
    _, emb, pt = _setup(s + L, seed=5)
    mod = NeighborAttention(D, A, L)
    w, c = emb.band(0)
    pt = pt.clone().requires_grad_(True)
    out = mod(pt[:, L:].flatten(3).permute(0, 3, 1, 2), pt, w, c)[0]
    q_t = 1
    pt2 = pt.detach().clone()
    pt2[:, q_t + L + 1 :] = torch.rand_like(pt2[:, q_t + L + 1 :])
    out2 = mod(pt2[:, L:].flatten(3).permute(0, 3, 1, 2), pt2, w, c)[0]
    torch.testing.assert_close(out2[:, :, : q_t + 1], out[:, :, : q_t + 1].detach(), atol=1e-6, rtol=0)
    (g,) = torch.autograd.grad(out[:, :, : q_t + 1].sum(), pt)
    assert g[:, q_t + L + 1 :].abs().max() == 0 and g[:, : q_t + L + 1].abs().max() > 0


# ----------------------------------------------------------------------------------------------- wormhole
def _wormhole_inputs(mod: WormholeAttention, s_q: int, seed: int, smooth: bool = False):
    t = mod.window
    torch.manual_seed(seed)
    band = torch.rand(B, s_q + t - 1, H, W)
    if smooth:  # a moving ramp: many strong matches
        yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        band = torch.stack([torch.sin(0.7 * xx + 0.5 * yy + 0.6 * i) for i in range(s_q + t - 1)])[None]
        band = (band.expand(B, -1, -1, -1) + 0.05 * torch.rand(B, s_q + t - 1, H, W)) / 2 + 0.5
    emb = BandEmbedding(1, D, K)
    pt = patches(band[:, :, None], K)[:, :, 0]
    w, c = emb.band(0)
    uq, uk = mod.descriptors(band, pt, w, c)
    vk = mod.pool_values(pt)
    qv = pt[:, t - 1 :].flatten(3).transpose(2, 3)
    return band, emb, pt, uq[:, t - 1 :], uk, vk, qv


def _naive_wormhole(mod, emb, uq, uk, vk, qv):
    """Brute force over every eligible candidate of every query."""
    t, kmin = mod.window, mod.min_distance
    w, c = emb.band(0)
    wq, wk, wv, wo = (m.weight for m in (mod.proj.w_q, mod.proj.w_k, mod.proj.w_v, mod.proj.w_o))
    sq = uq.shape[1]
    out = torch.zeros(B, sq, N, D)
    counts = torch.zeros(B, sq, N, dtype=torch.long)
    for b in range(B):
        for s in range(sq):
            qi = s + t - 1  # query frame in the key time axis
            frames = list(range(qi - (t - 1), qi - kmin + 1))  # eligible: t-(T-1) .. t-kmin
            cand = torch.cat([uk[b, f] for f in frames])  # (We*P, Du)
            vals = torch.cat([vk[b, f + (1 if mod.read_next else 0)] for f in frames])  # (We*P, k*k)
            sims = uq[b, s] @ cand.t()  # (N, We*P)
            top = sims.topk(min(mod.top_k, cand.shape[0]), dim=-1)
            fq = qv[b, s] @ w.t() + c  # (N, D) query features
            for n in range(N):
                ok = top.values[n] >= mod.threshold
                counts[b, s, n] = int(ok.sum())
                if not ok.any():
                    continue
                fv = vals[top.indices[n][ok]] @ w.t() + c  # (m, D) value-band features of the links
                logits = (fq[n] @ wq.t()) @ (fv @ wk.t()).t() / math.sqrt(mod.proj.attn_dim)
                logits = logits + mod.sim_scale * top.values[n][ok]
                out[b, s, n] = (torch.softmax(logits, -1) @ (fv @ wv.t())) @ wo.t()
    return out, counts


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(min_distance=1, threshold=0.98, chunk_size=200),  # 2 query pixels per chunk
        dict(min_distance=2, threshold=0.9, learned_weight=0.0, chunk_size=10**6),  # one chunk
        dict(
            min_distance=1, threshold=0.9, read_next=True, max_key_tokens=8, chunk_size=1100
        ),  # pooled keys (6x5 -> 3x2 tokens); chunks of 2 frames
    ],
)
def test_wormhole_matches_naive_reference(kwargs):
    t, s = 4, 3
    mod = WormholeAttention(D, A, t, top_k=3, **kwargs)
    with torch.no_grad():
        mod.sim_scale.fill_(3.0)
    _, emb, _, uq, uk, vk, qv = _wormhole_inputs(mod, s, seed=6, smooth=True)
    w, c = emb.band(0)
    pbar, gate, stats, link_map = mod(qv, uq, uk, vk, w, c, want_map=True)
    got = gate * mod.proj.read_out(pbar, w, c)
    ref, counts = _naive_wormhole(mod, emb, uq, uk, vk, qv)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert torch.equal(link_map, counts[:, -1])
    assert counts.max() <= mod.top_k and 0 < counts.sum() < 0.8 * counts.numel() * mod.top_k  # selective
    assert float(stats["wormhole_links"]) == pytest.approx(float(counts.sum()) / (B * s))
    assert float(stats["wormhole_link_rate"]) == pytest.approx(float(counts.sum()) / (B * s * N * mod.top_k))
    assert float(stats["wormhole_positions_with_links"]) == pytest.approx(float((counts > 0).sum()) / (B * s))
    assert float(stats["wormhole_mean_similarity"]) >= mod.threshold


def test_wormhole_descriptor_formula():
    mod = WormholeAttention(D, A, 4, top_k=2, threshold=0.5, learned_weight=0.3, sim_dim=5)
    band, emb, pt, _, _, _, _ = _wormhole_inputs(mod, 1, seed=7)
    w, c = emb.band(0)
    uq, uk = mod.descriptors(band, pt, w, c)
    assert uk is uq and uq.shape == (B, band.shape[1], N, 9 + 5)  # 6x5 grid: within the token budget
    padded = F.pad(band.flatten(0, 1)[:, None], (1, 1, 1, 1), mode="replicate")
    e = F.unfold(padded, 3).transpose(1, 2)  # (B*S, N, 9)
    e = e - e.mean(-1, keepdim=True)
    e = e / torch.sqrt(e.pow(2).sum(-1, keepdim=True) + 0.01**2)
    f = _feat(emb, pt).flatten(3).transpose(2, 3).flatten(0, 1)  # (B*S, N, D)
    g = F.normalize(f @ mod.sim_proj.weight.t(), dim=-1)
    ref = torch.cat([math.sqrt(0.7) * e, math.sqrt(0.3) * g], -1).view_as(uq)
    torch.testing.assert_close(uq, ref, atol=1e-5, rtol=1e-4)
    assert float(uq.detach().norm(dim=-1).max()) <= 1.0 + 1e-5
    assert pooled_grid(128, 128, 1024) == (32, 32) and pooled_grid(64, 64, 1024) == (32, 32)
    assert pooled_grid(32, 32, 1024) == (32, 32) and pooled_grid(32, 32, 64) == (8, 8)


@pytest.mark.parametrize("include_prev", [True, False])
def test_wormhole_prev_frame_eligibility(include_prev):
    """Frame t-1 is a copy of frame t (perfect matches); other past frames are noise."""
    t = 4
    mod = WormholeAttention(D, A, t, top_k=2, threshold=-1.0, min_distance=1 if include_prev else 2)
    torch.manual_seed(8)
    band = torch.rand(B, t, H, W)
    band[:, -2] = band[:, -1]
    uq, uk = mod.descriptors(band, patches(band[:, :, None], K)[:, :, 0], *BandEmbedding(1, D, K).band(0))
    idx = mod.select(uq[:, -1:], uk)  # (B, 1, N, k), window = frames 0 .. T-1-k_min
    frame = idx // uk.shape[2]
    if include_prev:
        assert bool((frame[..., 0] == t - 2).all())  # best link of every pixel: its copy in t-1
    else:
        assert int(frame.max()) <= t - 3  # t-1 never a candidate, all slots still filled
        assert idx.shape[-1] == 2


def test_wormhole_causal_and_gradients():
    t, s = 4, 4
    mod = WormholeAttention(D, A, t, top_k=3, threshold=0.0)
    band, emb, pt, _, _, _, _ = _wormhole_inputs(mod, s, seed=9, smooth=True)
    w, c = emb.band(0)

    def run(b_):
        uq, uk = mod.descriptors(b_, patches(b_[:, :, None], K)[:, :, 0], w, c)
        vk = mod.pool_values(patches(b_[:, :, None], K)[:, :, 0])
        qv = patches(b_[:, :, None], K)[:, t - 1 :, 0].flatten(3).transpose(2, 3)
        pbar, gate, _, _ = mod(qv, uq[:, t - 1 :], uk, vk, w, c)
        return gate * mod.proj.read_out(pbar, w, c)

    band = band.clone().requires_grad_(True)
    out = run(band)
    q_t = 1  # query frame 1 = band index 1 + t - 1
    band2 = band.detach().clone()
    band2[:, q_t + t :] = torch.rand_like(band2[:, q_t + t :])
    out2 = run(band2)
    torch.testing.assert_close(out2[:, : q_t + 1], out[:, : q_t + 1].detach(), atol=1e-6, rtol=0)
    assert (out2[:, q_t + 1 :] - out[:, q_t + 1 :]).abs().max() > 1e-4
    (g,) = torch.autograd.grad(out[:, : q_t + 1].sum(), band)
    assert g[:, q_t + t :].abs().max() == 0 and g[:, : q_t + t].abs().max() > 0


def test_wormhole_learned_similarity_receives_gradient():
    t = 4
    mod = WormholeAttention(D, A, t, top_k=4, threshold=0.0, learned_weight=0.5)
    _, emb, _, uq, uk, vk, qv = _wormhole_inputs(mod, 2, seed=10, smooth=True)
    w, c = emb.band(0)
    pbar, gate, _, _ = mod(qv, uq, uk, vk, w, c)
    (gate * mod.proj.read_out(pbar, w, c)).pow(2).sum().backward()
    for name, prm in mod.named_parameters():
        assert prm.grad is not None and prm.grad.abs().max() > 0, name


@pytest.mark.parametrize("norm,top_k", [("joint", 2), ("joint", None), ("per_frame", None)])
def test_windowed_attention_output_does_not_depend_on_the_block_size(norm, top_k):
    """The block size (CPU default 2, GPU default the window) is a speed/memory choice only."""
    torch.manual_seed(5)
    s, win, g, d = 7, 3, 2, 4
    q, kv = torch.randn(2, 5, s, d), torch.randn(2, 5, s + win - 1, g, d)
    ref, ref_ent, ref_map = windowed_attention(q, kv, win, top_k=top_k, log_gamma=-0.1, norm=norm, block=win,
                                               want_map=True)
    for block in (None, 1, 2, 4, s, s + 3):
        out, ent, wmap = windowed_attention(q, kv, win, top_k=top_k, log_gamma=-0.1, norm=norm, block=block,
                                            want_map=True)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ent, ref_ent, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(wmap, ref_map, atol=1e-6, rtol=1e-5)
