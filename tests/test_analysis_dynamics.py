"""Training dynamics: grokking detector on synthetic curves, stabilisation steps, metrics.csv parsing."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from akira.analysis.dynamics import band_dynamics, detect_grokking, read_metrics_csv, stabilization_step

STEPS = np.arange(0, 10001, 50.0)
TRAIN = 0.1 + 3 * np.exp(-STEPS / 800)                  # training loss low by ~step 2500


def _noisy(x, scale, seed):
    return x + scale * np.random.default_rng(seed).standard_normal(x.size)


def test_grokking_fires_on_a_delayed_drop():
    val_steps = STEPS[::4]
    val = 0.5 + 2.5 / (1 + np.exp((val_steps - 6000) / 150))          # plateau, then a sharp drop at ~6000
    res = detect_grokking(val_steps, _noisy(val, 0.02, 0), STEPS, _noisy(TRAIN, 0.02, 1))
    assert res["detected"]
    assert 4500 <= res["onset_step"] <= 6000 and 5500 <= res["steepest_step"] <= 6500
    assert res["drop_fraction"] > 0.8 and res["train_progress"] > 0.95


def test_grokking_does_not_fire_on_smooth_or_early_curves():
    val_steps = STEPS[::4]
    smooth = 0.4 + 3 * np.exp(-val_steps / 900)
    assert not detect_grokking(val_steps, _noisy(smooth, 0.02, 2), STEPS, TRAIN)["detected"]
    # a sharp drop after a plateau, but while the training loss is still high: not grokking
    slow_train = 0.1 + 3 * np.exp(-STEPS / 6000)
    delayed = 0.5 + 2.5 / (1 + np.exp((val_steps - 6000) / 150))
    assert not detect_grokking(val_steps, delayed, STEPS, slow_train)["detected"]
    assert not detect_grokking(val_steps[:3], delayed[:3])["detected"]      # too few points


def test_stabilization_step():
    s = np.arange(0, 1000, 10.0)
    ratio = 1e-3 + 1e-1 * np.exp(-s / 100)
    res = stabilization_step(s, ratio, rtol=0.1, window=3, log=True)
    # log10 range ~2 -> tolerance 0.2 around -3: ratio <= 10^-2.8, i.e. s >= 100 ln(0.1 / (10^-2.8 - 1e-3)) ~ 515
    assert 490 <= res["step"] <= 540 and res["log10"]
    flat = stabilization_step(s, np.full(s.size, 2.0))
    assert flat["step"] == 0.0
    jump = np.where(s < 980, 1.0, 5.0)                                  # leaves its final band at the very end
    assert stabilization_step(s, jump, window=1, tail_frac=0.5)["step"] is None


def _write_csv(path, rows: list[dict]):
    keys = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def write_band_metrics(path, n_bands: int = 4, steps: int = 400):
    """A Lightning-style metrics.csv (sparse rows): band i settles later for larger i, band 2 groks at 60%."""
    rows, u = [], steps / 400
    for step in range(0, steps, 2):
        row = {"step": step, "epoch": 0, "train/loss": 0.1 + 3 * np.exp(-step / (30 * u))}
        for b in range(n_bands):
            row[f"band/{b}/update_ratio"] = 1e-3 * (1 + 50 * np.exp(-step / (12.0 * u * (b + 1))))
        rows.append(row)
        if step % 10 == 0:
            val = {"step": step, "epoch": 0, "val/loss": 0.5 + 2 * np.exp(-step / (40 * u))}
            for b in range(n_bands):
                val[f"band/{b}/delta_loss"] = (0.3 / (1 + np.exp(-(step - 250 * u) / (5 * u))) if b == 2
                                               else 0.2 * (1 - np.exp(-step / (12.0 * u * (b + 1)))))
            rows.append(val)
    _write_csv(path, rows)
    return path


def test_band_dynamics_from_metrics_csv(tmp_path):
    path = write_band_metrics(tmp_path / "metrics.csv")
    metrics = read_metrics_csv(path)
    assert set(metrics) >= {"train/loss", "val/loss", "band/0/update_ratio", "band/3/delta_loss"}
    steps, values = metrics["band/1/delta_loss"]
    assert steps[0] == 0 and np.all(np.diff(steps) > 0) and np.isfinite(values).all()
    res = band_dynamics(metrics, n_perm=999)
    stab = [res["bands"][str(b)]["update_ratio"]["step"] for b in range(4)]
    assert stab == sorted(stab) and stab[0] < stab[-1]
    assert res["low_first"]["rho"] > 0.7
    assert res["bands"]["2"]["grokking"]["detected"]
    assert not res["bands"]["0"]["grokking"]["detected"]
    assert not res["grokking_val_loss"]["detected"]
    assert band_dynamics(metrics, bands=[1])["bands"].keys() == {"1"}


def test_read_metrics_csv_errors(tmp_path):
    with pytest.raises(ValueError, match="run_dir: no metrics.csv"):
        read_metrics_csv(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="'step'"):
        read_metrics_csv(tmp_path / "bad.csv")
