"""Seed-vs-seed comparison of two activation stores (same architecture, same probe tokens).

For every probe, site and layer: streamed moments (fit rows = the first (1 - heldout_frac) of the
sequences, held-out rows = the rest, split by sequence so neighbouring tokens never straddle the split),
then max-correlation vs the rotation null, AQ candidates (BH across all layers of a probe and site), linear
CKA (all units and per band, with a row-shuffled null), held-out Procrustes (all units and per band, with
in-sample and row-shuffled-null numbers beside it), and universality (random-token vs text candidate sets)
against the hypergeometric chance overlap.
"""
from __future__ import annotations

import numpy as np
import torch

from .alignment import aq_test, cka_from_cov, correlations, max_corr_rotation_null, procrustes_from_moments
from .capture import ActivationStore, seq_chunks
from .moments import PairMoments
from .stats import hypergeom_overlap, summed_hypergeom_pvalue


def layer_moments(store_a: ActivationStore, store_b: ActivationStore, site: str, layer: int,
                  heldout_frac: float = 0.5, chunk_seqs: int = 32, device="cpu") -> tuple[PairMoments, PairMoments]:
    """(fit, held-out) `PairMoments` of one site/layer, streamed from the two memmaps."""
    if not np.array_equal(store_a.tokens, store_b.tokens):
        raise ValueError("activations: the two stores were captured on different probe tokens")
    xa, xb = store_a.load(site, layer), store_b.load(site, layer)
    n = store_a.n_seqs
    n_fit = int(round(n * (1.0 - heldout_frac)))
    fit, ev = PairMoments(device), PairMoments(device)
    for moments, (lo, hi) in [(fit, c) for c in seq_chunks(0, n_fit, chunk_seqs)] + \
                             [(ev, c) for c in seq_chunks(n_fit, n, chunk_seqs)]:
        moments.update(torch.from_numpy(np.array(xa[lo:hi], dtype=np.float32)),
                       torch.from_numpy(np.array(xb[lo:hi], dtype=np.float32)))
    return fit, ev


def _band_stats(mask: np.ndarray, tested: np.ndarray, null_masks: np.ndarray, excess: np.ndarray) -> dict:
    n_tested = int(tested.sum())
    n_cand = int(mask.sum())
    return {"n_units": int(mask.size), "n_tested": n_tested, "n_candidates": n_cand,
            "fraction": n_cand / n_tested if n_tested else float("nan"),
            "null_expected": float(null_masks.sum(1).mean()) if null_masks.size else float("nan"),
            "mean_excess": float(np.nanmean(excess)) if np.isfinite(excess).any() else float("nan")}


