"""Schemas of the `model/` group (one per model family). `kind` and `compile` are framework keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class CopyLastConfig:
    _target_: str = "akira.models.fields.CopyLast"
    kind: str = "fields"
    compile: bool = False


@dataclass
class LinearExtrapolationConfig:
    _target_: str = "akira.models.fields.LinearExtrapolation"
    kind: str = "fields"
    compile: bool = False


@dataclass
class MLP2DConfig:
    """The reference MLP, fed the same last `history` frames as every other model."""

    _target_: str = "akira.models.fields.MLPPredictor"
    kind: str = "fields"
    compile: bool = False
    grid: int = "${data.grid}"  # type: ignore[assignment]
    history: int = "${data.history}"  # type: ignore[assignment]
    hidden: Optional[int] = None
    residual: bool = False


@dataclass
class ConvLSTMConfig:
    _target_: str = "akira.models.fields.ConvLSTMPredictor"
    kind: str = "fields"
    compile: bool = False
    hidden: int = 32
    layers: int = 2
    kernel: int = 3
    context: int = "${data.history}"  # type: ignore[assignment]
    residual: bool = True
