"""`hydra/sweeper=grid` (the default of conf/hydra/default.yaml): Hydra's basic (grid) sweeper, except that a
failed job does not stop the sweep's later batches.

Hydra's BasicSweeper already runs every job of a batch, but raises the first failure as soon as a batch
returns, so with `hydra.sweeper.max_batch_size` set the later batches never run. This sweeper runs every
batch, then reports: a launcher with an `end_sweep()` (gpu_pool) prints the whole sweep's status table and
returns one error naming every failed job, which is raised; otherwise the first failed job's error is raised
as Hydra would (so `train.py -m` exits non-zero either way). Exceptions raised by the launcher itself
(Ctrl-C, a refused sweep dir) still stop the sweep at once. `hydra/sweeper=basic` keeps Hydra's behaviour.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        # BasicSweeper.sweep (Hydra 1.3) without its raise after each batch
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params_conf = self._parse_config()
        params_conf.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns: list[Sequence[JobReturn]] = []
        failed: list[JobReturn] = []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            tic = time.perf_counter()
            self.validate_batch_is_legal(batch)  # composition errors stop the sweep before the batch runs
            log.debug(f"Validated configs of {len(batch)} jobs in {time.perf_counter() - tic:0.2f} seconds")
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            bad = [r for r in results if r.status != JobStatus.COMPLETED]
            if bad and not self.is_done():
                log.warning(f"{len(bad)} job(s) of jobs #{initial_job_idx}-#{initial_job_idx + len(batch) - 1} "
                            "failed; running the remaining batches")
            failed.extend(bad)
            initial_job_idx += len(batch)
            returns.append(results)

        end_sweep = getattr(self.launcher, "end_sweep", None)
        failure = end_sweep() if callable(end_sweep) else None
        if failure is not None:
            raise failure
        for r in failed:
            _ = r.return_value  # raises the job's error (as BasicSweeper does, after every batch ran)
        return returns
