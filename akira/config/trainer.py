"""Schema of the `trainer/` group: keyword arguments of `pytorch_lightning.Trainer`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainerConfig:
    _target_: str = "pytorch_lightning.Trainer"
    default_root_dir: str = "${paths.output_dir}"
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: Any = "auto"
    precision: Any = "32-true"
    max_steps: int = 1000
    max_epochs: int | None = None
    max_time: str | None = None
    val_check_interval: Any = 200
    check_val_every_n_epoch: int | None = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    deterministic: Any = False
    benchmark: bool | None = None
    fast_dev_run: Any = False
    overfit_batches: Any = 0.0
    profiler: str | None = None
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    use_distributed_sampler: bool = False
    sync_batchnorm: bool = False
