"""How well a gpu_pool sweep used its GPUs, from `gpu_pool.json` (job times and GPUs) and `gpu_samples.csv`.

`pool_usage(sweep_dir)` returns (None for a sweep that gpu_pool did not run):
- `wall_seconds`: first job start to last job end of the latest attempt (skipped jobs do not count);
- `serial_seconds`: the sum of those jobs' times, i.e. running them one after another; `speedup` = serial / wall;
- per pool GPU: jobs, `held_seconds` (time a job held it), `occupancy` = held / wall, and from the nvidia-smi
  samples taken during the sweep: `samples`, `mean_utilization` (%), `busy_fraction` (samples with
  utilisation >= `busy_threshold` %), `max_memory_mib`; and the samples themselves, `samples_by_gpu`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from akira.launch.gpu_monitor import SAMPLES_FILE, read_samples, samples_by_pool_id
from akira.launch.sweep import STATE_FILE

BUSY_THRESHOLD = 10.0  # % utilisation that counts as busy


def pool_usage(sweep_dir: str | os.PathLike, busy_threshold: float = BUSY_THRESHOLD) -> dict[str, Any] | None:
    sweep_dir = Path(sweep_dir)
    try:
        state = json.loads((sweep_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    ran = [j for j in state.get("jobs", []) if j.get("start") is not None and j.get("end") is not None]
    if not ran:
        return None
    start, end = min(j["start"] for j in ran), max(j["end"] for j in ran)
    wall = max(end - start, 1e-9)
    serial = sum(j["end"] - j["start"] for j in ran)
    pool = [str(g) for g in state.get("pool", [])]
    samples = [s for s in read_samples(sweep_dir / SAMPLES_FILE) if start <= s["time"] <= end]
    by_gpu = samples_by_pool_id(samples, pool)
    per_gpu = {}
    for gpu, rows in by_gpu.items():
        held = [j for j in ran if gpu in str(j.get("gpus") or "").split(",")]
        held_seconds = sum(j["end"] - j["start"] for j in held)
        util = [r["utilization_gpu"] for r in rows if r["utilization_gpu"] is not None]
        mem = [r["memory_used_mib"] for r in rows if r["memory_used_mib"] is not None]
        per_gpu[gpu] = {
            "jobs": len(held),
            "held_seconds": held_seconds,
            "occupancy": held_seconds / wall,
            "samples": len(rows),
            "mean_utilization": sum(util) / len(util) if util else None,
            "busy_fraction": sum(u >= busy_threshold for u in util) / len(util) if util else None,
            "max_memory_mib": max(mem) if mem else None,
        }
    return {"jobs": len(ran), "wall_seconds": wall, "serial_seconds": serial, "speedup": serial / wall,
            "start": start, "end": end, "gpus": per_gpu, "samples_by_gpu": by_gpu, "busy_threshold": busy_threshold}
