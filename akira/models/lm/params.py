"""Closed-form parameter counts of an `LMConfig`, band hidden sizes and the parameter-matched expansion.

The counts are checked against the built modules by the tests; `params_matched` solves the band-MLP
expansion from them without building a model.
"""
from __future__ import annotations

from .config import LMConfig


def dense_split_sizes(cfg: LMConfig) -> tuple[int, ...]:
    """Hidden-unit groups of the `dense_split` MLP: mlp_expansion * d_model split in proportion to the bands."""
    hidden = cfg.mlp_expansion * cfg.d_model
    sizes = [hidden * w // cfg.d_model for w in cfg.band_widths]
    sizes[-1] += hidden - sum(sizes)
    return tuple(sizes)


def _hidden_for(widths: tuple[int, ...], e: float) -> tuple[int, ...]:
    return tuple(max(1, round(e * w)) for w in widths)


def _band_mlp_layer(widths: tuple[int, ...], hidden: tuple[int, ...], bias: bool) -> int:
    return sum(2 * d * h + (h + d if bias else 0) for d, h in zip(widths, hidden))


def band_hidden_sizes(cfg: LMConfig) -> tuple[int, ...]:
    """Per-band MLP hidden sizes h_i = round(e * d_i); with ``params_matched`` e is solved so that the
    non-embedding parameter count equals the dense model's (same config, ``mlp='dense'``, no wormhole)."""
    if not cfg.params_matched:
        return _hidden_for(cfg.band_widths, cfg.band_expansion or cfg.mlp_expansion)
    target = parameter_count(cfg.replace(mlp="dense", wormhole=False, params_matched=False))["non_embedding"]
    rest = parameter_count(cfg.replace(params_matched=False), band_hidden=(0,) * len(cfg.band_widths))
    per_layer = (target - rest["non_embedding"]) / cfg.n_layer
    b = int(cfg.bias)
    slope = sum(2 * d * d + b * d for d in cfg.band_widths)
    e = max((per_layer - b * cfg.d_model) / slope, 1.0 / min(cfg.band_widths))
    return _hidden_for(cfg.band_widths, e)


def matched_band_expansion(cfg: LMConfig) -> float:
    """Effective expansion sum(h_i) / d_model of the band MLP for this config."""
    return sum(band_hidden_sizes(cfg)) / cfg.d_model


def parameter_count(cfg: LMConfig, band_hidden: tuple[int, ...] | None = None) -> dict[str, int]:
    """Parameter counts of `Transformer(cfg)`: total, non_embedding (total minus token/position embeddings
    and an untied LM head), embedding, head and per-layer parts."""
    d, b = cfg.d_model, int(cfg.bias)
    norm = d * (1 + b)
    attn = 4 * d * d + 4 * d * b
    if cfg.mlp == "band":
        hidden = band_hidden if band_hidden is not None else band_hidden_sizes(cfg)
        mlp = _band_mlp_layer(cfg.band_widths, hidden, cfg.bias)
    else:
        h = cfg.mlp_expansion * d
        mlp = 2 * d * h + (h + d) * b
    worm = 0
    if cfg.wormhole:
        c, nb = cfg.cross_dim, len(cfg.band_widths)
        worm = 6 * c * d + 2 * sum(w * w for w in cfg.band_widths) + b * (nb * 4 * c + 2 * d)
    layer = 2 * norm + attn + mlp + worm
    tok = cfg.vocab_size * d
    pos = cfg.max_seq_len * d if cfg.positional == "learned" else 0
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    total = tok + pos + cfg.n_layer * layer + norm + head
    return {"total": total, "non_embedding": total - tok - pos - head, "token_embedding": tok,
            "position_embedding": pos, "lm_head": head, "layer": layer, "layer_mlp": mlp,
            "layer_wormhole": worm, "layer_attention": attn}
