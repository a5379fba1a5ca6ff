"""`task.loss_on=clip`: every frame after the context is a target, predicted from exactly the `context` frames
before it, as `forward` sees them at evaluation — for every model, also a recurrence (ConvLSTM), whose
`forward_sequence` state would start at frame 0 and see more than the context."""
from __future__ import annotations

import pytest
import torch

from akira.models.fields import ConvLSTMPredictor, MLPPredictor
from akira.models.fields.spectral import Spectral2DPredictor
from akira.tasks.next_frame import NextFrameTask
from tests.test_spectral_predictor import SMALL


@pytest.mark.parametrize("make", [
    lambda: ConvLSTMPredictor(hidden=4, layers=1, context=3),
    lambda: MLPPredictor(grid=8, history=3, hidden=16),
    lambda: Spectral2DPredictor(**SMALL),
])
def test_clip_predictions_equal_forward_on_each_context_window(make):
    torch.manual_seed(0)
    model = make().eval()
    task = NextFrameTask(model, history=model.context_frames, grid=8, loss_on="clip")
    clips = torch.rand(2, task.context + 5, 8, 8)
    got = task.clip_predictions(clips)
    assert got.shape == (2, 5, 8, 8) and task.items_per_batch(clips) == 10
    for k in range(5):   # target frame context + k from frames k .. context + k - 1
        want = model(clips[:, k:k + task.context])
        torch.testing.assert_close(got[:, k], want, atol=1e-5, rtol=1e-4)
    # frames older than a target's window do not change its prediction (the recurrence does not reach back)
    older = clips.clone()
    older[:, 0] = torch.rand(2, 8, 8)
    torch.testing.assert_close(task.clip_predictions(older)[:, 1:], got[:, 1:], atol=1e-5, rtol=1e-4)
