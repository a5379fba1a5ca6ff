"""The spectral 2D predictor through the framework: statistics CSV/maps, ablation switches, bad input."""
from __future__ import annotations

import csv

import pytest

from akira.config import ConfigError
from akira.run import train
from tests.conftest import TINY, compose_config

SPECTRAL_TINY = [*TINY, "model=spectral2d_turbo", "data.history=4", "callbacks.attention_stats.every_n_steps=1",
                 "callbacks.attention_stats.maps_every_n_steps=2"]


def test_attention_statistics_are_logged(tmp_path):
    metrics = train(compose_config(SPECTRAL_TINY, run_dir=tmp_path))
    assert "test/mse" in metrics
    rows = list(csv.DictReader((tmp_path / "attention_stats.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for column in ("train_loss", "temporal_entropy", "neighbor_entropy", "wormhole_links", "wormhole_link_rate",
                   "wormhole_positions_with_links", "band_energy/intensity"):
        assert column in rows[0], column
    assert not any("mean_weight" in c for c in rows[0]), "constant reference columns must not be logged"
    assert all(0.0 <= float(r["wormhole_link_rate"]) <= 1.0 for r in rows)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "attn/wormhole_link_rate" in header and "attn/temporal_entropy" in header
    assert sorted(p.name for p in (tmp_path / "media").glob("attention_step*.png")) == [
        "attention_step000002.png", "attention_step000004.png"]


@pytest.mark.parametrize("switch", ["model.use_temporal=false", "model.use_neighbor=false",
                                    "model.use_wormhole=false", "model.selection=softmax",
                                    "model.wormhole_sim_band=intensity", "model.wormhole_value_band=low",
                                    "model.neighbor_norm=per_frame", "model.residual=false"])
def test_ablation_switches_run(tmp_path, switch):
    cfg = compose_config([*SPECTRAL_TINY, switch, "debug=fast_dev_run"], run_dir=tmp_path)
    assert "test/mse" in train(cfg)


@pytest.mark.parametrize("override,key", [
    ("model.temporal_top_k=9", "model.temporal_top_k"),
    ("model.layer_range=9", "model.layer_range"),
    ("model.n_bands=6", "model.n_bands"),
    ("model.wormhole_sim_band=nope", "model.wormhole_sim_band"),
    ("data.history=2", "data.history"),
])
def test_impossible_combinations_fail_at_build_time(tmp_path, override, key):
    cfg = compose_config([*SPECTRAL_TINY, override], run_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert key in str(info.value) and "\n" not in str(info.value)
