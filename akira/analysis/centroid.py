"""Spectral centroid of each unit's activation along the token axis (fixes REFERENCE §4.1 problems 1, 6, 7).

For a unit's activations x_t over one sequence (t = 0..S-1):
1. w = periodic Hann window, ``w_t = 0.5 - 0.5 cos(2 pi t / S)``;
2. remove the window-weighted mean, ``x' = x - sum(w x) / sum(w)``, so the windowed DC bin is exactly 0
   (the seed kept DC, so its centroid partly measured mean^2 / variance);
3. ``P_k = |rfft(w x')_k|^2``, k = 0..S/2, averaged over sequences;
4. ``c = sum_k f_k P_k / sum_k P_k`` with ``f_k = k / S`` cycles per token (NaN for a constant unit).

A pure sinusoid at an integer bin 2 <= k0 <= S/2 - 2 has centroid exactly k0 / S (Hann leaks symmetrically
into k0 +- 1); white noise has centroid ~ the mean of f over bins 1..S/2 (`white_noise_centroid`).
Centroids are computed on the *same* units whose AQ status is tested (model a's units).
"""
from __future__ import annotations

import numpy as np
import torch


def hann(s: int, dtype=torch.float64) -> torch.Tensor:
    """Periodic Hann window (S,)."""
    t = torch.arange(s, dtype=dtype)
    return 0.5 - 0.5 * torch.cos(2 * torch.pi * t / s)


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """x (N, S, U) -> summed power over sequences (S // 2 + 1, U) of the mean-removed, Hann-windowed signal."""
    x = x.double()
    s = x.shape[1]
    w = hann(s).to(x.device)[None, :, None]
    x = x - (w * x).sum(1, keepdim=True) / w.sum()
    return torch.fft.rfft(w * x, dim=1).abs().pow(2).sum(0)


def centroid_from_power(power: torch.Tensor, s: int) -> np.ndarray:
    """power (S // 2 + 1, U) -> centroid (U,) in cycles per token (NaN where the power is zero)."""
    f = torch.arange(power.shape[0], dtype=torch.float64, device=power.device) / s
    tot = power.sum(0)
    c = (f[:, None] * power).sum(0) / tot.clamp_min(1e-300)
    return torch.where(tot > 0, c, torch.full_like(c, float("nan"))).cpu().numpy()


