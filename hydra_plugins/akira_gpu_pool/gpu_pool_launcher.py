"""`hydra/launcher=gpu_pool`: every job in a fresh process on GPUs leased from a pool (see akira.launch)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class GpuPoolLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        from akira.launch.hydra_launch import LauncherOptions

        plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in params.items()}
        self.options = LauncherOptions(**plain)
        self.history: Any = None  # the sweep's results over all batches (akira.launch.hydra_launch.SweepHistory)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from akira.launch.hydra_launch import SweepHistory, launch

        assert self.config is not None and self.hydra_context is not None
        if self.history is None:
            self.history = SweepHistory()
        return launch(self.options, self.hydra_context, self.config, job_overrides, initial_job_idx, self.history)

    def end_sweep(self) -> Exception | None:
        """Called by akira's sweepers after the last batch: prints the whole sweep's table (several batches) and
        returns the error naming every failed job, or None."""
        from akira.launch.hydra_launch import end_sweep

        return None if self.history is None else end_sweep(self.history)
