"""Parameter table of the 11 synthetic field patterns: defaults, train ranges, disjoint held-out ranges.

Every pattern of REFERENCE §1.12 takes continuous parameters whose ``default`` reproduces the reference
formula exactly (see ``patterns.py`` for where each one enters the formula). ``train`` and ``heldout``
are unions of closed intervals; the ``unseen`` evaluation protocol draws every parameter of a stream
from ``heldout``, training draws from ``train``.

How the ranges are chosen (and why):

* **A time shift of a periodic pattern is not new.** ``blob``, ``counter_rotate`` and ``concentric``
  repeat every 50 / 50 / 33⅓ steps and most others are (quasi-)periodic, so the reference's "held-out"
  frames at t >= 10000 replay training frames (REFERENCE §1.15). A phase offset alone therefore cannot make
  a frame new. Novelty comes from the *shape* parameters (orbit ``radius``, Gaussian ``sigma``, ring
  radii and widths, ``wavenumber``, slit ``separation``, chirp ``rate``/``ratio``, jitter amplitude,
  branch width): a held-out stream draws all of them from ranges that no training stream uses, so its
  frames are not frames of any training stream (the blob centre, for instance, lies on a circle whose
  radius differs by >= 0.02 from every training orbit).
* **Same family and difficulty.** Each shape range is centred on the reference default and split in
  five equal cells, alternately ``train | heldout | train | heldout | train``; a guard of a quarter cell
  on each side of every interior edge keeps the two splits apart (minimum distance half a cell). The
  held-out cells interleave with the training cells, so held-out streams are interpolations inside the
  trained family (neither systematically sharper, faster nor larger), and the default lies in the
  central training cell (the ``reference`` protocol, which uses the defaults, is in-distribution).
* ``speed`` (multiplier of the temporal rates) uses the same interleaved cells on [0.7, 1.3]: held-out
  streams move at rates never trained on. ``phase`` (an angle added to the pattern's phase) uses disjoint
  sectors: train (-3π/8, 3π/8) around the default 0, held-out (5π/8, 11π/8); by itself it only moves the
  start of a stream.
* Structural settings that are not sampled (``switch_period`` of ``switching``) are in ``STRUCTURAL``.

``chirp`` caveat (kept exactly as in the reference): its spatial frequency ``3 + rate·t`` passes the
grid's Nyquist limit ``(grid-1)/2`` after a few hundred steps, so most frames, train and test alike, are
aliased; the ``ratio`` parameter (Y/X frequency ratio) changes the aliased family, so held-out frames are
still new.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

PATTERNS: tuple[str, ...] = (
    "blob",
    "interference",
    "switching",
    "double_slit",
    "counter_rotate",
    "chirp",
    "phase_jump",
    "noisy_motion",
    "bifurcation",
    "wave_collision",
    "concentric",
)
SPLITS: tuple[str, ...] = ("train", "heldout")

Interval = tuple[float, float]


@dataclass(frozen=True)
class ParamSpec:
    """One pattern parameter: reference ``default`` and disjoint ``train`` / ``heldout`` interval unions."""

    default: float
    train: tuple[Interval, ...]
    heldout: tuple[Interval, ...]
    doc: str = ""

    def ranges(self, split: str) -> tuple[Interval, ...]:
        check_split(split)
        return self.train if split == "train" else self.heldout


def _interleaved(default: float, half_span: float, doc: str) -> ParamSpec:
    """Five equal cells on [default - half_span, default + half_span]: train|heldout|train|heldout|train."""
    lo = default - half_span
    w = 2.0 * half_span / 5.0
    g = w / 4.0
    e = [lo + k * w for k in range(6)]
    train = ((e[0], e[1] - g), (e[2] + g, e[3] - g), (e[4] + g, e[5]))
    heldout = ((e[1] + g, e[2] - g), (e[3] + g, e[4] - g))
    return ParamSpec(default, train, heldout, doc)


def _phase() -> ParamSpec:
    p = math.pi
    return ParamSpec(
        0.0,
        ((-3 * p / 8, 3 * p / 8),),
        ((5 * p / 8, 11 * p / 8),),
        "angle (rad) added to the pattern's phase",
    )


def _speed() -> ParamSpec:
    return _interleaved(1.0, 0.3, "multiplier of the temporal (angular) rates")


_RADIUS = _interleaved(0.3, 0.1, "orbit radius of the blob centre")
_SIGMA = _interleaved(0.1, 0.04, "Gaussian width of the blob")

PARAMS: dict[str, dict[str, ParamSpec]] = {
    "blob": {"phase": _phase(), "speed": _speed(), "radius": _RADIUS, "sigma": _SIGMA},
    "interference": {
        "phase": _phase(),
        "speed": _speed(),
        "wavenumber": _interleaved(10.0, 3.0, "spatial angular frequency of both waves (rad/unit)"),
    },
    "switching": {
        "phase": _phase(),
        "speed": _speed(),
        "radius": _RADIUS,
        "sigma": _SIGMA,
        "wavenumber": _interleaved(10.0, 3.0, "wavenumber of the interference blocks"),
    },
    "double_slit": {
        "phase": _phase(),
        "speed": _speed(),
        "wavenumber": _interleaved(35.0, 10.0, "wavenumber of the circular waves (rad/unit)"),
        "separation": _interleaved(0.18, 0.06, "distance between the two sources (X)"),
    },
    "counter_rotate": {
        "phase": _phase(),
        "speed": _speed(),
        "radius": _interleaved(0.25, 0.08, "orbit radius of both blobs"),
        "sigma": _interleaved(0.08, 0.03, "Gaussian width of both blobs"),
    },
    "chirp": {
        "phase": _phase(),
        "speed": _speed(),
        "rate": _interleaved(0.015, 0.0045, "frequency growth per step (cycles/unit/step)"),
        "ratio": _interleaved(0.6, 0.15, "ratio of the Y to the X frequency"),
    },
    "phase_jump": {
        "phase": _phase(),
        "speed": _speed(),
        "wavenumber": _interleaved(8 * math.pi, 2 * math.pi, "wavenumber of both waves (rad/unit)"),
    },
    "noisy_motion": {
        "phase": _phase(),
        "speed": _speed(),
        "radius": _interleaved(0.28, 0.08, "orbit radius of blob and trail"),
        "sigma": _interleaved(0.1, 0.04, "Gaussian width of the blob (the trail keeps 0.12)"),
        "jitter": _interleaved(0.15, 0.1, "amplitude of the position jitter"),
    },
    "bifurcation": {
        "phase": _phase(),
        "speed": _speed(),
        "radius": _RADIUS,
        "sigma": _SIGMA,
        "branch_sigma": _interleaved(0.08, 0.03, "Gaussian width of the branch blob"),
    },
    "wave_collision": {
        "phase": _phase(),
        "speed": _speed(),
        "wavenumber": _interleaved(12.0, 4.0, "wavenumber of the two counter-propagating waves"),
    },
    "concentric": {
        "phase": _phase(),
        "speed": _speed(),
        "inner_radius": _interleaved(0.15, 0.05, "mean radius of the inner ring"),
        "outer_radius": _interleaved(0.35, 0.07, "mean radius of the outer ring"),
        "width_scale": _interleaved(1.0, 0.4, "multiplier of both ring widths (0.04, 0.05)"),
    },
}

# Settings a pattern accepts in ``generate(params=...)`` that are not sampled per stream.
STRUCTURAL: dict[str, dict[str, float]] = {"switching": {"switch_period": 50.0}}


def check_pattern(pattern: str) -> None:
    """Raise ``ValueError`` naming ``data.pattern`` unless ``pattern`` is one of ``PATTERNS``."""
    if pattern not in PATTERNS:
        raise ValueError(f"data.pattern: unknown pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def param_names(pattern: str) -> tuple[str, ...]:
    """Sampled parameter names of ``pattern`` in table order (= ``params_from_uniform``'s columns)."""
    check_pattern(pattern)
    return tuple(PARAMS[pattern])


def default_params(pattern: str) -> dict[str, float]:
    """Reference defaults of every parameter (sampled and structural) of ``pattern``."""
    check_pattern(pattern)
    out = {k: s.default for k, s in PARAMS[pattern].items()}
    out.update(STRUCTURAL.get(pattern, {}))
    return out


def uniform_to_intervals(u: Tensor, intervals: tuple[Interval, ...]) -> Tensor:
    """Map ``u`` in [0, 1) uniformly onto a union of disjoint intervals (measure-preserving). Shape kept."""
    lo = torch.tensor([a for a, _ in intervals], dtype=torch.float64)
    length = torch.tensor([b - a for a, b in intervals], dtype=torch.float64)
    cum = torch.cumsum(length, 0)
    x = u.to(torch.float64) * cum[-1]
    idx = torch.searchsorted(cum, x, right=True).clamp_(max=len(intervals) - 1)
    before = cum[idx] - length[idx]
    return lo[idx] + (x - before).clamp(min=0.0).minimum(length[idx])


def params_from_uniform(pattern: str, u: Tensor, split: str) -> dict[str, Tensor]:
    """Parameters from uniforms ``u`` ``(n, P)`` (columns in ``param_names`` order) -> ``{name: (n,)}``."""
    names = param_names(pattern)
    if u.dim() != 2 or u.shape[1] != len(names):
        raise ValueError(f"u: expected shape (n, {len(names)}) for pattern {pattern!r}, got {tuple(u.shape)}")
    specs = PARAMS[pattern]
    return {k: uniform_to_intervals(u[:, j], specs[k].ranges(split)) for j, k in enumerate(names)}


def sample_params(
    pattern: str, n: int, split: str = "train", generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Draw ``n`` parameter sets of ``pattern`` from the ``split`` ranges -> ``{name: float64 (n,)}``."""
    check_split(split)
    u = torch.rand((n, len(param_names(pattern))), generator=generator, dtype=torch.float64)
    return params_from_uniform(pattern, u, split)
