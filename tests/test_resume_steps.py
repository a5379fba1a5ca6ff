"""A finished run extended from its end-of-fit last.ckpt (`ckpt_path=last` with a larger `trainer.max_steps`) logs
the steps and epochs of an uninterrupted run (akira.checkpoint_io.FinalCheckpoint)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from akira.run import train
from akira.runinfo import metrics_csv_files
from tests.conftest import TINY, compose_config

# TINY: validation every 2 steps, a last.ckpt every 2 steps, logs every step
COMMON = ["model=mlp2d", "test=false", "callbacks.frame_panels=null"]


def _train(run_dir: Path, overrides: list[str]) -> dict:
    return train(compose_config(TINY + COMMON + overrides, run_dir=run_dir))


def _logged(run_dir: Path) -> list[dict]:
    """Every row of the run's CSV logs (earlier attempts first) as {column: value} of the step, epoch, losses and
    learning rates (not the timings)."""
    rows = []
    for path in metrics_csv_files(run_dir / "metrics.csv"):
        if not path.is_file():
            continue
        for row in csv.DictReader(path.open()):
            kept = {k: float(v) for k, v in row.items()
                    if v not in (None, "") and (k in ("step", "epoch", "train/loss", "val/loss", "val/mse")
                                                or k.startswith("lr/"))}
            if set(kept) - {"step", "epoch"}:
                rows.append(kept)
    return rows


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def test_extending_a_finished_run_logs_the_uninterrupted_runs_steps_and_epochs(tmp_path):
    """4 steps straight vs 2 steps, a resume at max_steps=2 (trains nothing, saves last.ckpt again), 3 steps (the
    2-step run ended on a validation step, the 3-step one does not) and 4 steps. The end-of-fit last.ckpt used to
    hold Lightning's counters of after the fit (epoch complete, logging step advanced): the extended runs logged
    steps 3, 4 at epoch 1 where the uninterrupted run logs 2, 3 at epoch 0."""
    straight, part = tmp_path / "straight", tmp_path / "part"
    _train(straight, ["trainer.max_steps=4"])
    for max_steps, resume in ((2, []), (2, ["ckpt_path=last"]), (3, ["ckpt_path=last"]), (4, ["ckpt_path=last"])):
        _train(part, [f"trainer.max_steps={max_steps}", *resume])
        saved = _ckpt(part)   # every completed fit leaves its last.ckpt
        assert saved["global_step"] == max_steps
        assert json.loads((part / "run.json").read_text())["global_step"] == max_steps

    expected, got = _logged(straight), _logged(part)
    assert [(r["step"], r.get("epoch")) for r in got] == [(r["step"], r.get("epoch")) for r in expected]
    assert got == [pytest.approx(r, rel=1e-6) for r in expected]
    assert [r["step"] for r in got if "train/loss" in r] == [0, 1, 2, 3]
    assert [r["step"] for r in got if "val/loss" in r] == [1, 3]   # validations at steps 2 and 4, once each

    a, b = _ckpt(straight), _ckpt(part)
    assert (b["global_step"], b["epoch"]) == (a["global_step"], a["epoch"]) == (4, 0)
    assert b["loops"]["fit_loop"] == a["loops"]["fit_loop"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=key)
