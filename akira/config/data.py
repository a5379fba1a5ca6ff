"""Schemas of the `data/` group (one per data option)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class FieldsMode(str, Enum):
    batch = "batch"
    online = "online"


class Pattern(str, Enum):
    blob = "blob"
    interference = "interference"
    switching = "switching"
    double_slit = "double_slit"
    counter_rotate = "counter_rotate"
    chirp = "chirp"
    phase_jump = "phase_jump"
    noisy_motion = "noisy_motion"
    bifurcation = "bifurcation"
    wave_collision = "wave_collision"
    concentric = "concentric"


@dataclass
class FieldsDataConfig:
    """Synthetic 2D fields: clips of `history + horizon` frames from many independent streams."""

    _target_: str = "akira.data.fields.FieldsDataModule"
    kind: str = "fields"
    pattern: Pattern = Pattern.blob
    grid: int = 32
    history: int = 8
    horizon: int = 10
    batch_size: int = 32
    eval_batch_size: Optional[int] = None
    num_workers: int = 0
    mode: FieldsMode = FieldsMode.batch
    train_t_max: int = 10000
    reference_t0: int = 10000
    val_streams: int = 64
    test_streams: int = 128
    switch_period: int = 50
    vary_params: bool = True
    reference_clips: int = 101
    seed: int = "${seed}"  # type: ignore[assignment]
