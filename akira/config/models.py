"""Schemas of the `model/` group (one per model family). `kind` and `compile` are framework keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


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


@dataclass
class LMModelConfig:
    """Decoder LM (akira.models.lm.Transformer; keys as LMConfig). `vocab_size: null` takes the tokenizer's
    vocabulary, rounded up to `vocab_pad_multiple` (64: tensor-core friendly, as nanoGPT's 50304)."""

    _target_: str = "akira.models.lm.Transformer"
    kind: str = "text"
    compile: bool = False
    vocab_size: Optional[int] = None
    vocab_pad_multiple: int = 64
    n_layer: int = 6
    d_model: int = 512
    n_head: int = 8
    max_seq_len: int = 512
    dropout: float = 0.1
    bias: bool = True
    positional: str = "learned"
    rope_base: float = 10000.0
    tie_embeddings: bool = False
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    scaled_residual_init: bool = False
    mlp: str = "dense"
    mlp_expansion: int = 4
    band_widths: List[int] = field(default_factory=lambda: [128, 96, 80, 64, 64, 48, 32])
    band_expansion: Optional[float] = None
    params_matched: bool = False
    band_impl: str = "auto"
    wormhole: bool = False
    wormhole_pairs: str = "all"
    wormhole_top_k: Optional[int] = None
    wormhole_threshold: float = 0.5
    wormhole_cross_dim: Optional[int] = None
