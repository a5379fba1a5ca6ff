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

__all__ = [
    "ConvLSTMCell",
    "ConvLSTMPredictor",
    "CopyLast",
    "LinearExtrapolation",
    "MLPPredictor",
    "NextFrameModel",
    "count_parameters",
]
