"""Spectral centroid per unit: closed forms on sinusoids, streaming, and the band / AQ comparisons."""
from __future__ import annotations

import json

import numpy as np
import pytest

from akira.analysis.capture import ActivationStore
from akira.analysis.centroid import (
    centroid_analysis,
    centroid_of_store,
    spectral_centroid,
    white_noise_centroid,
)


@pytest.mark.parametrize("k0", [2, 5, 13, 30])
def test_centroid_of_a_pure_sinusoid_is_its_frequency(k0):
    s = 64
    t = np.arange(s)
    x = 3.0 * np.sin(2 * np.pi * k0 * t / s + 0.7) + 11.0      # offset: the mean is removed
    assert spectral_centroid(x)[0] == pytest.approx(k0 / s, abs=1e-12)


def test_centroid_edge_cases_and_white_noise():
    s = 64
    t = np.arange(s)
    assert spectral_centroid(np.sin(2 * np.pi * 9.5 * t / s))[0] == pytest.approx(9.5 / s, abs=0.01)
    assert np.isnan(spectral_centroid(np.full(s, 4.0))[0])
    rng = np.random.default_rng(0)
    noise = spectral_centroid(rng.standard_normal((400, s, 6)))
    assert noise.mean() == pytest.approx(white_noise_centroid(s), abs=0.005)
    assert 0.24 < white_noise_centroid(s) < 0.27


def test_streamed_centroid_equals_direct(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 32, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_allclose(centroid_of_store(mm, chunk_seqs=8), spectral_centroid(x), rtol=1e-6)


def _store(tmp_path, x: np.ndarray, bands: np.ndarray) -> ActivationStore:
    np.save(tmp_path / "tokens.npy", np.zeros(x.shape[:2], dtype=np.int64))
    np.save(tmp_path / "mlp_L0.npy", x)
    meta = {"spec": {"sites": ["mlp"], "layers": [0]}, "complete": True, "bands": {"mlp": bands.tolist()},
            "units": {"mlp": int(x.shape[2])}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return ActivationStore(tmp_path)


def _units(rng, n, s, freqs):
    t = np.arange(s)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, len(freqs)))
    return np.sin(2 * np.pi * np.asarray(freqs)[None, None, :] * t[None, :, None] / s + phase) \
        + 0.3 * rng.standard_normal((n, s, len(freqs)))


def test_band_trend_and_aq_difference_are_detected(tmp_path):
    rng = np.random.default_rng(0)
    bands = np.repeat(np.arange(4), 10)                        # 4 bands x 10 units, frequency rises with band
    freqs = 2 + 3 * bands + rng.integers(0, 2, bands.size)
    x = _units(rng, 24, 32, freqs).astype(np.float32)
    aq = np.zeros(bands.size, bool)
    aq[::2] = True
    x[:, :, aq] = _units(rng, 24, 32, np.maximum(freqs[aq] - 2, 1))   # AQ units slower within every band
    store = _store(tmp_path, x, bands)
    res, values = centroid_analysis({"random": store}, ["mlp"], [0], aq={("random", "mlp", 0): aq},
                                    low_bands=[0, 1], n_perm=499, n_boot=200)
    e = res["probes"]["random"]["mlp"]["0"]
    assert e["trend"]["rho"] > 0.8 and e["trend"]["p_value"] < 0.01
    assert e["between_bands"]["p_value"] < 0.01
    assert e["low_vs_rest"]["statistic"] < 0 and e["low_vs_rest"]["p_value"] < 0.01
    assert e["aq_vs_non_aq"]["statistic"] < 0 and e["aq_vs_non_aq"]["p_value"] < 0.01
    assert e["aq_vs_non_aq"]["auc"] < 0.45 and e["aq_vs_non_aq"]["q_value"] < 0.05
    assert values[("random", "mlp", 0)].shape == (40,)


def test_aq_difference_explained_by_bands_is_not_significant(tmp_path):
    rng = np.random.default_rng(1)
    bands = np.repeat(np.arange(2), 20)
    x = _units(rng, 24, 32, np.where(bands == 0, 3, 12)).astype(np.float32)
    aq = np.where(bands == 0, rng.random(40) < 0.8, rng.random(40) < 0.2)   # AQ mostly in the slow band
    res, _ = centroid_analysis({"text": _store(tmp_path, x, bands)}, ["mlp"], [0], aq={("text", "mlp", 0): aq},
                               n_perm=499, n_boot=100)
    t = res["probes"]["text"]["mlp"]["0"]["aq_vs_non_aq"]
    assert t["aq_mean"] - t["non_aq_mean"] < -0.05   # raw means differ (band composition) ...
    assert t["p_value"] > 0.05                       # ... but not within bands (stratified permutation),
    assert abs(t["statistic"]) < abs(t["aq_mean"] - t["non_aq_mean"]) / 2   # whose statistic is within-band
