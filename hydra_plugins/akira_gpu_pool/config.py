"""Config schemas of the plugins, registered in Hydra's ConfigStore (`hydra/launcher=gpu_pool`,
`hydra/sweeper=grid`, `hydra/sweeper=study`). Imported when Hydra scans `hydra_plugins`: keep it free of heavy
imports.
No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in sys.modules.
"""
# OmegaConf schemas need typing's Optional/Dict (no `X | None`):
# ruff: noqa: UP006, UP035, UP045
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class GpuPoolLauncherConf:
    """Each job runs in a fresh process with `CUDA_VISIBLE_DEVICES` leased from a pool of GPU ids."""

    _target_: str = "hydra_plugins.akira_gpu_pool.gpu_pool_launcher.GpuPoolLauncher"
    # null: every visible GPU (CUDA_VISIBLE_DEVICES, else nvidia-smi); a list of ids, e.g. [0,1]; []: CPU only
    gpus: Any = None
    gpus_per_job: int = 1
    # at most this many jobs at once (null: as many as the GPU pool allows; 1 without GPUs)
    max_parallel: Optional[int] = None
    # re-running a sweep into the same dir: skip jobs whose run.json says completed ...
    skip_completed: bool = True
    # ... and resume the others (a run.json or last.ckpt exists) with ckpt_path=last
    resume: bool = True
    # each job's stdout+stderr, in its job dir
    log_name: str = "stdout.log"
    poll_interval_s: float = 0.2
    # after Ctrl-C/SIGTERM, children get this long to stop before SIGKILL
    kill_grace_s: float = 30.0
    # OMP/MKL threads per job (null: cores / parallel CPU jobs, unset on GPUs)
    threads_per_job: Optional[int] = None
    # the app's .py file (null: the script that started the sweep)
    script: Optional[str] = None
    # print and record the jobs (overrides, dirs, skip/resume) without running them
    dry_run: bool = False
    # extra environment variables for every job
    env: Dict[str, str] = field(default_factory=dict)
    # nvidia-smi utilisation/memory samples every N seconds into <sweep dir>/gpu_samples.csv (0: off)
    gpu_sample_interval_s: float = 5.0


@dataclass
class GridSweeperConf:
    """Hydra's basic (grid) sweeper, except that a failed job does not stop later batches
    (`max_batch_size`): every batch runs, then the sweep fails naming every failed job."""

    _target_: str = "hydra_plugins.akira_gpu_pool.grid_sweeper.GridSweeper"
    # jobs per launcher call (null: all at once)
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


@dataclass
class StudySweeperConf:
    """Hydra's basic (grid) sweeper, except that `params` over a config group replace the command line's
    single choice of that group (the `experiment=sweep_ablations` that loaded the params). Failed jobs do not
    stop later batches, as with `grid`."""

    _target_: str = "hydra_plugins.akira_gpu_pool.study_sweeper.StudySweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/launcher", name="gpu_pool", node=GpuPoolLauncherConf, provider="akira")
ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="akira")
ConfigStore.instance().store(group="hydra/sweeper", name="study", node=StudySweeperConf, provider="akira")
