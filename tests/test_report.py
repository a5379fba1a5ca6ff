"""The sweep report: numbers against the jobs' metrics.json, arms, plots; from a synthetic LM sweep dir and
from a real tiny fields sweep."""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from akira.cli import ROOT
from akira.report import find_jobs, main, write_report
from tests.conftest import TINY


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    return {(r["arm"], r["metric"]): r for r in csv.DictReader(path.open())}


def _fake_job(root: Path, num: int, arm: str, seed: int, val: float, status: str = "completed",
              bands: int = 0, throughput: float = 1000.0) -> Path:
    d = root / f"{num}_experiment={arm},seed={seed}"
    (d / ".hydra").mkdir(parents=True)
    overrides = [f"experiment={arm}", f"seed={seed}", "ckpt_path=last", "trainer=gpu"]
    run = {"status": status, "task_name": "train", "seed": seed, "overrides": overrides,
           "params": {"total": 100 + bands, "non_embedding": 60}}
    (d / "run.json").write_text(json.dumps(run))
    (d / ".hydra" / "config.yaml").write_text(
        "data:\n  kind: text\n  batch_size: 4\n  seq_len: 8\ntrainer:\n  devices: 2\n  num_nodes: 1\n")
    header = ["epoch", "step", "train/loss", "val/loss"] + [f"band/{b}/delta_loss" for b in range(bands)]
    lines = [",".join(header)]
    for step in (1, 3):
        lines.append(",".join(["0", str(step), "", str(val + (3 - step))] + [str(0.01 * b * step) for b in range(bands)]))
        lines.append(",".join(["0", str(step), "5.0", ""] + [""] * bands))
    (d / "metrics.csv").write_text("\n".join(lines) + "\n")
    if status == "completed":
        metrics = {"val/loss": val, "val/ppl": math.exp(val), "test/loss": val + 0.1, "params_total": 100 + bands,
                   "params_non_embedding": 60, "throughput/tokens_per_sec": throughput, "train_seconds": 2.0}
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_report_of_a_synthetic_lm_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_job(sweep, 0, "lm_baseline", 1, 3.0, throughput=1000.0)
    _fake_job(sweep, 1, "lm_baseline", 2, 3.5, throughput=1200.0)
    _fake_job(sweep, 2, "ablation_full", 1, 2.0, bands=3)
    _fake_job(sweep, 3, "ablation_full", 2, 2.2, bands=3)
    _fake_job(sweep, 4, "ablation_full", 3, 9.9, status="failed", bands=3)
    jobs = find_jobs(sweep)
    assert [j.arm for j in jobs] == ["lm_baseline"] * 2 + ["ablation_full"] * 3
    assert jobs[0].tokens_per_step == 4 * 8 * 2

    paths = write_report(sweep)
    rows = _rows(paths["csv"])
    base = rows[("lm_baseline", "val/loss")]
    assert int(base["n"]) == 2 and float(base["mean"]) == pytest.approx(3.25)
    assert float(base["std"]) == pytest.approx(statistics.stdev([3.0, 3.5]))
    full = rows[("ablation_full", "val/loss")]
    assert int(full["n"]) == 2 and float(full["mean"]) == pytest.approx(2.1)  # the failed seed is not counted
    assert float(rows[("lm_baseline", "throughput/tokens_per_sec")]["mean"]) == pytest.approx(1100.0)
    assert float(rows[("ablation_full", "params_total")]["mean"]) == 103
    for name in ("val_loss_steps.png", "val_loss_tokens.png", "band_delta_loss.png", "throughput.png",
                 "final_val_loss.png"):
        assert (sweep / name).stat().st_size > 1000, name
    md = (sweep / "report.md").read_text()
    assert "| lm_baseline | 2 | 3.25 ± 0.3536 |" in md and "| ablation_full | 2 | 2.1 ± 0.1414 |" in md
    assert "4_experiment=ablation_full,seed=3 | ablation_full | 3 | failed" in md
    assert "![band_delta_loss](band_delta_loss.png)" in md


