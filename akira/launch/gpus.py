"""GPU ids for the gpu_pool launcher: find the visible GPUs without initialising CUDA in this process,
and lease them to jobs.

Ids are strings, exactly as a child process receives them in `CUDA_VISIBLE_DEVICES` (indices or UUIDs).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

from akira.config.errors import ConfigError

PROBE_TIMEOUT_S = 60


def parse_visible_devices(value: str) -> list[str]:
    """`"0,1"` -> `["0", "1"]`; CUDA ignores everything from the first `-1` on (`""` or `"-1"`: no GPUs)."""
    ids = []
    for item in value.split(","):
        item = item.strip()
        if item in ("", "-1"):
            break
        ids.append(item)
    return ids


def probe_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids visible to a child process: `CUDA_VISIBLE_DEVICES` if set, else `nvidia-smi`, else
    `torch.cuda.device_count()` in a subprocess (CUDA is never initialised in the calling process)."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return parse_visible_devices(env["CUDA_VISIBLE_DEVICES"])
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=PROBE_TIMEOUT_S, check=True).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=True, env=dict(env)).stdout
        return [str(i) for i in range(int(out.strip().splitlines()[-1]))]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []


def resolve_gpus(gpus, env: Mapping[str, str] | None = None) -> list[str]:
    """The pool's ids from the launcher config: null = every visible GPU (probed), a list of ids, or a
    comma-separated string; `[]` means no GPUs (CPU jobs)."""
    if gpus is None:
        return probe_gpus(env)
    if isinstance(gpus, str):
        return parse_visible_devices(gpus)
    if isinstance(gpus, Sequence) and all(isinstance(g, (int, str)) and not isinstance(g, bool) for g in gpus):
        ids = [str(g).strip() for g in gpus]
        if len(set(ids)) != len(ids) or "" in ids:
            raise ConfigError(None, f"hydra.launcher.gpus: ids must be unique and non-empty (got {list(gpus)})")
        return ids
    raise ConfigError(None, f"hydra.launcher.gpus: expected null (all visible GPUs), a list of GPU ids or a string "
                     f"like '0,1' (got {gpus!r})")


class GpuPool:
    """Free GPU ids; a job leases `per_job` of them and gives them back when it ends.

    With no ids at all the pool is a CPU pool: every lease succeeds with `[]` (the caller limits how many
    jobs run at once)."""

    def __init__(self, ids: Sequence[str], per_job: int = 1):
        if not isinstance(per_job, int) or per_job < 1:
            raise ConfigError(None, f"hydra.launcher.gpus_per_job: must be an integer >= 1 (got {per_job!r})")
        if ids and per_job > len(ids):
            raise ConfigError(None, f"hydra.launcher.gpus_per_job: {per_job} is more than the pool's {len(ids)} GPUs "
                             f"({','.join(ids)})")
        self.ids = list(ids)
        self.per_job = per_job
        self._free = list(ids)

    @property
    def has_gpus(self) -> bool:
        return bool(self.ids)

    @property
    def capacity(self) -> int | None:
        """How many jobs can hold GPUs at once (None for a CPU pool)."""
        return len(self.ids) // self.per_job if self.ids else None

    @property
    def free(self) -> list[str]:
        return list(self._free)

    def lease(self) -> list[str] | None:
        """Take `per_job` free ids (lowest first), `[]` on a CPU pool, or None if not enough are free."""
        if not self.ids:
            return []
        if len(self._free) < self.per_job:
            return None
        taken, self._free = self._free[:self.per_job], self._free[self.per_job:]
        return taken

    def release(self, ids: Sequence[str]) -> None:
        for gpu in ids:
            if gpu not in self.ids or gpu in self._free:
                raise ValueError(f"GpuPool.release: {gpu!r} is not a leased id of this pool")
        order = {g: i for i, g in enumerate(self.ids)}
        self._free = sorted([*self._free, *ids], key=order.__getitem__)
