"""Baseline next-frame models: copy-last, linear extrapolation and the reference's MLP (fixed).

Common interface of every next-frame model (see :class:`NextFrameModel`):
- ``forward(frames)``: ``frames (B, T, H, W)`` in [0, 1], most recent frame last (``frames[:, -1]`` is
  ``x_t``) -> prediction of ``x_{t+1}``, ``(B, H, W)``. Only the last ``context_frames`` frames are read;
  more may be passed.
- ``context_frames: int``: how many past frames (including ``x_t``) the model reads.
- ``is_trainable: bool``: False for parameter-free models.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "CopyLast",
    "LinearExtrapolation",
    "MLPPredictor",
    "NextFrameModel",
    "check_frames",
    "clamp01_straight_through",
    "positive_int",
    "count_parameters",
]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_frames(frames: Tensor, context_frames: int) -> Tensor:
    """Validate ``frames (B, T, H, W)`` (floating point, ``T >= context_frames``) and return it unchanged."""
    if not isinstance(frames, Tensor):
        raise ValueError(f"frames must be a torch.Tensor of shape (B, T, H, W); got {type(frames).__name__}")
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape (B, T, H, W); got shape {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(
            f"frames must be a floating-point tensor with values in [0, 1]; got dtype {frames.dtype}"
        )
    if frames.shape[1] < context_frames:
        raise ValueError(
            f"frames has T={frames.shape[1]} time steps; this model needs T >= context_frames={context_frames}"
        )
    return frames


class _ClampStraightThrough(torch.autograd.Function):
    """``clamp(x, 0, 1)`` in the forward pass, identity gradient in the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def clamp01_straight_through(x: Tensor) -> Tensor:
    """Clamp to [0, 1] exactly, but pass gradients through unchanged (so a saturated pixel still learns).

    With an MSE loss against a target in [0, 1] the surrogate gradient always points toward the target,
    and is zero where the clamped value equals it.
    """
    return _ClampStraightThrough.apply(x)


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int (not bool), else raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


class NextFrameModel(nn.Module):
    """Base class of next-frame models: ``(B, T, H, W) -> (B, H, W)``; see the module docstring."""

    context_frames: int = 1
    is_trainable: bool = True

    def last_frames(self, frames: Tensor) -> Tensor:
        """Validate ``frames (B, T, H, W)`` and return its last ``context_frames`` frames."""
        return check_frames(frames, self.context_frames)[:, -self.context_frames :]


class CopyLast(NextFrameModel):
    """Persistence: ``x_{t+1} = x_t``. Parameter-free; context 1."""

    context_frames = 1
    is_trainable = False

    def forward(self, frames: Tensor) -> Tensor:
        """``frames (B, T, H, W)`` -> ``(B, H, W)``, a copy of ``frames[:, -1]``."""
        return self.last_frames(frames)[:, -1].clone()


class LinearExtrapolation(NextFrameModel):
    """Constant-velocity extrapolation ``clamp(2 x_t - x_{t-1}, 0, 1)``. Parameter-free; context 2."""

    context_frames = 2
    is_trainable = False

    def forward(self, frames: Tensor) -> Tensor:
        """``frames (B, T, H, W)`` with ``T >= 2`` -> ``(B, H, W)``."""
        x = self.last_frames(frames)
        return (2.0 * x[:, -1] - x[:, -2]).clamp(0.0, 1.0)


class MLPPredictor(NextFrameModel):
    """The reference's MLP baseline (REFERENCE §1.9), fed the real last ``history`` frames.

    ``Linear(T*H*W -> h) -> ReLU -> Linear(h -> h) -> ReLU -> Linear(h -> H*W) -> sigmoid`` with
    ``T = history`` and ``h = min(512, T*H*W // 4)`` unless ``hidden`` is given. Unlike the reference there
    is no ring buffer and no noisy seeding: the caller supplies the frames ``x_{t-T+1} .. x_t``.
    With ``residual=True`` the last layer predicts a change ``delta`` and the output is
    ``clamp(x_t + delta, 0, 1)`` (straight-through gradient); its last layer starts near zero, so the
    untrained model is close to copy-last.

    Args:
        grid: frame side ``H = W`` (the MLP is tied to one grid size).
        history: number of frames read (including ``x_t``).
        hidden: hidden width ``h``; default ``min(512, T*H*W // 4)``.
        residual: predict ``x_t + delta`` instead of ``sigmoid(logits)``.
    """

    is_trainable = True

    def __init__(self, grid: int, history: int = 8, hidden: int | None = None, residual: bool = False):
        super().__init__()
        self.grid = positive_int("grid", grid)
        self.context_frames = positive_int("history", history)
        in_features = history * grid * grid
        if hidden is None:
            hidden = min(512, in_features // 4)
            if hidden < 1:
                raise ValueError(
                    f"hidden must be given when history*grid*grid < 4; got history={history}, grid={grid}"
                )
        self.hidden = positive_int("hidden", hidden)
        self.residual = bool(residual)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, grid * grid),
        )
        if self.residual:
            with torch.no_grad():
                self.net[-1].weight.mul_(0.01)
                self.net[-1].bias.zero_()

    @property
    def history(self) -> int:
        """Number of frames read (same as ``context_frames``)."""
        return self.context_frames

    def forward(self, frames: Tensor) -> Tensor:
        """``frames (B, T, H, W)`` with ``T >= history`` and ``H = W = grid`` -> ``(B, H, W)``."""
        x = self.last_frames(frames)
        b, t, h, w = x.shape
        if (h, w) != (self.grid, self.grid):
            raise ValueError(f"frames must have H = W = grid = {self.grid}; got H={h}, W={w}")
        out = self.net(x.reshape(b, t * h * w)).view(b, h, w)
        if self.residual:
            return clamp01_straight_through(x[:, -1] + out)
        return torch.sigmoid(out)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, history={self.history}, hidden={self.hidden}, residual={self.residual}"
