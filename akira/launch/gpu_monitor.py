"""GPU utilisation samples for a sweep: `nvidia-smi` every few seconds, appended to `<sweep dir>/gpu_samples.csv`.

The gpu_pool launcher runs a `GpuMonitor` while its jobs run (`hydra.launcher.gpu_sample_interval_s`, 0 turns
it off; nothing happens without `nvidia-smi`). Columns: `time` (epoch seconds), `index`, `uuid`,
`utilization_gpu` (%), `memory_used_mib`, `memory_total_mib`. nvidia-smi lists the machine's GPUs whatever
`CUDA_VISIBLE_DEVICES` says, so a pool id matches a sample by index or by UUID (`samples_by_pool_id`).
The file is appended and flushed sample by sample: a sweep that is killed keeps what was measured.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from akira.config.errors import ConfigError

SAMPLES_FILE = "gpu_samples.csv"
COLUMNS = ("time", "index", "uuid", "utilization_gpu", "memory_used_mib", "memory_total_mib")
_QUERY = ["--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]


def query_gpus(command: str = "nvidia-smi", timeout_s: float = 10.0) -> list[dict]:
    """One sample of every GPU: `[{index, uuid, utilization_gpu, memory_used_mib, memory_total_mib}]`
    (empty if nvidia-smi is missing or fails; fields nvidia-smi reports as `[N/A]` are None)."""
    try:
        out = subprocess.run([command, *_QUERY], capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        nums = []
        for p in parts[2:]:
            try:
                nums.append(float(p))
            except ValueError:
                nums.append(None)
        rows.append({"index": parts[0], "uuid": parts[1], "utilization_gpu": nums[0], "memory_used_mib": nums[1],
                     "memory_total_mib": nums[2]})
    return rows


class GpuMonitor:
    """`with GpuMonitor(sweep_dir, interval_s): ...` samples every `interval_s` seconds in a daemon thread."""

    def __init__(self, sweep_dir: str | os.PathLike, interval_s: float = 5.0, command: str = "nvidia-smi"):
        if not isinstance(interval_s, (int, float)) or isinstance(interval_s, bool) or interval_s < 0:
            raise ConfigError(None, f"hydra.launcher.gpu_sample_interval_s: must be a number >= 0 (got {interval_s!r})")
        self.path = Path(sweep_dir) / SAMPLES_FILE
        self.interval_s, self.command = float(interval_s), command
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and shutil.which(self.command) is not None

    def sample_once(self) -> int:
        """Append one sample of every GPU; returns the number of rows written."""
        rows = query_gpus(self.command)
        if not rows:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        now = time.time()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(COLUMNS)
            for r in rows:
                writer.writerow([f"{now:.3f}", *(("" if r[k] is None else r[k]) for k in COLUMNS[1:])])
        self.samples += 1
        return len(rows)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GpuMonitor:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="akira-gpu-monitor", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._thread = None


def read_samples(path: str | os.PathLike) -> list[dict]:
    """Rows of a `gpu_samples.csv` with numbers parsed (missing values None); empty if there is no file."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    out = []
    for r in rows:
        parsed = {"index": r.get("index", ""), "uuid": r.get("uuid", "")}
        for key in ("time", "utilization_gpu", "memory_used_mib", "memory_total_mib"):
            try:
                parsed[key] = float(r[key])
            except (KeyError, TypeError, ValueError):
                parsed[key] = None
        if parsed["time"] is not None:
            out.append(parsed)
    return out


def samples_by_pool_id(samples: Sequence[dict], pool_ids: Sequence[str]) -> dict[str, list[dict]]:
    """`{pool id: its samples}`: a pool id (a `CUDA_VISIBLE_DEVICES` entry) is an index or a UUID."""
    return {gpu: [s for s in samples if gpu in (s["index"], s["uuid"])] for gpu in pool_ids}
