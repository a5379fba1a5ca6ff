"""Spectral band decomposition of frames: intensity, soft low/high split and optional octave bands.

Band names: ``intensity`` (the frame itself), ``low`` and ``high`` (soft radial split of the 2D spectrum,
REFERENCE §1.3) and, with ``n_bands = n > 0``, ``band_0 .. band_{n-1}`` (hard radial octave bands,
``band_0`` the lowest). Radii are normalised as in the reference: ``rho = |k| / min(H // 2, W // 2)`` on
centred integer frequencies, so ``rho = 1`` is the Nyquist frequency along the shorter axis.

- ``low = Re ifft2(m * fft2(x))`` with ``m = sigmoid(sharpness * (cutoff - rho))``; ``high`` uses ``1 - m``.
- Octave band ``k`` keeps ``e_k <= rho < e_{k+1}`` with edges ``e_0 = 0``, ``e_k = 2^(k - n)`` for
  ``0 < k < n`` and ``e_n = inf`` (the top band also holds the corners, rho up to ~1.41); the n masks sum
  to one.
- Optionally (reference behaviour, on by default) every spectral band is min-max normalised per frame to
  [0, 1]; ``intensity`` is never normalised.

FFTs run in float32 even under autocast (``rfft2``/``irfft2``: the radial masks are symmetric, so this
equals the real part of the full complex transform). Masks are cached per (grid, device).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["BASE_BANDS", "BandDecomposition", "band_names", "check_band", "octave_band_counts"]

BASE_BANDS: tuple[str, ...] = ("intensity", "low", "high")


def band_names(n_bands: int = 0) -> tuple[str, ...]:
    """All band names available with ``n_bands`` octave bands."""
    return BASE_BANDS + tuple(f"band_{k}" for k in range(n_bands))


def check_band(key: str, value: object, n_bands: int) -> str:
    """Return ``value`` if it names an available band, else raise ValueError naming ``key``."""
    allowed = band_names(n_bands)
    if value not in allowed:
        raise ValueError(
            f"{key}={value!r} is not a band; allowed: {', '.join(allowed)} (model.n_bands={n_bands})"
        )
    return str(value)


def _radius(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Normalised radial frequency ``rho (H, W)`` in fft2's (unshifted) order."""
    cy, cx = h // 2, w // 2
    if min(cy, cx) < 1:
        raise ValueError(f"frames must be at least 2x2 for the FFT bands; got H={h}, W={w}")
    y = torch.fft.ifftshift(torch.arange(h, device=device, dtype=torch.float32) - cy)
    x = torch.fft.ifftshift(torch.arange(w, device=device, dtype=torch.float32) - cx)
    return torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2) / min(cy, cx)


def _octave_edges(n_bands: int) -> list[float]:
    return [0.0] + [2.0 ** (k - n_bands) for k in range(1, n_bands)] + [math.inf]


