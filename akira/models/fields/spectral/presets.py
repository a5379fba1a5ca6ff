"""Presets of the spectral 2D predictor (REFERENCE §1.11) as Python data, and ``build_spectral2d``.

``REFERENCE_PRESETS`` is the reference's ``configs.py`` table verbatim (its field names). ``PRESETS`` holds
the constructor arguments of :class:`Spectral2DPredictor` we use, plus ``grid`` (the preset's default grid).
Mapping and deliberate differences:

- ``timeDepth -> time_depth`` (our window includes the current frame), ``attnTopKTemporal ->
  temporal_top_k``, ``decayRate -> decay_rate``, ``layerRange -> layer_range``,
  ``wormhole_max_connections -> wormhole_top_k``.
- ``wormhole_chunk_size``: the reference's was keys per chunk (for all ``H*W`` queries of its single
  stream); ours bounds the (query, candidate) similarity entries per chunk over the whole batch and clip:
  ``2^26`` (256 MiB in fp32) for every preset. Few, large chunks keep the GPU busy; the bound holds at any
  batch, clip length and grid.
- ``wormholeThreshold``: ours is ``DEFAULT_WORMHOLE_THRESHOLD`` for every preset, calibrated for our
  similarity features; the reference's 0.9995/0.9998 is one override away
  (``build_spectral2d("fast", wormhole_threshold=0.9995)``) but meaningless there (untrained features).
- ``wormhole_min_temporal_distance``: ours counts frames back from t (1 = t-1 eligible). The reference
  counted from t-1 and masked after top-k, so t-1 was never eligible: ``wormhole_include_prev=False``.
- ``wormhole_skip_steps``: always 1; skipping reused a stale, detached output (REFERENCE §1.6).
- The ``*_causal`` flags are always true (causality is structural and tested);
  ``neighbor_first_layer_only=True`` corresponds to ``layer_range=0``.
- ``wormhole_max_key_tokens`` (new): key tokens per past frame before pooling (``_KEY_TOKENS``): 1024
  keeps 32x32 exact and pools 64x64 by 2 and 128x128 by 4; ``turbo`` uses 64 (32x32 keys pooled by 4) and
  ``fast`` 256 (pooled by 2), because the similarity search costs ``queries x key_frames x tokens`` and
  dominates the CPU step otherwise; ``model.wormhole_max_key_tokens=1024`` restores exact keys.
"""

from __future__ import annotations

import copy

from akira.models.fields.spectral.predictor import DEFAULT_WORMHOLE_THRESHOLD, Spectral2DPredictor

__all__ = ["PRESETS", "REFERENCE_PRESETS", "build_spectral2d"]

_REF_COMMON = {
    "decayRate": 0.95,
    "temporal_causal": True,
    "neighbor_first_layer_only": False,
    "neighbor_causal": True,
    "wormhole_min_temporal_distance": 1,
    "wormhole_causal": True,
    "freq_cutoff": 0.25,
}

REFERENCE_PRESETS: dict[str, dict] = {
    "default": {**_REF_COMMON, "gridSize": 32, "baseDim": 64, "attnDim": 64, "timeDepth": 16,
                "attnTopKTemporal": 4, "layerRange": 3, "wormholeThreshold": 0.9995,
                "wormhole_max_connections": 4, "wormhole_skip_steps": 1, "wormhole_chunk_size": 4096,
                "params": 70273},
    "fast": {**_REF_COMMON, "gridSize": 32, "baseDim": 32, "attnDim": 32, "timeDepth": 8,
             "attnTopKTemporal": 4, "layerRange": 3, "wormholeThreshold": 0.9995,
             "wormhole_max_connections": 4, "wormhole_skip_steps": 2, "wormhole_chunk_size": 4096,
             "params": 17729},
    "turbo": {**_REF_COMMON, "gridSize": 32, "baseDim": 16, "attnDim": 16, "timeDepth": 4,
              "attnTopKTemporal": 2, "layerRange": 1, "wormholeThreshold": 0.9998,
              "wormhole_max_connections": 2, "wormhole_skip_steps": 4, "wormhole_chunk_size": 4096,
              "params": 4513},
    "large": {**_REF_COMMON, "gridSize": 64, "baseDim": 32, "attnDim": 32, "timeDepth": 8,
              "attnTopKTemporal": 3, "layerRange": 3, "wormholeThreshold": 0.9995,
              "wormhole_max_connections": 8, "wormhole_skip_steps": 2, "wormhole_chunk_size": 8192,
              "params": 17729},
    "xlarge": {**_REF_COMMON, "gridSize": 128, "baseDim": 32, "attnDim": 32, "timeDepth": 8,
               "attnTopKTemporal": 3, "layerRange": 2, "wormholeThreshold": 0.9995,
               "wormhole_max_connections": 8, "wormhole_skip_steps": 2, "wormhole_chunk_size": 16384,
               "params": 17729},
}  # fmt: skip


_KEY_TOKENS = {"turbo": 64, "fast": 256, "default": 1024, "large": 1024, "xlarge": 1024}


def _ours(name: str, ref: dict) -> dict:
    return {
        "grid": ref["gridSize"],
        "dim": ref["baseDim"],
        "attn_dim": ref["attnDim"],
        "time_depth": ref["timeDepth"],
        "temporal_top_k": ref["attnTopKTemporal"],
        "decay_rate": ref["decayRate"],
        "layer_range": ref["layerRange"],
        "wormhole_threshold": DEFAULT_WORMHOLE_THRESHOLD,
        "wormhole_min_temporal_distance": 1,
        "wormhole_include_prev": True,
        "wormhole_top_k": ref["wormhole_max_connections"],
        "wormhole_skip_steps": 1,
        "wormhole_chunk_size": 2**26,
        "wormhole_max_key_tokens": _KEY_TOKENS[name],
        "freq_cutoff": ref["freq_cutoff"],
    }


PRESETS: dict[str, dict] = {name: _ours(name, ref) for name, ref in REFERENCE_PRESETS.items()}


def build_spectral2d(preset: str = "fast", **overrides) -> Spectral2DPredictor:
    """Build :class:`Spectral2DPredictor` from ``PRESETS[preset]`` updated with ``overrides``.

    ``grid`` (the preset default, or an override) is validated at build time (e.g. octave bands).
    """
    if preset not in PRESETS:
        raise ValueError(f"model.preset={preset!r} is not a preset; allowed: {', '.join(PRESETS)}")
    kwargs = copy.deepcopy(PRESETS[preset])
    kwargs.update(overrides)
    return Spectral2DPredictor(**kwargs)
