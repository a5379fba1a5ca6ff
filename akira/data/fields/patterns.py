"""The 11 synthetic 2D field patterns of REFERENCE §1.12 as pure functions of time, vectorized.

``generate(pattern, t, grid, params)`` returns frames ``(*t.shape, grid, grid)`` float32 in [0, 1]. Any
frame is a pure function of ``(pattern, params, t, grid)``: there is no state and no loop over frames.

Conventions (the reference's): coordinates are ``linspace(0, 1, grid)`` with both endpoints; ``Y`` is
the row coordinate (axis -2) and ``X`` the column coordinate (axis -1), i.e. ``frame[i, j]`` sits at
``(X, Y) = (j, i) / (grid - 1)``. ``G(cx, cy, σ) = exp(-((X-cx)² + (Y-cy)²) / (2σ²))``;
``norm(f) = (f - min f) / (max f - min f + 1e-8)`` per frame; hash noise
``s(t, o) = frac(sin((t + o)·12.9898)·43758.5453)`` with ``frac(v) = v - floor(v)``.
Everything is computed in float64 and cast to float32 at the end.

Parameters (``params.py`` holds defaults and ranges; the defaults give the reference formulas):
``phase`` φ is added to the pattern's phase, ``speed`` s multiplies its temporal rates.
Per pattern (``s`` = speed, ``ω = 0.04π·s``):

* ``blob``: ``G(0.5 + r cos θ, 0.5 + r sin θ, σ)``, ``θ = ωt + φ`` (not normalised).
* ``interference``: ``((sin(kX + 0.1st + φ) + sin(kY + 0.07st + φ))/2 + 1)/2``.
* ``switching``: ``blob`` if ``⌊t/P⌋ mod 2 == 0`` else ``interference`` (P = ``switch_period``, default 50).
* ``double_slit``: ``norm(Σ_c sin(k d_c − 0.12st + φ)/d_c)``, sources ``c = (0.5 ∓ sep/2, 0.2)``,
  ``d_c = ‖(X,Y) − c‖ + 1e-3``.
* ``counter_rotate``: ``norm(G(0.5 + r cos θ, 0.5 + r sin θ, σ) + G(0.5 + r cos θ, 0.5 − r sin θ, σ))``,
  ``θ = ωt + φ``.
* ``chirp``: ``f = 3 + rate·t``; ``norm(sin(2πfX + 0.1st + φ) + sin(2π·ratio·fY − 0.1st − φ))``.
* ``phase_jump``: ``J = π·(⌊t/40⌋ mod 2)``; ``norm(sin(kX + 0.08st + J + φ) + sin(kY − 0.08st − J − φ))``.
* ``noisy_motion``: ``v = (s(t,.37) − .5)·.04``; ``θ = t(0.02s + v)2π + φ``, ``θ' = (t−1)(0.02s + v)2π + φ``;
  jitter ``jx = j·(s(t,.11) − .5)``, ``jy = j·(s(t,.53) − .5)``;
  ``norm(G(.5 + r cos θ + jx, .5 + r sin θ + jy, σ) + 0.4 G(.5 + r cos θ', .5 + r sin θ', 0.12))``.
* ``bifurcation``: ``b = blob``; if ``(t mod 60)/60 < 0.5``: ``b`` (not normalised), else
  ``o = 0.2(s(⌊t/60⌋, .77) − .5)`` and ``norm(b + 0.9 G(.5 + o, .5 − o, σ_b))``.
* ``wave_collision``: ``norm(sin(kX − 0.16πst + φ) + sin(k(1 − X) − 0.16πst + φ))``.
* ``concentric``: ``d = ‖(X,Y) − (.5,.5)‖``; ``r_i = R_i + 0.1 sin(0.06πst + φ)``,
  ``r_o = R_o + 0.15 sin(0.06πst + φ + π)``;
  ``norm(exp(−(d − r_i)²/(2(0.04w)²)) + 0.7 exp(−(d − r_o)²/(2(0.05w)²)))``.

Defaults: r=0.3, σ=0.1 (blob, switching, bifurcation); k=10 (interference, switching), 35 (double_slit),
8π (phase_jump), 12 (wave_collision); sep=0.18; counter_rotate r=0.25, σ=0.08; rate=0.015, ratio=0.6;
noisy_motion r=0.28, σ=0.1, j=0.15; σ_b=0.08; R_i=0.15, R_o=0.35, w=1; φ=0, s=1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache

import torch
from torch import Tensor

from akira.data.fields.params import PARAMS, PATTERNS, STRUCTURAL, check_pattern, default_params

__all__ = ["PATTERNS", "generate", "hash_noise", "coordinates"]

F64 = torch.float64
PI = math.pi


@lru_cache(maxsize=16)
def coordinates(grid: int) -> tuple[Tensor, Tensor]:
    """``(X, Y)`` float64 of shapes ``(1, grid)`` (column coordinate) and ``(grid, 1)`` (row coordinate)."""
    lin = torch.linspace(0.0, 1.0, grid, dtype=F64)
    return lin.view(1, grid), lin.view(grid, 1)


def hash_noise(t: Tensor, offset: float) -> Tensor:
    """``s(t, o) = frac(sin((t + o)·12.9898)·43758.5453)`` in [0, 1), elementwise, float64."""
    v = torch.sin((t + offset) * 12.9898) * 43758.5453
    return v - torch.floor(v)


# Each generator computes in float64 and writes its last full-size operation straight into ``out``
# (float32, ``(*S, H, W)``); separable patterns never build a float64 full-size array.


def _norm(f: Tensor, out: Tensor) -> Tensor:
    """``out = norm(f)``: per-frame min-max normalisation over the last two axes."""
    mn = f.amin(dim=(-2, -1), keepdim=True)
    scale = 1 / (f.amax(dim=(-2, -1), keepdim=True) - mn + 1e-8)
    return torch.addcmul(-mn * scale, f, scale, out=out)


def _norm_sum(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """``out = norm(a + b)`` for ``a`` ``(..., 1, W)``, ``b`` ``(..., H, 1)`` (min/max from the factors)."""
    mn = a.amin(-1, keepdim=True) + b.amin(-2, keepdim=True)
    scale = 1 / (a.amax(-1, keepdim=True) + b.amax(-2, keepdim=True) - mn + 1e-8)
    return torch.add((a - mn) * scale, b * scale, out=out)


def _norm_prod(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """``out = norm(a * b)`` for non-negative ``a`` ``(..., 1, W)``, ``b`` ``(..., H, 1)``."""
    mn = a.amin(-1, keepdim=True) * b.amin(-2, keepdim=True)
    scale = 1 / (a.amax(-1, keepdim=True) * b.amax(-2, keepdim=True) - mn + 1e-8)
    return torch.addcmul(-mn * scale, a * scale, b, out=out)


def _gauss_factors(X: Tensor, Y: Tensor, cx: Tensor, cy: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Factors of ``G(cx, cy, σ) = gx * gy``: ``gx`` ``(..., 1, W)``, ``gy`` ``(..., H, 1)``."""
    two_s2 = 2 * sigma**2
    return torch.exp(-((X - cx) ** 2) / two_s2), torch.exp(-((Y - cy) ** 2) / two_s2)