def octave_band_counts(n_bands: int, h: int, w: int) -> list[int]:
    """Number of frequency bins in each octave band at grid ``h x w``."""
    rho = _radius(h, w)
    edges = _octave_edges(n_bands)
    return [int(((rho >= lo) & (rho < hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]


def _min_square_grid(n_bands: int) -> int:
    """Smallest even square grid at which all ``n_bands`` octave bands are non-empty."""
    g = 4
    while min(octave_band_counts(n_bands, g, g)) == 0:
        g += 2
    return g


def check_octave_bands(n_bands: int, h: int, w: int) -> None:
    """Raise ValueError naming ``model.n_bands`` if an octave band is empty at ``h x w``."""
    if n_bands <= 0:
        return
    counts = octave_band_counts(n_bands, h, w)
    if min(counts) == 0:
        max_ok = (
            max(n for n in range(1, n_bands) if min(octave_band_counts(n, h, w)) > 0) if n_bands > 1 else 0
        )
        raise ValueError(
            f"model.n_bands={n_bands} needs grid >= {_min_square_grid(n_bands)} (octave band "
            f"band_{counts.index(0)} is empty at {h}x{w}); allowed at this grid: model.n_bands <= {max_ok}"
        )


class BandDecomposition(nn.Module):
    """Compute the requested bands of frames: ``(B, S, H, W) -> (B, S, n, H, W)`` in float32.

    Args:
        names: bands to compute, in output order (any of :func:`band_names`).
        n_bands: number of octave bands available (0: none).
        cutoff: soft low/high cutoff on ``rho`` (reference 0.25).
        sharpness: slope of the soft mask (reference 10).
        normalize: min-max normalise every spectral band per frame (reference behaviour).
    """

    def __init__(
        self,
        names: tuple[str, ...],
        n_bands: int = 0,
        cutoff: float = 0.25,
        sharpness: float = 10.0,
        normalize: bool = True,
    ):
        super().__init__()
        for name in names:
            check_band("model band", name, n_bands)
        self.names = tuple(names)
        self.n_bands = n_bands
        self.cutoff = float(cutoff)
        self.sharpness = float(sharpness)
        self.normalize = bool(normalize)
        self.spectral = tuple(n for n in self.names if n != "intensity")
        self._masks: dict[tuple[int, int, str], Tensor] = {}
        # position of each requested band in cat([intensity, spectral bands in self.spectral order])
        order = [0 if n == "intensity" else 1 + self.spectral.index(n) for n in self.names]
        self.register_buffer("_order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer(
            "_is_spectral", torch.tensor([n != "intensity" for n in self.names]), persistent=False
        )

    def masks(self, h: int, w: int, device: torch.device) -> Tensor:
        """Half-spectrum masks ``(n_spectral, H, W // 2 + 1)`` of the spectral bands (cached)."""
        key = (h, w, str(device))
        if key not in self._masks:
            check_octave_bands(self.n_bands, h, w)
            rho = _radius(h, w, device)
            low = torch.sigmoid(self.sharpness * (self.cutoff - rho))
            edges = _octave_edges(self.n_bands)
            out = []
            for name in self.spectral:  # build-time, once per grid
                if name == "low":
                    out.append(low)
                elif name == "high":
                    out.append(1.0 - low)
                else:
                    k = int(name.split("_")[1])
                    out.append(((rho >= edges[k]) & (rho < edges[k + 1])).float())
            self._masks[key] = torch.stack(out)[..., : w // 2 + 1].contiguous()
        return self._masks[key]

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``frames (B, S, H, W)`` -> ``bands (B, S, n, H, W)`` float32 and ``energy (n,)``.

        ``energy`` is the mean square of each band before normalisation (for statistics).
        """
        b, s, h, w = frames.shape
        with torch.autocast(device_type=frames.device.type, enabled=False):
            x = frames.float()
            if self.spectral:
                spec = torch.fft.rfft2(x)  # (B, S, H, W//2+1)
                m = self.masks(h, w, x.device)
                sp = torch.fft.irfft2(spec.unsqueeze(2) * m, s=(h, w))  # (B, S, n_spectral, H, W)
                stacked = torch.cat([x.unsqueeze(2), sp], dim=2)  # intensity first, then spectral
                bands = stacked.index_select(2, self._order.to(x.device))
            else:
                bands = x.unsqueeze(2)
            energy = bands.detach().pow(2).mean(dim=(0, 1, 3, 4))
            if self.normalize and self.spectral:
                lo = bands.amin(dim=(-2, -1), keepdim=True)
                hi = bands.amax(dim=(-2, -1), keepdim=True)
                normed = (bands - lo) / (hi - lo + 1e-8)
                bands = torch.where(self._is_spectral[:, None, None], normed, bands)
        return bands, energy

    def extra_repr(self) -> str:
        return (
            f"names={self.names}, n_bands={self.n_bands}, cutoff={self.cutoff}, "
            f"sharpness={self.sharpness}, normalize={self.normalize}"
        )
