"""Baseline next-frame models: copy-last, linear extrapolation, the fixed reference MLP and the ConvLSTM."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from akira.models.fields import (
    ConvLSTMCell,
    ConvLSTMPredictor,
    CopyLast,
    LinearExtrapolation,
    MLPPredictor,
    NextFrameModel,
    count_parameters,
)
from akira.models.fields.baselines import clamp01_straight_through


def _moving_blobs(batch: int = 4, steps: int = 7, grid: int = 16) -> torch.Tensor:
    """Gaussian blobs translating at constant velocity: ``(batch, steps, grid, grid)`` in [0, 1]."""
    y = torch.arange(grid, dtype=torch.float32).view(1, 1, grid, 1)
    x = torch.arange(grid, dtype=torch.float32).view(1, 1, 1, grid)
    t = torch.arange(steps, dtype=torch.float32).view(1, steps, 1, 1)
    b = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1)
    cy = 4.0 + 2.0 * b + 0.5 * t * torch.where(b % 2 == 1, 1.0, -1.0)
    cx = 3.0 + t
    return torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 2.0**2))


# ---------------------------------------------------------------- parameter-free baselines


def test_copy_last_exact_and_uses_only_last_frame():
    frames = torch.rand(3, 5, 6, 7)
    model = CopyLast()
    out = model(frames)
    assert out.shape == (3, 6, 7)
    assert torch.equal(out, frames[:, -1])
    assert model.context_frames == 1 and model.is_trainable is False
    assert count_parameters(model) == 0
    out.add_(1.0)  # the prediction is a copy, not a view of the input
    assert torch.all(frames[:, -1] <= 1.0)


def test_linear_extrapolation_exact_values_and_clamp():
    prev = torch.tensor([[0.2, 0.9], [0.3, 0.5]])
    last = torch.tensor([[0.5, 0.2], [0.9, 0.5]])
    frames = torch.stack([torch.zeros(2, 2), prev, last]).unsqueeze(0)  # (1, 3, 2, 2), extra oldest frame
    out = LinearExtrapolation()(frames)
    # 2*0.5-0.2 = 0.8; 2*0.2-0.9 = -0.5 -> 0; 2*0.9-0.3 = 1.5 -> 1; 2*0.5-0.5 = 0.5
    expected = torch.tensor([[[0.8, 0.0], [1.0, 0.5]]])
    assert out.shape == (1, 2, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert LinearExtrapolation.context_frames == 2 and LinearExtrapolation.is_trainable is False


def test_linear_extrapolation_ignores_frames_before_context():
    frames = torch.rand(2, 6, 5, 5)
    changed = frames.clone()
    changed[:, :4] = torch.rand(2, 4, 5, 5)
    assert torch.equal(LinearExtrapolation()(frames), LinearExtrapolation()(changed))
    assert torch.equal(LinearExtrapolation()(frames), LinearExtrapolation()(frames[:, -2:]))


@pytest.mark.parametrize(
    "frames, match",
    [
        (torch.rand(2, 5, 5), "shape"),
        (torch.rand(2, 1, 5, 5), "context_frames=2"),
        (torch.ones(2, 3, 5, 5, dtype=torch.int64), "floating-point"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_frames_raise_value_error_naming_frames(frames, match):
    with pytest.raises(ValueError, match=match) as info:
        LinearExtrapolation()(frames)
    assert "frames" in str(info.value)


def test_clamp_straight_through_values_and_gradient():
    x = torch.tensor([-0.5, 0.25, 1.5], requires_grad=True)
    y = clamp01_straight_through(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.25, 1.0]))
    y.backward(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0]))


# ---------------------------------------------------------------- MLP


@pytest.mark.parametrize(
    "preset, grid, history, expected",
    [
        ("fast", 32, 8, 4_982_784),
        ("turbo", 32, 4, 2_885_632),
        ("default", 32, 16, 9_177_088),
        ("large", 64, 8, 19_141_632),
        ("xlarge", 128, 8, 75_777_024),
    ],
)
def test_mlp_parameter_counts_match_reference(preset, grid, history, expected):
    with torch.device("meta"):  # no memory, no init cost
        model = MLPPredictor(grid=grid, history=history)
    assert model.hidden == 512
    assert count_parameters(model) == expected, preset


def test_mlp_default_hidden_formula_and_shapes():
    model = MLPPredictor(grid=4, history=2)
    assert model.hidden == 2 * 4 * 4 // 4 == 8
    assert model.context_frames == model.history == 2 and model.is_trainable
    expected = 32 * 8 + 8 + 8 * 8 + 8 + 8 * 16 + 16
    assert count_parameters(model) == expected
    out = model(torch.rand(3, 5, 4, 4))
    assert out.shape == (3, 4, 4)
    assert torch.all((out > 0) & (out < 1))
    assert MLPPredictor(grid=4, history=2, hidden=20).hidden == 20


def test_mlp_reads_exactly_the_last_history_frames():
    torch.manual_seed(0)
    model = MLPPredictor(grid=6, history=3)
    frames = torch.rand(2, 7, 6, 6)
    out = model(frames)
    changed = frames.clone()
    changed[:, :4] += 0.3  # frames older than the history window
    assert torch.equal(model(changed), out)
    torch.testing.assert_close(model(frames[:, -3:]), out, rtol=0, atol=0)
    changed = frames.clone()
    changed[:, -3] += 0.3  # the oldest frame in the window matters
    assert not torch.allclose(model(changed), out)


def test_mlp_residual_starts_near_copy_last_and_stays_in_unit_interval():
    torch.manual_seed(0)
    model = MLPPredictor(grid=8, history=2, residual=True)
    frames = torch.rand(4, 2, 8, 8)
    frames[0, -1] = 1.0
    out = model(frames)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out - frames[:, -1]).abs().max() < 0.05


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid=0), "grid"),
        (dict(grid=8, history=0), "history"),
        (dict(grid=8, hidden=-3), "hidden"),
        (dict(grid=8.0), "grid"),
        (dict(grid=1, history=1), "hidden"),
    ],
)
def test_mlp_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPPredictor(**kwargs)


def test_mlp_rejects_wrong_grid():
    with pytest.raises(ValueError, match="grid = 8"):
        MLPPredictor(grid=8, history=2)(torch.rand(1, 2, 9, 9))


@pytest.mark.parametrize("residual", [False, True])
def test_mlp_every_parameter_gets_gradient(residual):
    torch.manual_seed(0)
    model = MLPPredictor(grid=6, history=3, residual=residual)
    loss = F.mse_loss(model(torch.rand(4, 3, 6, 6)), torch.rand(4, 6, 6))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mlp_overfits_tiny_batch():
    torch.manual_seed(0)
    model = MLPPredictor(grid=16, history=4)
    x, y = torch.rand(8, 4, 16, 16), torch.rand(8, 16, 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(150):
        loss = F.mse_loss(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10


# ---------------------------------------------------------------- ConvLSTM


def test_convlstm_cell_matches_textbook_recurrence():
    """The split input/hidden convolutions equal one conv over [x, h] (Shi et al. 2015, no peepholes)."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(in_channels=2, hidden=3, kernel=3)
    x = torch.randn(2, 4, 2, 5, 5)
    weight = torch.cat([cell.input_conv.weight, cell.hidden_conv.weight], dim=1)  # (12, 2 + 3, 3, 3)
    h = torch.zeros(2, 3, 5, 5)
    c = torch.zeros(2, 3, 5, 5)
    expected = []
    for t in range(4):
        gates = F.conv2d(torch.cat([x[:, t], h], dim=1), weight, cell.input_conv.bias, padding=1)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        expected.append(h)
    torch.testing.assert_close(cell(x), torch.stack(expected, dim=1), rtol=1e-5, atol=1e-6)
    assert torch.all(cell.input_conv.bias[3:6] == 1.0)  # forget-gate bias


