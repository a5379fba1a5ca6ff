"""Pure ``torch.nn`` models (no Lightning, Hydra or data imports).

Subpackages:
- ``akira.models.fields``: next-frame predictors for 2D fields (baselines, ConvLSTM, spectral).
- ``akira.models.lm``: language-model building blocks.

Import the subpackage you need; this package deliberately imports none of them.
"""
