"""Top-level schemas of `train.yaml` and `eval.yaml`, and the `optim` / `task` nodes."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from akira.config.logging import CallbacksConfig, LoggersConfig
from akira.config.paths import PathsConfig
from akira.config.trainer import TrainerConfig


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"


class OptimizerName(str, Enum):
    adam = "adam"
    adamw = "adamw"


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (steps are optimizer steps)."""

    name: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Schedule = Schedule.constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    fused: bool | None = None
    # null: the seed v1 table for band models; 'v1' | 'uniform' | a list of one LR per band
    band_lrs: Any = None
    shared_lr: float | None = None


class LossOn(str, Enum):
    next = "next"
    clip = "clip"


@dataclass
class TaskConfig:
    """Task-level switches (NextFrameTask / LanguageModelTask)."""

    rollout_horizons: list[int] = field(default_factory=lambda: [1, 5, 10])
    loss_on: LossOn = LossOn.next
    band_stats_every_n_steps: int = 50
    band_delta_loss: bool = True


@dataclass
class TrainConfig:
    data: Any = None
    model: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggersConfig = field(default_factory=LoggersConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    seed: int = 42
    ckpt_path: str | None = None
    train: bool = True
    test: bool = True
    # an experiment arm that needs one model config sets this (e.g. akira_band); a different model= fails
    requires_model: str | None = None


@dataclass
class EvalConfig(TrainConfig):
    task_name: str = "eval"
    train: bool = False