@pytest.mark.parametrize("residual", [True, False])
def test_convlstm_shapes_and_range(residual):
    torch.manual_seed(0)
    model = ConvLSTMPredictor(hidden=4, layers=2, kernel=3, context=3, residual=residual)
    assert model.context_frames == 3 and model.is_trainable
    frames = torch.rand(2, 5, 7, 9)  # any grid, more frames than the context
    out = model(frames)
    assert out.shape == (2, 7, 9)
    assert out.min() >= 0.0 and out.max() <= 1.0
    seq = model.forward_sequence(frames)
    assert seq.shape == (2, 5, 7, 9)
    # forward reads exactly the last `context` frames and equals the sequence output on them
    torch.testing.assert_close(out, model.forward_sequence(frames[:, -3:])[:, -1], rtol=0, atol=1e-6)
    changed = frames.clone()
    changed[:, :2] = torch.rand(2, 2, 7, 9)
    torch.testing.assert_close(model(changed), out, rtol=0, atol=0)


def test_convlstm_residual_starts_near_copy_last():
    torch.manual_seed(0)
    model = ConvLSTMPredictor(hidden=8, layers=2, context=4)
    frames = torch.rand(2, 4, 8, 8)
    assert (model(frames) - frames[:, -1]).abs().max() < 0.05


