"""Band decomposition of the spectral 2D predictor: masks, FFT path, octave bands, normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from akira.models.fields.spectral.bands import BandDecomposition, band_names, octave_band_counts
from akira.models.fields.spectral.features import BandEmbedding, patches, unfold_same


def _reference_bands(x: torch.Tensor, cutoff=0.25, sharpness=10.0):
    """REFERENCE §1.3 verbatim: fftshift(fft2), centred integer radius / min(cy, cx), real(ifft2)."""
    h, w = x.shape[-2:]
    cy, cx = h // 2, w // 2
    yy, xx = torch.meshgrid(torch.arange(h) - cy, torch.arange(w) - cx, indexing="ij")
    rho = torch.sqrt(xx.double() ** 2 + yy.double() ** 2) / min(cy, cx)
    m_low = torch.sigmoid(sharpness * (cutoff - rho))
    f = torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1))
    low = torch.fft.ifft2(torch.fft.ifftshift(f * m_low, dim=(-2, -1))).real
    high = torch.fft.ifft2(torch.fft.ifftshift(f * (1 - m_low), dim=(-2, -1))).real
    return low, high


def _minmax(b):
    lo = b.amin(dim=(-2, -1), keepdim=True)
    hi = b.amax(dim=(-2, -1), keepdim=True)
    return (b - lo) / (hi - lo + 1e-8)


@pytest.mark.parametrize("shape", [(16, 16), (15, 17), (8, 12)])
def test_low_high_match_reference_formula(shape):
    torch.manual_seed(0)
    x = torch.rand(2, 3, *shape)
    bands, energy = BandDecomposition(("intensity", "low", "high"), normalize=False)(x)
    low, high = _reference_bands(x)
    assert bands.shape == (2, 3, 3, *shape) and bands.dtype == torch.float32
    torch.testing.assert_close(bands[:, :, 0], x)
    torch.testing.assert_close(bands[:, :, 1].double(), low, atol=1e-5, rtol=0)
    torch.testing.assert_close(bands[:, :, 2].double(), high, atol=1e-5, rtol=0)
    torch.testing.assert_close(energy[1].double(), low.pow(2).mean(), atol=1e-6, rtol=1e-4)
    # normalised (reference default): spectral bands in [0, 1] per frame, intensity untouched
    normed, _ = BandDecomposition(("low", "intensity"), normalize=True)(x)
    torch.testing.assert_close(normed[:, :, 0].double(), _minmax(low), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed[:, :, 1], x)


def test_soft_mask_values_match_reference_table():
    bd = BandDecomposition(("low",))
    m = bd.masks(64, 64, torch.device("cpu"))[0]  # unshifted half spectrum; rho = j / 32 along row 0
    for rho, expected in [(0.0, 0.924), (0.25, 0.5), (0.5, 0.076), (1.0, 0.0006)]:
        assert m[0, int(rho * 32)].item() == pytest.approx(expected, abs=6e-4)
    assert (
        bd.masks(64, 64, torch.device("cpu")).data_ptr() == bd.masks(64, 64, torch.device("cpu")).data_ptr()
    )


def test_fft_runs_in_fp32_under_autocast():
    x = torch.rand(1, 2, 16, 16)
    bd = BandDecomposition(("intensity", "low"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bands, _ = bd(x)
    assert bands.dtype == torch.float32
    torch.testing.assert_close(bands, bd(x)[0])


def test_octave_bands_partition_spectrum():
    torch.manual_seed(1)
    x = torch.rand(1, 2, 32, 32)
    names = tuple(f"band_{k}" for k in range(4))
    bands, _ = BandDecomposition(names, n_bands=4, normalize=False)(x)
    torch.testing.assert_close(bands.sum(2), x, atol=1e-5, rtol=0)  # hard masks sum to one
    # band_0 holds the DC component: its mean equals the frame mean; higher bands have zero mean
    torch.testing.assert_close(bands[:, :, 0].mean((-2, -1)), x.mean((-2, -1)), atol=1e-6, rtol=0)
    assert bands[:, :, 1:].mean((-2, -1)).abs().max() < 1e-6
    assert band_names(2) == ("intensity", "low", "high", "band_0", "band_1")


def test_octave_band_grid_condition():
    # band k (k >= 1) spans [2^(k-n), 2^(k-n+1)) in rho; it needs a frequency with |k| in that range:
    # with c = grid // 2 this holds iff c > 2^(n-2), e.g. 6 bands need grid >= 34, 8 bands grid >= 130
    assert min(octave_band_counts(5, 32, 32)) > 0
    assert min(octave_band_counts(6, 32, 32)) == 0
    assert min(octave_band_counts(7, 128, 128)) > 0
    assert min(octave_band_counts(8, 128, 128)) == 0
    bd = BandDecomposition(("band_0",), n_bands=6)
    with pytest.raises(ValueError, match=r"model\.n_bands=6 needs grid >= 34.*model\.n_bands <= 5"):
        bd(torch.rand(1, 1, 32, 32))


def test_unknown_band_is_rejected():
    with pytest.raises(ValueError, match="allowed: intensity, low, high"):
        BandDecomposition(("mid",))


def test_patches_and_embedding_equal_a_grouped_conv():
    torch.manual_seed(2)
    bands = torch.rand(2, 3, 2, 9, 7)
    for k in (1, 3, 5):
        emb = BandEmbedding(2, 6, kernel=k)
        conv = torch.nn.Conv2d(2, 12, k, padding=k // 2, groups=2, padding_mode="replicate")
        with torch.no_grad():
            conv.weight.copy_(emb.weight.view(12, 1, k, k))
            conv.bias.copy_(emb.bias.view(12))
        ref = conv(bands.view(6, 2, 9, 7)).view(2, 3, 2, 6, 9, 7)
        pt = patches(bands, k)  # (B, S, n, k*k, H, W)
        for i in range(2):
            got = emb.features(pt[:, :, i].movedim(2, -1), i).movedim(-1, 2)
            torch.testing.assert_close(got, ref[:, :, i], atol=1e-5, rtol=0)
    x = torch.rand(3, 4, 6, 5)
    ref = torch.nn.functional.unfold(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3)
    torch.testing.assert_close(unfold_same(x, 3).flatten(2), ref)
    assert math.isclose(float(unfold_same(x, 3)[0, 4, 2, 3]), float(x[0, 0, 2, 3]))  # centre offset
