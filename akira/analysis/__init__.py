"""Analyses of trained language models: activation capture, seed-vs-seed alignment (AQ candidates against a
rotation null at a stated FDR, held-out Procrustes, CKA), spectral centroids, belief-collapse metrics,
training dynamics, and reports. Pure functions live in the small modules; `pipeline` is analyze.py's body.

Modules: `checkpoint` (load_lm), `capture`, `moments`, `alignment`, `seeds`, `stats`, `centroid`,
`collapse`, `dynamics`, `probes`, `report`, `plots`, `config` (Hydra schemas), `pipeline`, `testing`
(tiny checkpoints for tests and smoke runs).
"""
from .checkpoint import load_lm, read_lm_config

__all__ = ["load_lm", "read_lm_config"]
