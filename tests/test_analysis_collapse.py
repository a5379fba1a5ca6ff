"""Belief-collapse metrics on hand-made attention patterns (closed forms) and on a tiny LM (logit lens)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from akira.analysis.collapse import (
    attention_entropy,
    circle_resultant,
    collapse_layer,
    collapse_metrics,
    head_sync,
    head_sync_chance,
    layer_row_metrics,
    logit_lens,
    normalized_entropy,
    summarize_collapse,
)
from akira.models.lm import Transformer, lm_preset

S = 8


def uniform_causal(s: int = S) -> torch.Tensor:
    return torch.tril(torch.ones(s, s)) / torch.arange(1, s + 1)[:, None]


def one_hot(keys: list[int], s: int = S) -> torch.Tensor:
    p = torch.zeros(s, s)
    p[torch.arange(s), torch.tensor(keys)] = 1.0
    return p


def test_uniform_attention_closed_forms():
    p = uniform_causal()
    h = attention_entropy(p)
    q = torch.arange(S, dtype=torch.float32)
    torch.testing.assert_close(h, torch.log(q + 1))
    hn = normalized_entropy(h.double())
    assert math.isnan(hn[0]) and torch.allclose(hn[1:], torch.ones(S - 1, dtype=torch.float64))
    assert circle_resultant(p).abs()[1:].max() < 1e-12                  # full per-row circle: uniform -> 0
    r0 = circle_resultant(p, exclude_sink=True).abs()
    assert torch.isnan(r0[:2]).all() and r0[2:].max() < 1e-12
    m = layer_row_metrics(p[None, None])
    torch.testing.assert_close(m["sink"][0, 0], 1.0 / (q.double() + 1))


def test_concentrated_attention_closed_forms():
    keys = [0, 0, 1, 3, 2, 5, 0, 7]
    p = one_hot(keys)
    assert attention_entropy(p).abs().max() == 0
    torch.testing.assert_close(circle_resultant(p).abs(), torch.ones(S, dtype=torch.float64))
    # two keys with weight 1/2 at distance d on a circle of q + 1 points: R = |cos(pi d / (q + 1))|
    q, k1, k2 = 7, 2, 5
    p2 = uniform_causal().clone()
    p2[q] = 0
    p2[q, [k1, k2]] = 0.5
    assert attention_entropy(p2)[q] == pytest.approx(math.log(2))
    assert circle_resultant(p2).abs()[q] == pytest.approx(abs(math.cos(math.pi * (k2 - k1) / (q + 1))))
    # a pure sink row has no sink-free phase; a sink + one key row is fully coherent without the sink
    p3 = one_hot([0] * S)
    assert torch.isnan(circle_resultant(p3, exclude_sink=True)[2:].abs()).all()
    p4 = one_hot([0] * S).clone()
    p4[5] = 0
    p4[5, 0], p4[5, 3] = 0.9, 0.1
    assert circle_resultant(p4, exclude_sink=True).abs()[5] == pytest.approx(1.0)


def test_head_synchronisation_closed_forms():
    same = torch.stack([one_hot([0, 1, 2, 3, 1, 2, 3, 4])] * 3)          # 3 identical heads
    z = circle_resultant(same)
    torch.testing.assert_close(head_sync(z), torch.ones(S, dtype=torch.float64))
    # two one-hot heads on keys a, b of row q: S = |cos((theta_a - theta_b) / 2)|
    q, a, b = 7, 1, 5
    h1, h2 = one_hot([0] * S), one_hot([0] * S)
    h1[q], h2[q] = 0, 0
    h1[q, a], h2[q, b] = 1.0, 1.0
    s = head_sync(circle_resultant(torch.stack([h1, h2])))[q]
    assert s == pytest.approx(abs(math.cos(math.pi * (a - b) / (q + 1))))
    opposite = head_sync(circle_resultant(torch.stack([h1, h2])))          # a, b = 1, 5 on 8 points: opposite
    assert opposite[q] == pytest.approx(0.0, abs=1e-12)
    # chance level of two unit phasors: E|cos(U / 2)| = 2 / pi
    chance = head_sync_chance(torch.ones(2, 1, dtype=torch.complex128), n_draws=20000, seed=0)
    assert chance.item() == pytest.approx(2 / math.pi, abs=0.01)
    # a pure sink head is undefined without the sink: it weighs nothing (it used to make every row NaN)
    sink = one_hot([0] * S)
    with_sink = head_sync(circle_resultant(torch.stack([same[0], same[0], sink]), exclude_sink=True))
    alone = head_sync(circle_resultant(torch.stack([same[0], same[0]]), exclude_sink=True))
    torch.testing.assert_close(with_sink, alone, equal_nan=True)
    assert torch.isfinite(with_sink[2:]).all() and torch.isnan(with_sink[:2]).all()   # rows q < 2: undefined


def test_collapse_layer_is_the_layer_after_the_largest_drop():
    assert collapse_layer(np.array([0.9, 0.85, 0.4, 0.35])) == (2, pytest.approx(0.45))
    assert collapse_layer(np.array([0.2, 0.5, 0.9]))[0] is None            # entropy never drops
    assert collapse_layer(np.array([0.5]))[0] is None


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = Transformer(lm_preset("tiny", max_seq_len=16, mlp="band")).eval()
    with torch.no_grad():
        model.ln_f.weight.uniform_(0.5, 2.0)        # a non-trivial final norm, so applying it twice shows
        model.ln_f.bias.normal_(0, 0.5)
    return model


def test_logit_lens_applies_the_final_norm_once(tiny_model):
    idx = torch.randint(0, 128, (3, 12), generator=torch.Generator().manual_seed(0))
    calls = []
    handle = tiny_model.ln_f.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        lens = logit_lens(tiny_model, idx, chunk_rows=10)
    finally:
        handle.remove()
    rows = 3 * 12
    assert len(calls) == math.ceil(rows / 10)                 # one ln_f call per row chunk, covering ...
    assert all(c == tiny_model.config.n_layer + 1 for c in calls)   # ... every hidden state exactly once
    with torch.no_grad():
        logp = torch.log_softmax(tiny_model(idx).double(), -1)
        out_entropy = -(logp.exp() * logp).sum(-1)
        hidden = tiny_model.forward_hidden(idx)[-1]
        twice = torch.log_softmax(tiny_model.lm_head(tiny_model.ln_f(tiny_model.ln_f(hidden))).double(), -1)
        twice_entropy = -(twice.exp() * twice).sum(-1)
    torch.testing.assert_close(lens["entropy"][-1], out_entropy, atol=1e-4, rtol=0)
    assert (lens["entropy"][-1] - twice_entropy).abs().max() > 1e-3
    assert lens["kl_to_final"][-1].abs().max() < 1e-5 and (lens["top1_agree"][-1] == 1).all()


def test_collapse_metrics_on_a_tiny_model(tiny_model):
    tokens = np.random.default_rng(0).integers(0, 128, (5, 12))
    raw = collapse_metrics(tiny_model, tokens, batch_size=2, n_draws=8)
    n_layer, n_head = tiny_model.config.n_layer, tiny_model.config.n_head
    assert raw["entropy"].shape == (5, n_layer, n_head) and raw["sync"].shape == (5, n_layer)
    assert raw["lens_entropy"].shape == (5, n_layer + 1)
    np.testing.assert_allclose(raw["trivial_entropy"], 0.0, atol=1e-12)   # query 0: one key
    np.testing.assert_allclose(raw["trivial_sink"], 1.0)
    assert ((raw["entropy_norm"] > 0) & (raw["entropy_norm"] <= 1 + 1e-9)).all()
    summary = summarize_collapse(raw, n_boot=50)
    assert len(summary["layers"]) == n_layer and len(summary["lens"]["entropy"]) == n_layer + 1
    assert summary["trivial_rows"]["entropy_mean"] == pytest.approx(0.0)
    assert summary["sink_uniform"] == pytest.approx(np.mean(1 / np.arange(2, 13)))
