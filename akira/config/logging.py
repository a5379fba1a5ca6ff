"""Schemas of the `logger/` and `callbacks/` groups.

Each group is a set of optional named entries; a group option enables some of them. The entries are
built by `akira.run` (loggers) or instantiated from `_target_` (callbacks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CSVLoggerConfig:
    _target_: str = "pytorch_lightning.loggers.CSVLogger"
    save_dir: str = "${paths.output_dir}"
    name: str = ""
    version: str = ""
    flush_logs_every_n_steps: int = 50


@dataclass
class TensorBoardLoggerConfig:
    _target_: str = "pytorch_lightning.loggers.TensorBoardLogger"
    save_dir: str = "${paths.output_dir}/tensorboard"
    name: str = ""
    version: str = ""
    default_hp_metric: bool = False


@dataclass
class WandbLoggerConfig:
    """W&B: offline automatically when no API key is configured (`offline: null`)."""

    _target_: str = "akira.loggers.build_wandb_logger"
    project: str = "akira"
    entity: str | None = None
    group: str | None = "${task_name}"
    name: str | None = None
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    save_dir: str = "${paths.output_dir}"
    offline: bool | None = None
    log_model: bool = False


@dataclass
class LoggersConfig:
    csv: CSVLoggerConfig | None = None
    tensorboard: TensorBoardLoggerConfig | None = None
    wandb: WandbLoggerConfig | None = None


@dataclass
class ModelCheckpointConfig:
    _target_: str = "pytorch_lightning.callbacks.ModelCheckpoint"
    dirpath: str = "${paths.output_dir}/checkpoints"
    filename: str | None = None
    monitor: str | None = None
    mode: str = "min"
    save_top_k: int = 1
    save_last: bool | None = None
    every_n_train_steps: int | None = None
    auto_insert_metric_name: bool = False
    save_on_train_epoch_end: bool | None = None
    enable_version_counter: bool = False


@dataclass
class LearningRateMonitorConfig:
    _target_: str = "pytorch_lightning.callbacks.LearningRateMonitor"
    logging_interval: str = "step"


@dataclass
class ProgressBarConfig:
    _target_: str = "pytorch_lightning.callbacks.RichProgressBar"
    refresh_rate: int = 1
    leave: bool = False


@dataclass
class ThroughputConfig:
    _target_: str = "akira.callbacks.throughput.Throughput"
    log_every_n_steps: int = 10
    warmup_steps: int = 2


@dataclass
class RNGStateConfig:
    """Global RNG states in checkpoints: a resumed run draws the uninterrupted run's random numbers."""

    _target_: str = "akira.callbacks.rng_state.RNGState"


@dataclass
class EarlyStoppingConfig:
    _target_: str = "pytorch_lightning.callbacks.EarlyStopping"
    monitor: str = "val/loss"
    mode: str = "min"
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class MediaConfig:
    _target_: str = "akira.callbacks.media.FramePanels"
    every_n_steps: int = 200
    media_dir: str = "${paths.output_dir}/media"


@dataclass
class AttentionStatsConfig:
    _target_: str = "akira.callbacks.attention_stats.AttentionStats"
    csv_path: str = "${paths.output_dir}/attention_stats.csv"
    every_n_steps: int = 10
    maps_every_n_steps: int = 200
    media_dir: str = "${paths.output_dir}/media"


@dataclass
class CallbacksConfig:
    best_checkpoint: ModelCheckpointConfig | None = None
    last_checkpoint: ModelCheckpointConfig | None = None
    lr_monitor: LearningRateMonitorConfig | None = None
    progress_bar: ProgressBarConfig | None = None
    throughput: ThroughputConfig | None = None
    rng_state: RNGStateConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    frame_panels: MediaConfig | None = None
    attention_stats: AttentionStatsConfig | None = None
    extra: Any = None
