"""Per-band linear patch embedding: the features of band ``b`` at a pixel are ``f = W_b p + c_b``.

``p`` is the ``k x k`` patch of the band's scalar around the pixel (replicate padding, ``k = kernel``),
``W_b: (D, k*k)``, ``c_b: (D,)``. This is exactly a per-band ``Conv2d(1 -> D, k)`` (one group per band);
``kernel = 1`` is the reference's per-band ``Linear(1 -> D)``. The default ``kernel = 3`` makes features
see local gradients/edges rather than being an affine image of one scalar.

Because ``f`` is affine in the ``k*k``-dim patch, every attention is computed *exactly* in patch space
(see :class:`~akira.models.fields.spectral.qkvo.QKVO`): keys and values are the ``k*k`` patch values and
``W_b, c_b`` are folded into the query and read-out maps, so the ``D``-dim features are never materialised
per key (``k*k = 9 < D`` for every preset; far less memory and compute, same function, same parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BandEmbedding", "patches", "unfold_same"]

_ONE_HOT: dict[tuple[int, int, str, torch.dtype], Tensor] = {}


def unfold_same(x: Tensor, kernel: int) -> Tensor:
    """``x (N, C, H, W)`` -> ``k x k`` neighbourhoods ``(N, C*k*k, H, W)`` with replicate padding.

    Same values and channel order (channel-major, then row-major offsets) as ``F.unfold`` on the padded
    input, computed as a grouped convolution with fixed one-hot kernels (several times faster on CPU).
    A pure copy of values, so it runs in float32 even under autocast (no rounding of the patches).
    """
    n, c, h, w = x.shape
    key = (c, kernel, str(x.device), x.dtype)
    if key not in _ONE_HOT:
        eye = torch.eye(kernel * kernel, dtype=x.dtype, device=x.device).view(
            kernel * kernel, 1, kernel, kernel
        )
        _ONE_HOT[key] = eye.repeat(c, 1, 1, 1)
    r = kernel // 2
    with torch.autocast(device_type=x.device.type, enabled=False):
        return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), _ONE_HOT[key], groups=c)


def patches(bands: Tensor, kernel: int) -> Tensor:
    """``bands (B, S, n, H, W)`` -> ``k x k`` patches ``(B, S, n, k*k, H, W)`` (replicate padding)."""
    b, s, n, h, w = bands.shape
    if kernel == 1:
        return bands.unsqueeze(3)
    return unfold_same(bands.reshape(b * s, n, h, w), kernel).view(b, s, n, kernel * kernel, h, w)


class BandEmbedding(nn.Module):
    """Per-band ``W_b (D, k*k)``, ``c_b (D,)``; see the module docstring. Initialised as ``nn.Conv2d``."""

    def __init__(self, n_bands: int, dim: int, kernel: int = 3):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"model.feature_kernel must be an odd positive integer; got {kernel}")
        self.n_bands, self.dim, self.kernel = n_bands, dim, kernel
        fan_in = kernel * kernel
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(n_bands, dim, fan_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_bands, dim).uniform_(-bound, bound))

    @property
    def patch_dim(self) -> int:
        return self.kernel * self.kernel

    def band(self, i: int) -> tuple[Tensor, Tensor]:
        """``(W_i (D, k*k), c_i (D,))`` of the ``i``-th embedded band."""
        return self.weight[i], self.bias[i]

    def features(self, patch: Tensor, i: int) -> Tensor:
        """Explicit features of band ``i``: ``patch (..., k*k)`` -> ``(..., D)`` (for tests/inspection)."""
        w, c = self.band(i)
        return patch @ w.t() + c

    def extra_repr(self) -> str:
        return f"n_bands={self.n_bands}, dim={self.dim}, kernel={self.kernel}"