def compare_seeds(stores_a: dict[str, ActivationStore], stores_b: dict[str, ActivationStore], sites: list[str],
                  layers: list[int], bands: list[int] | None = None, fdr: float = 0.05, n_rotations: int = 32,
                  abs_corr: bool = True, null_replicates: int = 8, heldout_frac: float = 0.5,
                  standardize: bool = True, chunk_seqs: int = 32, device="cpu", seed: int = 0) -> tuple[dict, dict]:
    """Returns (summary, neurons). summary[probe][site] = {layers: {l: ...}, totals, bands}; plus
    summary["universality"][site] when both 'random' and 'text' probes are present. neurons[(probe, site,
    layer)] = per-unit arrays (observed, null_mean, p, q, candidate, best, best_corr, band, t)."""
    summary: dict = {}
    neurons: dict = {}
    for p_i, probe in enumerate(stores_a):
        summary[probe] = {}
        for s_i, site in enumerate(sites):
            unit_band = stores_a[probe].bands(site)
            band_ids = sorted(set(unit_band.tolist())) if bands is None else list(bands)
            raw = []
            for l_i, layer in enumerate(layers):
                fit, ev = layer_moments(stores_a[probe], stores_b[probe], site, layer, heldout_frac, chunk_seqs, device)
                allm = fit.merge(ev)
                caa, cbb, cab, cab0 = allm.cov_aa(), allm.cov_bb(), allm.cov_ab(), allm.cov_ab(null=True)
                corr_ab, corr_bb, live_a, live_b = correlations(torch.diagonal(caa), cbb, cab)
                mc = max_corr_rotation_null(corr_ab, corr_bb, live_a, live_b, n_rotations,
                                            seed + 1009 * p_i + 101 * s_i + l_i, abs_corr, device)
                # the whole procedure once more on the sequence-shuffled pairing (A and B independent, every
                # unit's own distribution kept): the rotation null assumes B's native basis is exchangeable with
                # rotated ones, which sparse (post-GELU) units break, so this count is the honest control
                corr_ab0 = correlations(torch.diagonal(caa), cbb, cab0)[0]
                mc0 = max_corr_rotation_null(corr_ab0, corr_bb, live_a, live_b, n_rotations,
                                             seed + 1009 * p_i + 101 * s_i + l_i, abs_corr, device)
                per_band = {}
                for b in band_ids:
                    idx = torch.as_tensor(np.nonzero(unit_band == b)[0], device=caa.device)
                    sub = (caa[idx][:, idx], cbb[idx][:, idx])
                    pr = procrustes_from_moments(fit, ev, idx, idx, standardize)
                    per_band[b] = {"cka": cka_from_cov(*sub, cab[idx][:, idx]),
                                   "cka_null": cka_from_cov(*sub, cab0[idx][:, idx]),
                                   "procrustes_heldout_corr": pr["heldout"]["mean_corr"],
                                   "procrustes_in_sample_corr": pr["in_sample"]["mean_corr"],
                                   "procrustes_null_corr": pr["null_heldout"]["mean_corr"],
                                   "procrustes_heldout_error": pr["heldout"]["rel_error"]}
                raw.append({"mc": mc, "mc_shuffled": mc0, "live": live_a.cpu().numpy(), "bands": per_band,
                            "cka": cka_from_cov(caa, cbb, cab), "cka_null": cka_from_cov(caa, cbb, cab0),
                            "procrustes": procrustes_from_moments(fit, ev, None, None, standardize),
                            "rows": int(allm.n)})
            test = aq_test([r["mc"] for r in raw], fdr, null_replicates)
            shuffled = aq_test([r["mc_shuffled"] for r in raw], fdr, 0)["layers"]
            layer_out, totals_band = {}, {b: {"n_tested": 0, "n_candidates": 0, "null_expected": 0.0,
                                              "shuffled_candidates": 0} for b in band_ids}
            for layer, r, t, t0 in zip(layers, raw, test["layers"], shuffled):
                cand, tested = t["candidate"], r["live"]
                best = r["mc"]["best"]
                same = (best >= 0) & (unit_band[np.clip(best, 0, None)] == unit_band)
                frac_b = np.bincount(unit_band, minlength=unit_band.max() + 1) / unit_band.size
                entry = _band_stats(cand, tested, t["null_candidates"], t["excess"])
                entry["shuffled_candidates"] = int(t0["candidate"].sum())
                entry.update({
                    "fdr_bound": fdr * entry["n_candidates"],
                    "mean_observed": float(np.nanmean(r["mc"]["observed"])),
                    "mean_null": float(np.nanmean(r["mc"]["null"])),
                    "same_band_fraction": float(same[cand].mean()) if cand.any() else float("nan"),
                    "same_band_chance": float((frac_b[unit_band[cand]]).mean()) if cand.any() else float("nan"),
                    "cka": r["cka"], "cka_null": r["cka_null"], "procrustes": r["procrustes"], "rows": r["rows"],
                    "bands": {}})
                for b in band_ids:
                    m = unit_band == b
                    be = _band_stats(cand[m], tested[m], t["null_candidates"][:, m], t["excess"][m])
                    be["shuffled_candidates"] = int(t0["candidate"][m].sum())
                    be.update(r["bands"][b])
                    entry["bands"][str(b)] = be
                    totals_band[b]["n_tested"] += be["n_tested"]
                    totals_band[b]["n_candidates"] += be["n_candidates"]
                    totals_band[b]["null_expected"] += be["null_expected"]
                    totals_band[b]["shuffled_candidates"] += be["shuffled_candidates"]
                layer_out[str(layer)] = entry
                neurons[(probe, site, layer)] = {
                    "observed": r["mc"]["observed"], "null_mean": np.nanmean(r["mc"]["null"], 0),
                    "p": t["p"], "q": t["q"], "candidate": cand, "t": t["t"], "best": best,
                    "best_corr": r["mc"]["best_corr"], "band": unit_band, "tested": tested}
            for tb in totals_band.values():
                tb["fraction"] = tb["n_candidates"] / tb["n_tested"] if tb["n_tested"] else float("nan")
            n_tested = sum(e["n_tested"] for e in layer_out.values())
            n_cand = sum(e["n_candidates"] for e in layer_out.values())
            summary[probe][site] = {
                "layers": layer_out, "bands": {str(b): v for b, v in totals_band.items()},
                "totals": {"n_tested": n_tested, "n_candidates": n_cand,
                           "fraction": n_cand / n_tested if n_tested else float("nan"),
                           "null_expected": sum(e["null_expected"] for e in layer_out.values()),
                           "shuffled_candidates": sum(e["shuffled_candidates"] for e in layer_out.values()),
                           "fdr": fdr, "n_rotations": n_rotations}}
    if "random" in stores_a and "text" in stores_a:
        summary["universality"] = universality(neurons, sites, layers, bands, seed)
    return summary, neurons


