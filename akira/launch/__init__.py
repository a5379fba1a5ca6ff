"""Sweeps on a pool of GPUs: the machinery behind `hydra/launcher=gpu_pool` (the Hydra plugin lives in
`hydra_plugins/akira_gpu_pool`).

- `gpus`: find the visible GPU ids (never initialising CUDA here) and lease them (`GpuPool`).
- `runner`: run jobs as child processes in their own process groups on the pool (`run_jobs`).
- `sweep`: sweep names, a job's previous state (skip/resume), the state file and the status table.
- `hydra_launch`: Hydra job overrides -> child commands -> `JobReturn`s.

Importing this package is cheap (no torch); `hydra_launch` imports Hydra.
"""
from akira.launch.gpus import GpuPool, probe_gpus, resolve_gpus
from akira.launch.runner import JobResult, JobSpec, SweepInterrupted, run_jobs
from akira.launch.sweep import format_table, sweep_name

__all__ = ["GpuPool", "JobResult", "JobSpec", "SweepInterrupted", "format_table", "probe_gpus", "resolve_gpus",
           "run_jobs", "sweep_name"]
