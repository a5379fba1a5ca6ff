"""Presets of the spectral 2D predictor: every preset builds and trains one step at 32/64/128."""

from __future__ import annotations

import pytest
import torch

from akira.models.fields.baselines import count_parameters
from akira.models.fields.spectral import (
    DEFAULT_WORMHOLE_THRESHOLD,
    PRESETS,
    REFERENCE_PRESETS,
    Spectral2DPredictor,
    build_spectral2d,
)

# reference field -> our field, for the fields of REFERENCE §1.11 that map one-to-one
FIELD_MAP = {
    "gridSize": "grid",
    "baseDim": "dim",
    "attnDim": "attn_dim",
    "timeDepth": "time_depth",
    "attnTopKTemporal": "temporal_top_k",
    "decayRate": "decay_rate",
    "layerRange": "layer_range",
    "wormhole_max_connections": "wormhole_top_k",
    "freq_cutoff": "freq_cutoff",
}

# our parameter counts (the reference's, REFERENCE §1.11, are 70,273 / 17,729 / 4,513 / 17,729 / 17,729:
# ours add the 3x3 band patch embedding and the learned wormhole similarity projection)
PARAMS = {"default": 71682, "fast": 18434, "turbo": 4866, "large": 18434, "xlarge": 18434}


def test_presets_carry_every_reference_field():
    assert set(PRESETS) == set(REFERENCE_PRESETS) == {"turbo", "fast", "default", "large", "xlarge"}
    for name, ref in REFERENCE_PRESETS.items():
        ours = PRESETS[name]
        for rkey, okey in FIELD_MAP.items():
            assert ours[okey] == ref[rkey], (name, rkey)
        assert ours["wormhole_skip_steps"] == 1 and ref["wormhole_skip_steps"] >= 1  # we never skip
        assert ours["wormhole_min_temporal_distance"] == ref["wormhole_min_temporal_distance"] == 1
        assert ours["wormhole_threshold"] == DEFAULT_WORMHOLE_THRESHOLD
        assert ours["wormhole_chunk_size"] == 2**26 and ref["wormhole_chunk_size"] in (4096, 8192, 16384)
        assert ref["wormholeThreshold"] in (0.9995, 0.9998)
        for key in ("temporal_causal", "neighbor_causal", "wormhole_causal", "neighbor_first_layer_only"):
            assert key in ref


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_counts(name):
    assert count_parameters(build_spectral2d(name)) == PARAMS[name]


def test_reference_threshold_is_one_override_away():
    model = build_spectral2d("fast", wormhole_threshold=0.9995, use_neighbor=False)
    assert model.wormhole.threshold == 0.9995 and model.neighbor is None
    assert isinstance(model, Spectral2DPredictor) and model.context_frames == PRESETS["fast"]["time_depth"]


def _train_step(name: str, grid: int):
    torch.manual_seed(0)
    model = build_spectral2d(name, grid=grid)
    x = torch.rand(1, 3, grid, grid)
    y = model.forward_sequence(x[:, :2])  # two query frames (history padded with frame 0)
    loss = torch.nn.functional.mse_loss(y, x[:, 1:])
    loss.backward()
    assert y.shape == (1, 2, grid, grid) and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert 0 <= float(model.last_stats["wormhole_link_rate"]) <= 1


@pytest.mark.parametrize("grid", [32, 64])
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_trains_one_step(name, grid):
    _train_step(name, grid)


@pytest.mark.parametrize("name", ["turbo", "fast"])
def test_preset_trains_one_step_at_128(name):
    _train_step(name, 128)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "large", "xlarge"])
def test_heavy_preset_trains_one_step_at_128(name):
    _train_step(name, 128)