def universality(neurons: dict, sites: list[str], layers: list[int], bands: list[int] | None = None,
                 seed: int = 0) -> dict:
    """Overlap of the AQ candidate sets found on random tokens and on text, per site, layer and band, against
    independent draws (hypergeometric; the total over layers by simulation)."""
    out = {}
    for site in sites:
        per_layer, pops, n_as, n_bs, obs_total = {}, [], [], [], 0
        band_acc: dict = {}
        for layer in layers:
            r, t = neurons[("random", site, layer)], neurons[("text", site, layer)]
            both = r["tested"] & t["tested"]
            a, b = r["candidate"] & both, t["candidate"] & both
            entry = hypergeom_overlap(int(both.sum()), int(a.sum()), int(b.sum()), int((a & b).sum()))
            entry["bands"] = {}
            unit_band = r["band"]
            for bb in (sorted(set(unit_band.tolist())) if bands is None else bands):
                m = (unit_band == bb) & both
                eb = hypergeom_overlap(int(m.sum()), int((a & m).sum()), int((b & m).sum()), int((a & b & m).sum()))
                entry["bands"][str(bb)] = eb
                acc = band_acc.setdefault(str(bb), {"overlap": 0, "expected": 0.0, "n_a": 0, "n_b": 0})
                for k in ("overlap", "expected", "n_a", "n_b"):
                    acc[k] += eb[k]
            per_layer[str(layer)] = entry
            pops.append(entry["population"])
            n_as.append(entry["n_a"])
            n_bs.append(entry["n_b"])
            obs_total += entry["overlap"]
        expected = float(sum(e["expected"] for e in per_layer.values()))
        out[site] = {"layers": per_layer, "bands": band_acc,
                     "totals": {"overlap": obs_total, "expected": expected,
                                "ratio": obs_total / expected if expected else float("nan"),
                                "n_random": int(sum(n_as)), "n_text": int(sum(n_bs)),
                                "overlap_fraction_of_random": obs_total / sum(n_as) if sum(n_as) else float("nan"),
                                "p_value": summed_hypergeom_pvalue(pops, n_as, n_bs, obs_total, seed=seed)}}
    return out


def aq_masks(neurons: dict) -> dict:
    """{(probe, site, layer): candidate mask} from `compare_seeds`' neurons."""
    return {k: v["candidate"] for k, v in neurons.items()}


def save_neurons(path, neurons: dict) -> None:
    """Per-unit arrays to one .npz: keys '<probe>/<site>/L<layer>/<field>'."""
    flat = {f"{p}/{s}/L{layer}/{k}": np.asarray(v) for (p, s, layer), d in neurons.items() for k, v in d.items()}
    np.savez_compressed(path, **flat)
