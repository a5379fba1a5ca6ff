"""`run.json` contents (provenance of a run) and atomic JSON writes."""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from akira.atomic import atomic_write_json


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file, fsync, os.replace)."""
    atomic_write_json(path, obj, indent=2)


def read_json_dict(path: str | os.PathLike) -> dict | None:
    """A JSON object file (run.json, metrics.json), or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def git_info(root: str | os.PathLike) -> dict[str, Any]:
    """{"sha": ..., "dirty": bool} of the repository at `root` (None values outside git)."""
    def _git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": None if status is None else bool(status)}


def versions() -> dict[str, str | None]:
    import hydra
    import pytorch_lightning
    import torch

    import akira

    return {"python": platform.python_version(), "torch": torch.__version__,
            "lightning": pytorch_lightning.__version__, "hydra": hydra.__version__, "akira": akira.__version__}


def device_info() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {"type": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "count": os.cpu_count()}


def start_info(root: str | os.PathLike, run_dir: str | os.PathLike, seed: int, overrides: list[str],
               task_name: str) -> dict[str, Any]:
    return {
        "status": "running", "task_name": task_name, "run_dir": str(run_dir), "git": git_info(root),
        "versions": versions(), "device": device_info(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "hostname": socket.gethostname(),
        "command": [sys.executable, *sys.argv], "overrides": list(overrides), "seed": seed,
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "end_time": None, "exit_code": None,
    }


# ---------------------------------------------------------------------------------------- metrics.csv history
def metrics_csv_files(csv_path: str | os.PathLike) -> list[Path]:
    """A run's CSV logs in order: the earlier attempts' `metrics.part<k>.csv` (k = 1, 2, ...), then
    `metrics.csv` (the current one). Lightning's CSV logger deletes an existing `metrics.csv` when it starts, so
    a resumed or re-entered run keeps the earlier rows by `keep_metrics_csv` moving them aside first."""
    p = Path(csv_path)

    def number(part: Path) -> int:
        k = part.stem.rsplit(".part", 1)[1]
        return int(k) if k.isdigit() else 0

    return [*sorted(p.parent.glob(f"{p.stem}.part*{p.suffix}"), key=number), p]


def keep_metrics_csv(run_dir: str | os.PathLike) -> None:
    """Move an existing `<run_dir>/metrics.csv` aside as the next `metrics.part<k>.csv` (before a new CSV logger
    starts in that directory and would delete it)."""
    current = Path(run_dir) / "metrics.csv"
    if not current.is_file():
        return
    k = len(metrics_csv_files(current))      # parts so far + 1
    while (dest := current.with_name(f"metrics.part{k}.csv")).exists():
        k += 1
    os.replace(current, dest)
