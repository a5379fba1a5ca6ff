"""Spectral 2D predictor (REFERENCE §1, rebuilt): FFT bands -> temporal / neighbor / wormhole attention.

Modules: ``bands`` (FFT band masks), ``features`` (per-band patch embedding), ``qkvo`` (projections folded into patch space), ``window`` (causal windowed
attention core), ``temporal``, ``neighbor``, ``wormhole``, ``predictor`` (the full model: parallel and
streaming modes), ``presets`` (the five presets, ``build_spectral2d``).
"""

from akira.models.fields.spectral.bands import BASE_BANDS, BandDecomposition, band_names
from akira.models.fields.spectral.features import BandEmbedding, patches
from akira.models.fields.spectral.neighbor import NeighborAttention
from akira.models.fields.spectral.predictor import DEFAULT_WORMHOLE_THRESHOLD, Spectral2DPredictor
from akira.models.fields.spectral.presets import PRESETS, REFERENCE_PRESETS, build_spectral2d
from akira.models.fields.spectral.temporal import TemporalAttention
from akira.models.fields.spectral.window import windowed_attention
from akira.models.fields.spectral.wormhole import WormholeAttention, pooled_grid

__all__ = [
    "BASE_BANDS",
    "DEFAULT_WORMHOLE_THRESHOLD",
    "PRESETS",
    "REFERENCE_PRESETS",
    "BandDecomposition",
    "BandEmbedding",
    "NeighborAttention",
    "Spectral2DPredictor",
    "TemporalAttention",
    "WormholeAttention",
    "band_names",
    "build_spectral2d",
    "patches",
    "pooled_grid",
    "windowed_attention",
]