def spectral_centroid(x) -> np.ndarray:
    """Centroid (U,) of activations x (N, S, U) (or (S,) / (S, U)) along the token axis S."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.dim() == 1:
        t = t[None, :, None]
    elif t.dim() == 2:
        t = t[None]
    return centroid_from_power(power_spectrum(t), t.shape[1])


def centroid_of_store(array: np.ndarray, chunk_seqs: int = 64, device="cpu") -> np.ndarray:
    """Centroid (U,) of a memmap (N, S, U), streamed over chunks of sequences."""
    n, s, _ = array.shape
    power = None
    for start in range(0, n, chunk_seqs):
        part = power_spectrum(torch.from_numpy(np.array(array[start:start + chunk_seqs], dtype=np.float32)).to(device))
        power = part if power is None else power + part
    return centroid_from_power(power, s)


def white_noise_centroid(s: int) -> float:
    """Centroid of the *expected* power spectrum of white noise under this estimator (exact):
    y = W (I - 1 w^T / sum w) x with cov(x) = I, so E P_k = sum_t |(F M)_kt|^2."""
    w = hann(s)
    m = torch.diag(w) @ (torch.eye(s, dtype=torch.float64) - torch.outer(torch.ones(s, dtype=torch.float64), w) / w.sum())
    power = torch.fft.rfft(m, dim=0).abs().pow(2).sum(1, keepdim=True)        # (S // 2 + 1, 1)
    return float(centroid_from_power(power, s)[0])


def centroid_analysis(stores: dict, sites: list[str], layers: list[int], bands: list[int] | None = None,
                      aq: dict | None = None, low_bands: list[int] | None = None, n_perm: int = 2000,
                      n_boot: int = 1000, chunk_seqs: int = 64, seed: int = 0, device="cpu") -> tuple[dict, dict]:
    """Centroids of model a's units (`stores`: {probe: ActivationStore}) and their comparisons.

    Per probe / site / layer: per-band mean centroid with bootstrap CI; trend with band index (Spearman,
    permutation p); between-band F (permutation p); low bands (``low_bands``) vs the rest (difference of
    means, permutation p, Cohen's d, bootstrap CI); with ``aq`` ({(probe, site, layer): bool mask}) AQ vs
    non-AQ units (difference, permutation p with labels permuted *within bands* so band composition cannot
    create the effect, Cohen's d, AUC, bootstrap CI). Every family of p-values is BH-adjusted across
    probes, sites and layers (``q_value``). Returns (summary, {(probe, site, layer): centroids (U,)}).
    """
    from .stats import (
        auc,
        bh_fdr,
        bootstrap_ci,
        bootstrap_diff_ci,
        center_within,
        cohens_d,
        group_permutation,
        permutation_test,
        spearman_permutation,
    )

    low = set(low_bands if low_bands is not None else (0, 1, 2))
    out: dict = {"white_noise_centroid": None, "probes": {}}
    tests: dict[str, list] = {}
    values: dict = {}
    for probe, store in stores.items():
        out["white_noise_centroid"] = white_noise_centroid(store.seq_len)
        out["probes"][probe] = {}
        for site in sites:
            unit_band = store.bands(site)
            keep_bands = sorted(set(unit_band.tolist())) if bands is None else list(bands)
            site_out = {}
            for layer in layers:
                c = centroid_of_store(store.load(site, layer), chunk_seqs, device)
                sel = np.isin(unit_band, keep_bands)
                cb, bb = c[sel], unit_band[sel]
                entry: dict = {"mean": float(np.nanmean(c)), "bands": {}}
                for b in keep_bands:
                    v = c[unit_band == b]
                    lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
                    entry["bands"][str(b)] = {"mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                                              "ci": [lo, hi], "n": int(np.isfinite(v).sum())}
                if len(keep_bands) >= 2:
                    entry["trend"] = spearman_permutation(bb, cb, n_perm, seed)
                    entry["between_bands"] = group_permutation(cb, bb, n_perm, seed)
                    is_low = np.isin(bb, sorted(low))
                    if is_low.any() and (~is_low).any():
                        t = permutation_test(cb, is_low, n_perm, seed)
                        t.update(cohens_d=cohens_d(cb[is_low], cb[~is_low]),
                                 ci=list(bootstrap_diff_ci(cb[is_low], cb[~is_low], n_boot, seed=seed)))
                        entry["low_vs_rest"] = t
                    tests.setdefault("trend", []).append(entry["trend"])
                    tests.setdefault("between_bands", []).append(entry["between_bands"])
                    if "low_vs_rest" in entry:
                        tests.setdefault("low_vs_rest", []).append(entry["low_vs_rest"])
                mask = None if aq is None else aq.get((probe, site, layer))
                if mask is not None:
                    m = np.asarray(mask, bool)[sel]
                    t = permutation_test(cb, m, n_perm, seed, strata=bb)
                    cc = center_within(cb, bb)   # the effect sizes, like the test, compare within bands
                    t.update(aq_mean=float(np.nanmean(cb[m])) if m.any() else float("nan"),
                             non_aq_mean=float(np.nanmean(cb[~m])) if (~m).any() else float("nan"),
                             cohens_d=cohens_d(cc[m], cc[~m]), auc=auc(cc[m], cc[~m]),
                             ci=list(bootstrap_diff_ci(cc[m], cc[~m], n_boot, seed=seed)),
                             stratified_by="band")
                    entry["aq_vs_non_aq"] = t
                    tests.setdefault("aq_vs_non_aq", []).append(t)
                site_out[str(layer)] = entry
                values[(probe, site, layer)] = c
            out["probes"][probe][site] = site_out
    for family in tests.values():
        ps = np.array([t.get("p_value", np.nan) for t in family], dtype=float)
        _, qs = bh_fdr(ps, 0.05) if np.isfinite(ps).any() else (None, ps)
        for t, qv in zip(family, qs):
            t["q_value"] = float(qv)
    for sites_d in out["probes"].values():        # across-layer summary per probe and site
        for layers_d in list(sites_d.values()):
            entries = list(layers_d.values())

            def col(test: str, field: str, entries=entries) -> np.ndarray:
                return np.array([e[test][field] for e in entries if test in e], dtype=float)

            summ = {"layers": len(entries)}
            for test, field in (("trend", "rho"), ("low_vs_rest", "statistic"), ("aq_vs_non_aq", "statistic")):
                v, q = col(test, field), col(test, "q_value")
                if v.size:
                    summ[f"{test}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                    summ[f"{test}_layers_q05"] = int((q < 0.05).sum())
            layers_d["summary"] = summ
    return out, values
