"""Schemas of the `model/` group (one per model family). `kind` and `compile` are framework keys."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    hidden: int | None = None
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
    vocab_size: int | None = None
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
    band_widths: list[int] = field(default_factory=lambda: [128, 96, 80, 64, 64, 48, 32])
    band_expansion: float | None = None
    params_matched: bool = False
    band_impl: str = "auto"
    fused_bf16_gelu: bool = True
    wormhole: bool = False
    wormhole_pairs: str = "all"
    wormhole_top_k: int | None = None
    wormhole_threshold: float = 0.5
    wormhole_cross_dim: int | None = None
    wormhole_attention: str = "sdpa"
    wormhole_gate: str = "auto"
    fused_loss: bool = False
    fused_loss_chunk: int = 4096


@dataclass
class Spectral2DConfig:
    """Spectral 2D predictor (akira.models.fields.spectral); defaults = the `fast` preset."""

    _target_: str = "akira.models.fields.Spectral2DPredictor"
    kind: str = "fields"
    compile: bool = False
    grid: int = "${data.grid}"  # type: ignore[assignment]
    dim: int = 32
    attn_dim: int = 32
    time_depth: int = 8
    temporal_top_k: int = 4
    decay_rate: float = 0.95
    layer_range: int = 3
    selection: str = "topk"
    recency: str = "after"
    neighbor_norm: str = "joint"
    use_temporal: bool = True
    use_neighbor: bool = True
    use_wormhole: bool = True
    temporal_band: str = "intensity"
    neighbor_band: str = "intensity"
    wormhole_sim_band: str = "low"
    wormhole_value_band: str = "intensity"
    n_bands: int = 0
    freq_cutoff: float = 0.25
    freq_sharpness: float = 10.0
    band_normalize: bool = True
    feature_kernel: int = 3
    wormhole_top_k: int = 4
    wormhole_threshold: float = 0.8
    wormhole_min_temporal_distance: int = 1
    wormhole_include_prev: bool = True
    wormhole_read_next: bool = False
    wormhole_sim_dim: int = 8
    wormhole_learned_weight: float = 0.5
    wormhole_chunk_size: int = 67108864
    wormhole_max_key_tokens: int = 256
    wormhole_skip_steps: int = 1
    residual: bool = True
    return_maps: bool = False
    time_block: int | None = None
