"""Pattern generators against an independent numpy transcription of REFERENCE §1.12, plus parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from akira.data.fields.params import (
    PARAMS,
    PATTERNS,
    STRUCTURAL,
    default_params,
    sample_params,
    uniform_to_intervals,
)
from akira.data.fields.patterns import generate

# ----------------------------------------------------------------------- independent reference (numpy)


def _ref_frame(name: str, t: float, n: int, switch_period: int = 50) -> np.ndarray:
    """One frame of the reference formula, written from REFERENCE §1.12 with plain numpy (Y = rows)."""
    lin = np.linspace(0, 1, n)
    Y, X = np.meshgrid(lin, lin, indexing="ij")  # Y varies along rows, X along columns
    pi = np.pi

    def G(cx, cy, s):
        return np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s**2))

    def norm(f):
        return (f - f.min()) / (f.max() - f.min() + 1e-8)

    def s(tt, o):
        v = np.sin((tt + o) * 12.9898) * 43758.5453
        return v - np.floor(v)

    def blob(tt):
        th = 0.04 * pi * tt
        return G(0.5 + 0.3 * np.cos(th), 0.5 + 0.3 * np.sin(th), 0.1)

    def interference(tt):
        return ((np.sin(10 * X + 0.1 * tt) + np.sin(10 * Y + 0.07 * tt)) / 2 + 1) / 2

    if name == "blob":
        return blob(t)
    if name == "interference":
        return interference(t)
    if name == "switching":
        return blob(t) if int(np.floor(t / switch_period)) % 2 == 0 else interference(t)
    if name == "double_slit":
        f = np.zeros_like(X)
        for cx, cy in ((0.41, 0.2), (0.59, 0.2)):
            d = np.sqrt((X - cx) ** 2 + (Y - cy) ** 2) + 1e-3
            f += np.sin(35 * d - 0.12 * t) / d
        return norm(f)
    if name == "counter_rotate":
        th = 0.04 * pi * t
        a = G(0.5 + 0.25 * np.cos(th), 0.5 + 0.25 * np.sin(th), 0.08)
        b = G(0.5 + 0.25 * np.cos(th), 0.5 - 0.25 * np.sin(th), 0.08)
        return norm(a + b)
    if name == "chirp":
        ft = 3 + 0.015 * t
        return norm(np.sin(2 * pi * ft * X + 0.1 * t) + np.sin(2 * pi * 0.6 * ft * Y - 0.1 * t))
    if name == "phase_jump":
        jump = pi if int(np.floor(t / 40)) % 2 == 1 else 0.0
        return norm(np.sin(8 * pi * X + 0.08 * t + jump) + np.sin(8 * pi * Y - 0.08 * t - jump))
    if name == "noisy_motion":
        v = (s(t, 0.37) - 0.5) * 0.04
        th = t * (0.02 + v) * 2 * pi
        jx, jy = (s(t, 0.11) - 0.5) * 0.15, (s(t, 0.53) - 0.5) * 0.15
        main = G(0.5 + 0.28 * np.cos(th) + jx, 0.5 + 0.28 * np.sin(th) + jy, 0.1)
        th2 = (t - 1) * (0.02 + v) * 2 * pi
        trail = G(0.5 + 0.28 * np.cos(th2), 0.5 + 0.28 * np.sin(th2), 0.12)
        return norm(main + 0.4 * trail)
    if name == "bifurcation":
        base = blob(t)
        if (t % 60) / 60 < 0.5:
            return base
        o = 0.2 * (s(np.floor(t / 60), 0.77) - 0.5)
        return norm(base + 0.9 * G(0.5 + o, 0.5 - o, 0.08))
    if name == "wave_collision":
        return norm(np.sin(12 * X - 0.16 * pi * t) + np.sin(12 * (1 - X) - 0.16 * pi * t))
    if name == "concentric":
        d = np.sqrt((X - 0.5) ** 2 + (Y - 0.5) ** 2)
        ri = 0.15 + 0.1 * np.sin(0.06 * pi * t)
        ro = 0.35 + 0.15 * np.sin(0.06 * pi * t + pi)
        return norm(np.exp(-((d - ri) ** 2) / (2 * 0.04**2)) + 0.7 * np.exp(-((d - ro) ** 2) / (2 * 0.05**2)))
    raise KeyError(name)


# integer and non-integer times, block edges, t >= 10000 and large t
TIMES = [
    0.0,
    1.0,
    13.0,
    29.0,
    30.0,
    44.5,
    59.0,
    101.0,
    777.25,
    9999.0,
    10000.0,
    10001.0,
    10037.0,
    12345.75,
    54321.0,
]


def test_pattern_list():
    assert PATTERNS == (
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
    assert set(PARAMS) == set(PATTERNS)


@pytest.mark.parametrize("grid", [32, 64, 128])
@pytest.mark.parametrize("name", PATTERNS)
def test_matches_independent_reference(name, grid):
    t = torch.tensor(TIMES, dtype=torch.float64)
    got = generate(name, t, grid)
    assert got.shape == (len(TIMES), grid, grid) and got.dtype == torch.float32
    want = np.stack([_ref_frame(name, x, grid) for x in TIMES]).astype(np.float32)
    err = np.abs(got.numpy() - want).max()
    assert err <= 1e-6, f"{name} grid {grid}: max abs error {err}"
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


@pytest.mark.parametrize("period", [50, 101])
def test_switching_period(period):
    t = torch.arange(0, 4 * period, 7)
    got = generate("switching", t, 32, {"switch_period": period})
    want = np.stack([_ref_frame("switching", float(x), 32, period) for x in t]).astype(np.float32)
    assert np.abs(got.numpy() - want).max() <= 1e-6


def test_int_and_float_times_agree_and_noncontiguous_order():
    t = torch.tensor([10400, 3, 10000, 77, 5000])
    a = generate("noisy_motion", t, 32)
    b = generate("noisy_motion", t.double(), 32)
    assert torch.equal(a, b)
    # any time order, frames are a pure function of t
    c = generate("noisy_motion", t.flip(0), 32).flip(0)
    assert torch.equal(a, c)


@pytest.mark.parametrize("name", PATTERNS)
def test_explicit_defaults_are_bitwise_the_reference(name):
    t = torch.tensor([0, 17, 10000, 10123])
    assert torch.equal(generate(name, t, 32, default_params(name)), generate(name, t, 32))


@pytest.mark.parametrize("name", PATTERNS)
def test_per_row_params_equal_separate_scalar_calls(name):
    g = torch.Generator().manual_seed(3)
    n = 5
    params = sample_params(name, n, "heldout", g)
    t = torch.tensor([3, 10001, 250, 47, 99999])
    batched = generate(name, t, 32, params)
    for i in range(n):
        single = generate(name, t[i : i + 1], 32, {k: float(v[i]) for k, v in params.items()})
        assert torch.allclose(batched[i], single[0], atol=1e-6, rtol=0), (name, i)
    # clips: times (B, T) with one parameter set per clip (B, 1)
    times = t[:, None] + torch.arange(4)
    clips = generate(name, times, 32, {k: v[:, None] for k, v in params.items()})
    assert clips.shape == (n, 4, 32, 32)
    for i in range(n):
        single = generate(name, times[i], 32, {k: float(v[i]) for k, v in params.items()})
        assert torch.allclose(clips[i], single, atol=1e-6, rtol=0), (name, i)


@pytest.mark.parametrize("name", PATTERNS)
def test_parameters_change_the_frames(name):
    t = torch.tensor([10, 17, 123, 333, 4444, 10011, 10222, 10555])
    base = generate(name, t, 32)
    for key, spec in PARAMS[name].items():
        value = spec.heldout[0][0] + 0.5 * (spec.heldout[0][1] - spec.heldout[0][0])
        other = generate(name, t, 32, {key: value})
        assert (other - base).abs().max() > 1e-3, f"{name}.{key} has no effect"


@pytest.mark.parametrize(
    "name", ["blob", "interference", "counter_rotate", "double_slit", "wave_collision", "concentric"]
)
def test_speed_and_phase_semantics(name):
    # speed scales every temporal rate: frame(t; speed=2) == frame(2t); phase φ == time shift φ/ω
    t = torch.tensor([1.0, 10007.0, 20001.0], dtype=torch.float64)
    assert torch.allclose(generate(name, t, 32, {"speed": 2.0}), generate(name, 2 * t, 32), atol=1e-5)
    omega = {
        "blob": 0.04 * math.pi,
        "counter_rotate": 0.04 * math.pi,
        "double_slit": -0.12,
        "wave_collision": -0.16 * math.pi,
        "concentric": 0.06 * math.pi,
        "interference": None,
    }[name]
    if omega is not None:
        shifted = generate(name, t + 0.7 / omega, 32)
        assert torch.allclose(generate(name, t, 32, {"phase": 0.7}), shifted, atol=1e-5)


def test_ranges_are_disjoint_and_contain_default():
    for name, specs in PARAMS.items():
        for key, spec in specs.items():
            for lo, hi in spec.train + spec.heldout:
                assert lo < hi, (name, key)
            for a, b in spec.train:
                for c, d in spec.heldout:
                    assert b < c or d < a, f"{name}.{key}: train {(a, b)} overlaps heldout {(c, d)}"
            assert any(a <= spec.default <= b for a, b in spec.train), (name, key)
            assert not any(c <= spec.default <= d for c, d in spec.heldout), (name, key)
        assert not set(specs) & set(STRUCTURAL.get(name, {}))


@pytest.mark.parametrize("name", PATTERNS)
def test_sampled_params_stay_in_their_split(name):
    g = torch.Generator().manual_seed(0)
    for split, own, other in (("train", "train", "heldout"), ("heldout", "heldout", "train")):
        ps = sample_params(name, 2000, split, g)
        assert set(ps) == set(PARAMS[name])
        for key, v in ps.items():
            spec = PARAMS[name][key]
            assert v.shape == (2000,) and v.dtype == torch.float64
            inside = torch.zeros(2000, dtype=torch.bool)
            for lo, hi in getattr(spec, own):
                inside |= (v >= lo) & (v <= hi)
            assert bool(inside.all()), (name, key, split)
            for lo, hi in getattr(spec, other):
                assert not bool(((v >= lo) & (v <= hi)).any()), (name, key, split)


def test_uniform_to_intervals_covers_all_intervals_by_length():
    u = torch.rand(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = uniform_to_intervals(u, ((0.0, 1.0), (2.0, 5.0)))
    frac_second = float(((v >= 2) & (v <= 5)).double().mean())
    assert abs(frac_second - 0.75) < 0.02
    assert bool((((v >= 0) & (v <= 1)) | ((v >= 2) & (v <= 5))).all())


def _frames(name, t, params=None):
    return generate(name, t, 32, params).flatten(1).double()


def _gap(query, bank):
    """MSE from each query frame to its nearest frame in the bank."""
    return (torch.cdist(query, bank) ** 2 / query.shape[1]).min(1).values


@pytest.mark.parametrize("name", ["blob", "counter_rotate", "concentric", "double_slit"])
def test_heldout_frames_are_new_while_reference_frames_replay_training(name):
    g = torch.Generator().manual_seed(0)
    # the seed's "held-out" frames (t >= 10000, defaults) replay its training frames (t < 500)
    if name != "double_slit":
        replay = _gap(_frames(name, torch.arange(10000, 10010)), _frames(name, torch.arange(0, 500)))
        assert float(replay.max()) < 1e-9
    # frames of held-out streams are much farther from a bank of training frames (all phases) than fresh
    # training frames are: they are not in the training family
    n_bank, n = 4000, 32
    ptrain = sample_params(name, n_bank + n, "train", g)
    ptrain["phase"] = torch.rand(n_bank + n, generator=g, dtype=torch.float64) * 2 * math.pi
    train = _frames(name, torch.randint(0, 10000, (n_bank + n,), generator=g), ptrain)
    bank, fresh = train[:n_bank], train[n_bank:]
    held = _frames(name, torch.randint(10000, 15000, (n,), generator=g), sample_params(name, n, "heldout", g))
    held_gap, fresh_gap = _gap(held, bank), _gap(fresh, bank)
    assert float(held_gap.median()) > 4 * float(fresh_gap.median()), (held_gap.median(), fresh_gap.median())
    assert float(held_gap.min()) > 1e-5


def test_bad_input_names_the_key():
    t = torch.arange(3)
    with pytest.raises(ValueError, match=r"data\.pattern.*blob"):
        generate("blobb", t, 32)
    with pytest.raises(ValueError, match=r"params\.radiu"):
        generate("blob", t, 32, {"radiu": 0.2})
    with pytest.raises(ValueError, match=r"params\.radius"):
        generate("blob", t, 32, {"radius": torch.ones(4)})
    with pytest.raises(ValueError, match=r"params\.switch_period"):
        generate("blob", t, 32, {"switch_period": 101})
    with pytest.raises(ValueError, match=r"grid"):
        generate("blob", t, 1)
    with pytest.raises(ValueError, match=r"data\.pattern"):
        sample_params("nope", 3)
    with pytest.raises(ValueError, match=r"split"):
        sample_params("blob", 3, "test")
