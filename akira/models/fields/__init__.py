"""Next-frame predictors for 2D fields.

Every model maps ``frames (B, T, H, W)`` in [0, 1] (most recent frame last) to the prediction of the
next frame ``(B, H, W)``, declares ``context_frames`` (how many of the last frames it reads) and
``is_trainable``.
"""

from akira.models.fields.baselines import (
    CopyLast,
    LinearExtrapolation,
    MLPPredictor,
    NextFrameModel,
    count_parameters,
)
from akira.models.fields.convlstm import ConvLSTMCell, ConvLSTMPredictor
from akira.models.fields.spectral import PRESETS as SPECTRAL_PRESETS
from akira.models.fields.spectral import Spectral2DPredictor, build_spectral2d

__all__ = [
    "ConvLSTMCell",
    "ConvLSTMPredictor",
    "CopyLast",
    "LinearExtrapolation",
    "MLPPredictor",
    "NextFrameModel",
    "SPECTRAL_PRESETS",
    "Spectral2DPredictor",
    "build_spectral2d",
    "count_parameters",
]
