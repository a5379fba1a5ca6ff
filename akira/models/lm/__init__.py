"""Decoder language models (pure torch): baseline, AKIRA v1 band layer, cross-band wormhole, dense_split.

`Transformer(LMConfig(...))` is the one configurable model; `lm_preset(name)` gives the seed's reference
configurations; `parameter_count(cfg)` the closed-form counts.
"""
from . import band_mlp_kernel, pair_attention_kernel, wormhole_gate_kernel
from .attention import CausalSelfAttention, RotaryEmbedding
from .band import BandLayerNorm, BandMLP, band_layout
from .config import SEED_BAND_WIDTHS, LMConfig, lm_preset
from .mlp import DenseMLP, SplitDenseMLP
from .params import band_hidden_sizes, dense_split_sizes, matched_band_expansion, parameter_count
from .transformer import Block, Transformer
from .wormhole import CrossBandWormhole, wormhole_pairs

__all__ = [
    "SEED_BAND_WIDTHS", "BandLayerNorm", "BandMLP", "Block", "CausalSelfAttention", "CrossBandWormhole",
    "DenseMLP", "LMConfig", "RotaryEmbedding", "SplitDenseMLP", "Transformer", "band_hidden_sizes",
    "band_layout", "band_mlp_kernel", "dense_split_sizes", "lm_preset", "matched_band_expansion", "pair_attention_kernel", "parameter_count",
    "wormhole_gate_kernel", "wormhole_pairs",
]