def test_report_counts_diverged_seeds_warns_on_repeated_seeds_and_splits_other_checkpoints(tmp_path):
    """A NaN seed is left out of the mean and counted beside it (it used to vanish, so the diverged arm looked
    best); two jobs of one arm with the same seed get a warning; a ckpt_path other than `last` is another arm."""
    sweep = tmp_path / "sweep"
    _fake_job(sweep, 0, "lm_baseline", 1, 3.0)
    nan_job = _fake_job(sweep, 1, "lm_baseline", 2, 3.0)
    metrics = json.loads((nan_job / "metrics.json").read_text())
    metrics["val/loss"] = "nan"          # as run.py writes a non-finite value
    (nan_job / "metrics.json").write_text(json.dumps(metrics))
    _fake_job(sweep, 2, "ablation_full", 1, 2.0)
    _fake_job(sweep, 3, "ablation_full", 1, 2.4)        # same seed as job 2
    paths = write_report(sweep)
    rows = _rows(paths["csv"])
    assert int(rows[("lm_baseline", "val/loss")]["n"]) == 1 and int(rows[("lm_baseline", "val/loss")]["n_nonfinite"]) == 1
    md = (sweep / "report.md").read_text()
    assert "3 (1 non-finite)" in md
    assert "arm `ablation_full` has jobs with the same seed (1)" in md

    other = tmp_path / "ckpts"
    for i, ckpt in enumerate(("a.ckpt", "b.ckpt")):
        d = _fake_job(other, i, "lm_baseline", 42, 1.0 + i)
        run = json.loads((d / "run.json").read_text())
        run["overrides"] = [o if not o.startswith("ckpt_path=") else f"ckpt_path={ckpt}" for o in run["overrides"]]
        (d / "run.json").write_text(json.dumps(run))
    assert sorted({j.arm for j in find_jobs(other)}) == ["ckpt_path=a.ckpt", "ckpt_path=b.ckpt"]


def test_report_without_band_or_token_data_skips_those_plots(tmp_path):
    sweep = tmp_path / "s"
    d = _fake_job(sweep, 0, "lm_baseline", 1, 3.0)
    (d / ".hydra" / "config.yaml").write_text("data:\n  kind: fields\n  batch_size: 4\n")
    paths = write_report(sweep, tmp_path / "out")
    assert "band_delta_loss" not in paths and "val_loss_tokens" not in paths
    assert (tmp_path / "out" / "report.md").exists() and not (sweep / "report.md").exists()


def test_report_cli_errors_name_the_argument(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "sweep_dir: no job directories" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2


def test_report_of_a_real_tiny_sweep_matches_metrics_json(tmp_path):
    """Hydra's own launcher (one process, jobs in turn): the report works on any sweep dir."""
    sweep = tmp_path / "sweep"
    job = [o for o in TINY if not o.startswith(("callbacks.frame_panels", "trainer.max_steps"))]
    args = [sys.executable, str(ROOT / "train.py"), "-m", *job, "callbacks.frame_panels=null", "trainer.max_steps=3",
            "callbacks.throughput.warmup_steps=0", "callbacks.throughput.log_every_n_steps=1",
            "model=mlp2d,linear", "seed=1,2", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    rep = subprocess.run([sys.executable, str(ROOT / "report.py"), str(sweep)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr[-2000:]
    rows = _rows(sweep / "report.csv")
    per_arm: dict[str, list[dict]] = {}
    for i in range(4):
        overrides = json.loads((sweep / str(i) / "run.json").read_text())["overrides"]
        model = next(o for o in overrides if o.startswith("model="))
        per_arm.setdefault(model, []).append(json.loads((sweep / str(i) / "metrics.json").read_text()))
    assert set(per_arm) == {"model=mlp2d", "model=linear"}
    for arm, metrics in per_arm.items():
        for key in ("test/mse", "test/skill", "val/loss", "params_total"):
            values = [m[key] for m in metrics]
            row = rows[(arm, key)]
            assert int(row["n"]) == 2 and float(row["mean"]) == pytest.approx(statistics.mean(values), rel=1e-9)
            assert float(row["std"]) == pytest.approx(statistics.stdev(values), rel=1e-6, abs=1e-12)
    assert float(rows[("model=mlp2d", "throughput/frames_per_sec")]["mean"]) > 0
    md = (sweep / "report.md").read_text()
    assert "| model=mlp2d | 2 |" in md and "| model=linear | 2 |" in md
    assert (sweep / "val_loss_steps.png").exists() and (sweep / "throughput.png").exists()


@pytest.mark.parametrize("devices", [1, 2])
def test_per_device_throughput_column_only_when_it_differs(tmp_path, devices):
    sweep = tmp_path / "sweep"
    for num, seed in enumerate((1, 2)):
        d = _fake_job(sweep, num, "lm_baseline", seed, 3.0)
        metrics = json.loads((d / "metrics.json").read_text())
        metrics["throughput/tokens_per_sec_per_device"] = metrics["throughput/tokens_per_sec"] / devices
        (d / "metrics.json").write_text(json.dumps(metrics))
    write_report(sweep)
    md = (sweep / "report.md").read_text()
    assert ("throughput/tokens_per_sec_per_device" in md) == (devices > 1)
    assert "throughput/tokens_per_sec " in md or "throughput/tokens_per_sec |" in md
