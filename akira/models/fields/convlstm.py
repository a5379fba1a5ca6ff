"""A small standard ConvLSTM next-frame predictor (Shi et al. 2015; as OpenSTL's ConvLSTM, no peepholes).

Each layer is the ConvLSTM recurrence on ``(B, C, H, W)`` maps with zero ``"same"`` padding::

    [i, f, o, g] = W_x * x_t + W_h * h_{t-1} + b
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
    h_t = sigmoid(o) tanh(c_t)

Layers are stacked (layer ``l`` reads ``h`` of layer ``l-1``); a 1x1 conv head maps the top ``h_t`` to
the next frame. The input projection ``W_x * x`` of a layer is computed for all time steps in one batched
convolution; only the hidden-to-hidden convolution runs inside the (inherently sequential) time loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from akira.models.fields.baselines import NextFrameModel, check_frames, clamp01_straight_through, positive_int

__all__ = ["ConvLSTMCell", "ConvLSTMPredictor"]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer run over a whole sequence: ``(B, T, C_in, H, W) -> (B, T, hidden, H, W)``.

    The state starts at zero. Output ``t`` depends only on inputs ``<= t`` (causal by construction).
    The forget-gate bias starts at 1 (standard LSTM practice).
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("hidden", hidden)
        if positive_int("kernel", kernel) % 2 == 0:
            raise ValueError(f"kernel must be an odd positive integer; got {kernel}")
        self.hidden = hidden
        self.input_conv = nn.Conv2d(in_channels, 4 * hidden, kernel, padding=kernel // 2)
        self.hidden_conv = nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=False)
        with torch.no_grad():
            self.input_conv.bias.zero_()
            self.input_conv.bias[hidden : 2 * hidden].fill_(1.0)  # gate order: i, f, o, g

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, C_in, H, W)`` -> hidden states ``(B, T, hidden, H, W)``."""
        b, t, c, h, w = x.shape
        gates_x = self.input_conv(x.reshape(b * t, c, h, w)).view(b, t, 4 * self.hidden, h, w)
        hid = x.new_zeros(b, self.hidden, h, w)
        cell = x.new_zeros(b, self.hidden, h, w)
        outs = []
        for step in range(t):  # the recurrence itself is sequential
            gates = gates_x[:, step] if step == 0 else gates_x[:, step] + self.hidden_conv(hid)
            i, f, o, g = gates.chunk(4, dim=1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            hid = torch.sigmoid(o) * torch.tanh(cell)
            outs.append(hid)
        return torch.stack(outs, dim=1)


class ConvLSTMPredictor(NextFrameModel):
    """Stacked ConvLSTM encoder over the last ``context`` frames + 1x1 conv head -> next frame.

    Works at any grid size (fully convolutional).

    Args:
        hidden: channels of every ConvLSTM layer.
        layers: number of stacked ConvLSTM layers.
        kernel: odd spatial kernel size of the gate convolutions.
        context: number of frames read by ``forward`` (``context_frames``).
        residual: predict the change from ``x_t``: ``clamp(x_t + head(h_t), 0, 1)`` with a straight-through
            gradient and a near-zero initial head (the untrained model is close to copy-last); otherwise
            ``sigmoid(head(h_t))``.
    """

    is_trainable = True

    def __init__(
        self, hidden: int = 32, layers: int = 2, kernel: int = 3, context: int = 8, residual: bool = True
    ):
        super().__init__()
        positive_int("layers", layers)
        self.context_frames = positive_int("context", context)
        self.residual = bool(residual)
        self.cells = nn.ModuleList(
            ConvLSTMCell(1 if i == 0 else hidden, hidden, kernel) for i in range(layers)
        )
        self.head = nn.Conv2d(hidden, 1, kernel_size=1)
        if self.residual:
            with torch.no_grad():
                self.head.weight.mul_(0.01)
                self.head.bias.zero_()

    def _encode(self, frames: Tensor) -> Tensor:
        """``frames (B, T, H, W)`` -> top-layer hidden states ``(B, T, hidden, H, W)``."""
        h = frames.unsqueeze(2)
        for cell in self.cells:
            h = cell(h)
        return h

    def _decode(self, hidden: Tensor, current: Tensor) -> Tensor:
        """``hidden (N, hidden, H, W)``, current frames ``(N, H, W)`` -> predicted next frames ``(N, H, W)``."""
        out = self.head(hidden).squeeze(1)
        if self.residual:
            return clamp01_straight_through(current + out)
        return torch.sigmoid(out)

    def forward(self, frames: Tensor) -> Tensor:
        """``frames (B, T, H, W)`` with ``T >= context`` -> prediction of the next frame ``(B, H, W)``.

        Equals ``forward_sequence(frames[:, -context:])[:, -1]``.
        """
        x = self.last_frames(frames)
        return self._decode(self._encode(x)[:, -1], x[:, -1])

    def forward_sequence(self, frames: Tensor, start: int = 0) -> Tensor:
        """One-step predictions after every prefix: ``frames (B, T, H, W)`` -> ``(B, T - start, H, W)``.

        Output ``[:, t - start]`` predicts frame ``t + 1`` from frames ``0 .. t`` only (causal by
        construction); the state starts at zero at frame 0, so early outputs have seen fewer than ``context``
        frames. ``start`` skips the head for the first outputs (the recurrence still runs over every frame).
        """
        x = check_frames(frames, 1)
        b, t, h, w = x.shape
        if not 0 <= start < t:
            raise ValueError(f"start must be in [0, {t}) for {t} frames; got {start}")
        hid = self._encode(x)[:, start:]
        n = t - start
        return self._decode(hid.reshape(b * n, -1, h, w), x[:, start:].reshape(b * n, h, w)).view(b, n, h, w)

    def extra_repr(self) -> str:
        return f"context={self.context_frames}, residual={self.residual}"