def _blob_factors(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    theta = 0.04 * PI * p["speed"] * t + p["phase"]
    r = p["radius"]
    return _gauss_factors(X, Y, 0.5 + r * torch.cos(theta), 0.5 + r * torch.sin(theta), p["sigma"])


def _interference_terms(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    """``interference = a + b``: ``a = sin(kX + 0.1st + φ)/4 + 1/2`` (..., 1, W), b (..., H, 1)."""
    k, s, ph = p["wavenumber"], p["speed"], p["phase"]
    return torch.sin(k * X + 0.1 * s * t + ph) / 4 + 0.5, torch.sin(k * Y + 0.07 * s * t + ph) / 4


def _blob(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    gx, gy = _blob_factors(t, p, X, Y)
    return torch.mul(gx, gy, out=out)


def _interference(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    a, b = _interference_terms(t, p, X, Y)
    return torch.add(a, b, out=out)


def _switching(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    # blob frames are 0 + gx * gy, interference frames a + 1 * b: select the small factors, one full op
    is_blob = torch.remainder(torch.floor(t / p["switch_period"]), 2) == 0
    gx, gy = _blob_factors(t, p, X, Y)
    a, b = _interference_terms(t, p, X, Y)
    c, f, g = torch.where(is_blob, 0.0, a), torch.where(is_blob, gx, 1.0), torch.where(is_blob, gy, b)
    return torch.addcmul(c, f, g, out=out)


def _double_slit(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    k, half = p["wavenumber"], p["separation"] / 2
    psi = 0.12 * p["speed"] * t - p["phase"]  # the field is Σ_c sin(k d_c − ψ) / d_c
    d = [torch.sqrt((X - (0.5 + sgn * half)) ** 2 + (Y - 0.2) ** 2) + 1e-3 for sgn in (-1.0, 1.0)]
    if 2 * d[0].numel() <= out.numel():
        # spatial part shared by several frames: sin(kd − ψ) = sin(kd) cos ψ − cos(kd) sin ψ
        a = torch.sin(k * d[0]) / d[0] + torch.sin(k * d[1]) / d[1]
        b = torch.cos(k * d[0]) / d[0] + torch.cos(k * d[1]) / d[1]
        f = (a * torch.cos(psi)).addcmul_(b, torch.sin(psi), value=-1)
    else:
        f = torch.sin(k * d[0] - psi) / d[0] + torch.sin(k * d[1] - psi) / d[1]
    return _norm(f, out)


def _counter_rotate(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    theta = 0.04 * PI * p["speed"] * t + p["phase"]
    r, sigma = p["radius"], p["sigma"]
    cx, dy = 0.5 + r * torch.cos(theta), r * torch.sin(theta)
    gx, gy1 = _gauss_factors(X, Y, cx, 0.5 + dy, sigma)
    _, gy2 = _gauss_factors(X, Y, cx, 0.5 - dy, sigma)
    return _norm_prod(gx, gy1 + gy2, out)


def _chirp(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    f = 3 + p["rate"] * t
    w = 0.1 * p["speed"] * t + p["phase"]
    return _norm_sum(torch.sin(2 * PI * f * X + w), torch.sin(2 * PI * p["ratio"] * f * Y - w), out)


def _phase_jump(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    jump = PI * torch.remainder(torch.floor(t / 40), 2)
    w = 0.08 * p["speed"] * t
    k, ph = p["wavenumber"], p["phase"]
    return _norm_sum(torch.sin(k * X + w + jump + ph), torch.sin(k * Y - w - jump - ph), out)


def _noisy_motion(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    v = (hash_noise(t, 0.37) - 0.5) * 0.04
    rate = (0.02 * p["speed"] + v) * 2 * PI
    theta, theta_prev = t * rate + p["phase"], (t - 1) * rate + p["phase"]
    jx = (hash_noise(t, 0.11) - 0.5) * p["jitter"]
    jy = (hash_noise(t, 0.53) - 0.5) * p["jitter"]
    r = p["radius"]
    bx, by = _gauss_factors(
        X, Y, 0.5 + r * torch.cos(theta) + jx, 0.5 + r * torch.sin(theta) + jy, p["sigma"]
    )
    trail_sigma = torch.tensor(0.12, dtype=F64)
    tx, ty = _gauss_factors(
        X, Y, 0.5 + r * torch.cos(theta_prev), 0.5 + r * torch.sin(theta_prev), trail_sigma
    )
    return _norm((bx * by).addcmul_(0.4 * tx, ty), out)


def _bifurcation(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    # first half of each 60-step block: the unnormalised blob; second half: norm(blob + 0.9 G_branch)
    branch = torch.remainder(t, 60) / 60 >= 0.5
    gx, gy = _blob_factors(t, p, X, Y)
    o = 0.2 * (hash_noise(torch.floor(t / 60), 0.77) - 0.5)
    hx, hy = _gauss_factors(X, Y, 0.5 + o, 0.5 - o, p["branch_sigma"])
    f = (gx * gy).addcmul_(torch.where(branch, 0.9 * hx, 0.0), hy)
    mn = torch.where(branch, f.amin(dim=(-2, -1), keepdim=True), 0.0)
    scale = torch.where(branch, 1 / (f.amax(dim=(-2, -1), keepdim=True) - mn + 1e-8), 1.0)
    return torch.addcmul(-mn * scale, f, scale, out=out)


def _wave_collision(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    k = p["wavenumber"]
    w = 0.16 * PI * p["speed"] * t - p["phase"]
    f = torch.sin(k * X - w) + torch.sin(k * (1 - X) - w)  # (..., 1, W): depends on X only
    mn = f.amin(-1, keepdim=True)
    scale = 1 / (f.amax(-1, keepdim=True) - mn + 1e-8)
    return out.copy_(torch.addcmul(-mn * scale, f, scale).expand_as(out))


@lru_cache(maxsize=16)
def _radii(grid: int) -> tuple[Tensor, Tensor]:
    """Distinct distances to the centre ``(U,)`` and the index map ``(grid, grid)`` into them."""
    X, Y = coordinates(grid)
    d, index = torch.unique(torch.sqrt((X - 0.5) ** 2 + (Y - 0.5) ** 2), return_inverse=True)
    return d, index


def _concentric(t: Tensor, p: dict[str, Tensor], X: Tensor, Y: Tensor, out: Tensor) -> Tensor:
    # radial: evaluate on the distinct distances (..., 1, U), normalise there, then gather to (..., H, W)
    d, index = _radii(X.shape[-1])
    w = 0.06 * PI * p["speed"] * t + p["phase"]
    r_in = p["inner_radius"] + 0.1 * torch.sin(w)
    r_out = p["outer_radius"] + 0.15 * torch.sin(w + PI)
    wi, wo = 0.04 * p["width_scale"], 0.05 * p["width_scale"]
    f = torch.exp(-((d - r_in) ** 2) / (2 * wi**2)) + 0.7 * torch.exp(-((d - r_out) ** 2) / (2 * wo**2))
    mn = f.amin(-1, keepdim=True)
    scale = 1 / (f.amax(-1, keepdim=True) - mn + 1e-8)
    profile = torch.addcmul(-mn * scale, f, scale).to(torch.float32)[..., 0, :]  # (*S, U)
    return out.copy_(profile[..., index])


_GENERATORS: dict[str, Callable[[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor], Tensor]] = {
    "blob": _blob,
    "interference": _interference,
    "switching": _switching,
    "double_slit": _double_slit,
    "counter_rotate": _counter_rotate,
    "chirp": _chirp,
    "phase_jump": _phase_jump,
    "noisy_motion": _noisy_motion,
    "bifurcation": _bifurcation,
    "wave_collision": _wave_collision,
    "concentric": _concentric,
}
assert tuple(_GENERATORS) == PATTERNS


def _resolve_params(
    pattern: str, params: Mapping[str, Tensor | float] | None, shape: torch.Size
) -> dict[str, Tensor]:
    """Defaults overridden by ``params``; each float64, broadcastable to ``shape``, viewed ``(..., 1, 1)``."""
    merged: dict[str, Tensor | float] = dict(default_params(pattern))
    allowed = tuple(PARAMS[pattern]) + tuple(STRUCTURAL.get(pattern, {}))
    for key, value in (params or {}).items():
        if key not in merged:
            raise ValueError(
                f"params.{key}: unknown parameter for pattern {pattern!r}; allowed: {', '.join(allowed)}"
            )
        merged[key] = value
    out: dict[str, Tensor] = {}
    for key, value in merged.items():
        v = torch.as_tensor(value, dtype=F64)
        try:
            ok = torch.broadcast_shapes(v.shape, shape) == shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"params.{key}: shape {tuple(v.shape)} does not broadcast to the times' shape {tuple(shape)}"
            )
        out[key] = v[..., None, None]
    return out


def generate(
    pattern: str, t: Tensor, grid: int, params: Mapping[str, Tensor | float] | None = None
) -> Tensor:
    """Frames of ``pattern`` at times ``t``.

    Args:
        pattern: one of ``PATTERNS``.
        t: times, shape ``(N,)`` (or any shape ``S``), int or float, any values, in any order.
        grid: side length of the square frame (>= 2).
        params: overrides of the defaults in ``params.PARAMS[pattern]`` (plus ``switch_period`` for
            ``switching``); each a float or a tensor broadcastable to ``S`` (e.g. ``(N,)``: one parameter
            set per row; or ``(B, 1)`` with ``t`` of shape ``(B, T)``: one set per clip).

    Returns:
        ``(*S, grid, grid)`` float32 in [0, 1]; ``[..., i, j]`` is at row ``Y = i/(grid-1)``, column
        ``X = j/(grid-1)``.
    """
    check_pattern(pattern)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid: must be an int >= 2, got {grid!r}")
    t = torch.as_tensor(t)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"t: must be a real int or float tensor, got dtype {t.dtype}")
    t64 = t.to(F64)
    p = _resolve_params(pattern, params, t64.shape)
    X, Y = coordinates(grid)
    out = torch.empty(*t64.shape, grid, grid, dtype=torch.float32)
    _GENERATORS[pattern](t64[..., None, None], p, X, Y, out)
    # rounding of (a·b - c)-style expressions can leave values a few ulps outside [0, 1]
    return out.clamp_(0.0, 1.0)