def test_convlstm_forward_sequence_is_causal():
    torch.manual_seed(0)
    model = ConvLSTMPredictor(hidden=4, layers=2, kernel=3, context=3, residual=False)
    steps = 5
    frames = torch.rand(2, steps, 6, 6)
    base = model.forward_sequence(frames)
    for t in range(steps - 1):
        changed = frames.clone()
        changed[:, t + 1 :] = torch.rand(2, steps - t - 1, 6, 6)
        out = model.forward_sequence(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])  # the perturbation is visible later
    for t in range(steps):
        x = frames.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.forward_sequence(x)[:, t].sum(), x)
        assert torch.all(grad[:, t + 1 :] == 0), t
        assert grad[:, : t + 1].abs().amax(dim=(0, 2, 3)).min() > 0, t  # every past frame is used


def test_convlstm_every_parameter_gets_gradient():
    torch.manual_seed(0)
    model = ConvLSTMPredictor(hidden=4, layers=3, kernel=3, context=3)
    frames = torch.rand(2, 4, 6, 6)
    F.mse_loss(model.forward_sequence(frames[:, :-1]), frames[:, 1:]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel=4), "kernel"),
        (dict(kernel=0), "kernel"),
        (dict(hidden=0), "hidden"),
        (dict(layers=0), "layers"),
        (dict(context=0), "context"),
    ],
)
def test_convlstm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvLSTMPredictor(**kwargs)


def test_convlstm_needs_context_frames():
    with pytest.raises(ValueError, match="context_frames=4"):
        ConvLSTMPredictor(hidden=2, layers=1, context=4)(torch.rand(1, 3, 5, 5))


def test_convlstm_overfits_tiny_batch_of_moving_blobs():
    torch.manual_seed(0)
    clip = _moving_blobs(batch=4, steps=7, grid=16)
    model = ConvLSTMPredictor(hidden=8, layers=1, kernel=3, context=6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(250):
        loss = F.mse_loss(model.forward_sequence(clip[:, :-1]), clip[:, 1:])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isfinite(loss.item()) and loss.item() < first / 10
    # and it beats copy-last on its own training clip by the same margin
    copy_mse = F.mse_loss(clip[:, :-1], clip[:, 1:]).item()
    assert loss.item() < copy_mse / 10


def test_all_models_share_the_interface():
    models = [
        CopyLast(),
        LinearExtrapolation(),
        MLPPredictor(grid=5, history=3),
        ConvLSTMPredictor(hidden=2, layers=1, context=4),
    ]
    frames = torch.rand(2, 6, 5, 5)
    for model in models:
        assert isinstance(model, NextFrameModel)
        assert isinstance(model.context_frames, int) and isinstance(model.is_trainable, bool)
        assert model.is_trainable == (count_parameters(model) > 0)
        assert model(frames).shape == (2, 5, 5)
        assert model(frames[:, -model.context_frames :]).shape == (2, 5, 5)


def test_convlstm_forward_sequence_from_a_start_frame_equals_the_tail():
    torch.manual_seed(0)
    model = ConvLSTMPredictor(hidden=4, layers=2, kernel=3, context=3)
    frames = torch.rand(2, 6, 7, 9)
    full = model.forward_sequence(frames)
    for start in (0, 2, 5):
        torch.testing.assert_close(model.forward_sequence(frames, start=start), full[:, start:], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="start must be in"):
        model.forward_sequence(frames, start=6)
