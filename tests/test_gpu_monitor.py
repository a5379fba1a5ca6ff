"""GPU utilisation samples of a gpu_pool sweep (a fake nvidia-smi on PATH) and the report's GPU-pool section."""
from __future__ import annotations

import csv
import json
import os
import stat
import time
from pathlib import Path

import pytest

from akira.launch.gpu_monitor import SAMPLES_FILE, GpuMonitor, query_gpus, read_samples, samples_by_pool_id
from akira.launch.utilization import pool_usage
from akira.report import write_report


def fake_nvidia_smi(bin_dir: Path, utilization: tuple[str, ...] = ("87", "3")) -> Path:
    """An `nvidia-smi` that answers the monitor's query for len(utilization) GPUs."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{i}, GPU-uuid-{i}, {u}, {1000 * (i + 1)}, 81559" for i, u in enumerate(utilization)]
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo '{line}'\n" for line in lines))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_query_parses_nvidia_smi_and_tolerates_missing_values(tmp_path):
    smi = fake_nvidia_smi(tmp_path / "bin", ("87", "[N/A]"))
    rows = query_gpus(str(smi))
    assert [r["index"] for r in rows] == ["0", "1"] and rows[0]["uuid"] == "GPU-uuid-0"
    assert rows[0]["utilization_gpu"] == 87.0 and rows[1]["utilization_gpu"] is None
    assert rows[1]["memory_used_mib"] == 2000.0 and rows[0]["memory_total_mib"] == 81559.0
    assert query_gpus(str(tmp_path / "missing")) == []


def test_monitor_appends_samples_while_running_and_is_off_without_nvidia_smi(tmp_path):
    smi = fake_nvidia_smi(tmp_path / "bin")
    with GpuMonitor(tmp_path / "sweep", interval_s=0.05, command=str(smi)) as monitor:
        deadline = time.time() + 20
        while monitor.samples < 3 and time.time() < deadline:
            time.sleep(0.02)
    n = monitor.samples
    assert n >= 3
    time.sleep(0.2)
    assert monitor.samples == n  # the thread stopped with the block
    with open(tmp_path / "sweep" / SAMPLES_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * n and {r["index"] for r in rows} == {"0", "1"}
    samples = read_samples(tmp_path / "sweep" / SAMPLES_FILE)
    by_id = samples_by_pool_id(samples, ["1", "GPU-uuid-0"])  # an index or a UUID
    assert len(by_id["1"]) == n and len(by_id["GPU-uuid-0"]) == n
    assert {s["utilization_gpu"] for s in by_id["GPU-uuid-0"]} == {87.0}

    off = GpuMonitor(tmp_path / "off", interval_s=0.05, command=str(tmp_path / "no-such-nvidia-smi"))
    with off:
        time.sleep(0.1)
    assert not off.enabled and not (tmp_path / "off").exists()
    assert not GpuMonitor(tmp_path / "zero", interval_s=0, command=str(smi)).enabled
    with pytest.raises(ValueError, match="gpu_sample_interval_s"):
        GpuMonitor(tmp_path, interval_s=-1)


def _synthetic_sweep(root: Path) -> Path:
    """Two GPUs, three jobs of 10 s: 0 and 1 at once, then 2 on GPU 0; GPU 0 busy, GPU 1 idle half the time."""
    sweep = root / "sweep"
    t0 = 1_000_000.0
    jobs = [{"num": 0, "status": "completed", "gpus": "0", "start": t0, "end": t0 + 10, "job_dir": str(sweep / "0")},
            {"num": 1, "status": "completed", "gpus": "1", "start": t0, "end": t0 + 10, "job_dir": str(sweep / "1")},
            {"num": 2, "status": "completed", "gpus": "0", "start": t0 + 10, "end": t0 + 20,
             "job_dir": str(sweep / "2")},
            {"num": 3, "status": "skipped", "gpus": None, "start": None, "end": None, "job_dir": str(sweep / "3")}]
    for j in jobs:
        d = Path(j["job_dir"])
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"status": "completed", "overrides": [f"seed={j['num']}"],
                                                "seed": j["num"]}))
        (d / "metrics.json").write_text(json.dumps({"val/loss": 1.0 + j["num"], "params_total": 10}))
    (sweep / "gpu_pool.json").write_text(json.dumps({"pool": ["0", "1"], "jobs": jobs}))
    with open(sweep / SAMPLES_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "index", "uuid", "utilization_gpu", "memory_used_mib", "memory_total_mib"])
        for k in range(21):  # one sample a second; plus one before the sweep that must be ignored
            w.writerow([t0 + k, "0", "GPU-a", 90, 5000 + k, 80000])
            w.writerow([t0 + k, "1", "GPU-b", 80 if k < 10 else 0, 3000, 80000])
        w.writerow([t0 - 100, "1", "GPU-b", 100, 70000, 80000])
    return sweep


def test_pool_usage_and_the_report_section(tmp_path):
    sweep = _synthetic_sweep(tmp_path)
    usage = pool_usage(sweep)
    assert usage["jobs"] == 3 and usage["wall_seconds"] == pytest.approx(20)
    assert usage["serial_seconds"] == pytest.approx(30) and usage["speedup"] == pytest.approx(1.5)
    g0, g1 = usage["gpus"]["0"], usage["gpus"]["1"]
    assert (g0["jobs"], g0["held_seconds"], g0["occupancy"]) == (2, pytest.approx(20), pytest.approx(1.0))
    assert (g1["jobs"], g1["held_seconds"], g1["occupancy"]) == (1, pytest.approx(10), pytest.approx(0.5))
    assert g0["samples"] == 21 and g0["mean_utilization"] == pytest.approx(90) and g0["busy_fraction"] == 1.0
    assert g1["busy_fraction"] == pytest.approx(10 / 21) and g1["max_memory_mib"] == 3000  # pre-sweep row ignored
    assert pool_usage(tmp_path) is None  # not a gpu_pool sweep

    out = tmp_path / "report"
    paths = write_report(sweep, out)
    md = (out / "report.md").read_text()
    assert "## GPU pool" in md and "3 job(s) ran in 20.0 s of wall time" in md and "30.0 s" in md and "1.50x" in md
    assert "| 0 | 2 | 20.0 | 100% | 21 | 90% | 100% | 5020 |" in md
    assert paths["gpu_utilization"].is_file() and (out / SAMPLES_FILE).read_bytes() == (sweep / SAMPLES_FILE).read_bytes()


def test_report_without_samples_says_so(tmp_path):
    sweep = _synthetic_sweep(tmp_path)
    os.remove(sweep / SAMPLES_FILE)
    write_report(sweep)
    md = (sweep / "report.md").read_text()
    assert "## GPU pool" in md and "No nvidia-smi samples" in md and "gpu_utilization" not in md
