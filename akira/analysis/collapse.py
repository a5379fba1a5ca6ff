"""Belief-collapse metrics (experiment 034, REFERENCE §3) from causal attention probabilities, fixed.

For one layer, ``p`` is (..., S, S) with rows = queries q and columns = keys k <= q (rows sum to 1).
Definitions (per row q; natural logs):

- entropy ``H_q = -sum_k p log p``; normalised ``Hn_q = H_q / log(q + 1)`` in [0, 1] (the row has q + 1 keys,
  so early rows are not "collapsed" merely by having few keys). Row q = 0 is trivial (H = 0, all mass on key 0)
  and is excluded from every aggregate and reported separately.
- attention sink ``sink_q = p[q, 0]`` (q >= 1), compared with its uniform-attention value 1 / (q + 1).
- position-circle coherence: each row's own support is mapped onto a full circle,
  ``theta_qk = 2 pi k / (q + 1)``, ``z_q = sum_k p_qk exp(i theta_qk)``, ``R_q = |z_q|``: 0 for uniform
  attention over the row (fixes the causal half-circle bias), 1 for one-hot, and comparable across
  positions and sequence lengths (fixes the varying-N problem). ``R_nosink`` does the same on keys 1..q
  (renormalised, ``theta = 2 pi (k - 1) / q``, rows q >= 2) so a sink cannot make R ~ 1.
  Note: on the circle key q is next to key 0 (1 for the sink-free version).
- head synchronisation ``S_q = |sum_h z_hq| / sum_h |z_hq|`` in [0, 1]: agreement of the heads' mean
  attended positions, weighted by each head's concentration (heads with R ~ 0 have no defined phase and
  get no weight; the seed's unweighted mean of unit phasors does). Its chance level ``S_chance`` (same
  magnitudes, independent uniform phases) is estimated by Monte Carlo and reported beside it.
- collapse layer: the layer l >= 1 with the largest drop of mean normalised entropy from layer l - 1
  (i.e. the first layer *after* the drop; the seed reported the layer before it).
- logit lens: ``softmax(lm_head(ln_f(h_l)))`` for the embedding output and every block output; the final
  norm is applied exactly once (our hidden states are pre-``ln_f``), so the last entry is the model's output.
"""
from __future__ import annotations

import math

import numpy as np
import torch

TWO_PI = 2.0 * math.pi


def attention_entropy(p: torch.Tensor) -> torch.Tensor:
    """p (..., S, S) -> H (..., S) in nats per query row."""
    return -torch.special.xlogy(p, p).sum(-1)


def normalized_entropy(h: torch.Tensor) -> torch.Tensor:
    """H (..., S) -> H / log(q + 1) (..., S); NaN for the trivial row q = 0."""
    s = h.shape[-1]
    denom = torch.log(torch.arange(1, s + 1, dtype=h.dtype, device=h.device))
    return torch.where(denom > 0, h / denom.clamp_min(1e-30), torch.full_like(h, float("nan")))


def _angles(s: int, device, exclude_sink: bool) -> torch.Tensor:
    q = torch.arange(s, device=device, dtype=torch.float64)[:, None]
    k = torch.arange(s, device=device, dtype=torch.float64)[None, :]
    if exclude_sink:
        return TWO_PI * (k - 1) / q.clamp_min(1)
    return TWO_PI * k / (q + 1)


def circle_resultant(p: torch.Tensor, exclude_sink: bool = False) -> torch.Tensor:
    """Complex z (..., S) of each row on its own position circle (see module doc).

    exclude_sink: use keys 1..q renormalised; rows q < 2 or with no mass off key 0 give NaN.
    """
    s = p.shape[-1]
    theta = _angles(s, p.device, exclude_sink)
    w = p.double()
    if exclude_sink:
        rest = 1.0 - w[..., 0]
        w = w.clone()
        w[..., 0] = 0.0
        w = w / rest.clamp_min(1e-30)[..., None]
    z = torch.complex((w * torch.cos(theta)).sum(-1), (w * torch.sin(theta)).sum(-1))
    if exclude_sink:
        bad = (rest < 1e-6) | (torch.arange(s, device=p.device) < 2)
        z = torch.where(bad, torch.complex(torch.tensor(float("nan")), torch.tensor(float("nan"))).to(z), z)
    return z


def head_sync(z: torch.Tensor) -> torch.Tensor:
    """z (..., H, S) complex per head -> S (..., S) = |sum_h z| / sum_h |z| (NaN if all heads have R = 0 or are
    undefined). An undefined head (NaN, e.g. a pure sink head with the sink excluded) weighs nothing."""
    z = torch.where(torch.isnan(z.real) | torch.isnan(z.imag), torch.zeros_like(z), z)
    num, den = z.sum(-2).abs(), z.abs().sum(-2)
    return torch.where(den > 1e-12, num / den.clamp_min(1e-30), torch.full_like(den, float("nan")))


def head_sync_chance(z: torch.Tensor, n_draws: int = 32, seed: int = 0) -> torch.Tensor:
    """Expected `head_sync` with the same magnitudes |z_h| and independent uniform phases (Monte Carlo)."""
    mag = z.abs()
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand((n_draws, *mag.shape), generator=gen, dtype=torch.float64).to(mag.device) * TWO_PI
    zz = torch.polar(mag.unsqueeze(0).expand_as(phase).contiguous(), phase)
    return head_sync(zz).mean(0)


def collapse_layer(curve: np.ndarray) -> tuple[int | None, float]:
    """(layer l >= 1 with the largest drop curve[l-1] - curve[l], that drop); (None, largest change) if the
    curve never drops or has fewer than 2 layers."""
    c = np.asarray(curve, dtype=np.float64)
    if c.size < 2 or not np.isfinite(c).any():
        return None, float("nan")
    drops = c[:-1] - c[1:]
    i = int(np.nanargmax(drops))
    return (i + 1 if drops[i] > 0 else None), float(drops[i])


@torch.no_grad()
def layer_row_metrics(p: torch.Tensor, n_draws: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """All per-row metrics of one layer's attention p (B, H, S, S).

    Returns tensors: entropy, entropy_norm, sink, R, R_nosink (B, H, S); sync, sync_chance, sync_nosink,
    sync_nosink_chance (B, S). Row 0 (and row 1 for the sink-free versions) are NaN where undefined.
    """
    h = attention_entropy(p.double())
    z, z0 = circle_resultant(p, False), circle_resultant(p, True)
    return {"entropy": h, "entropy_norm": normalized_entropy(h), "sink": p[..., 0].double(),
            "R": z.abs(), "R_nosink": z0.abs(), "sync": head_sync(z), "sync_chance": head_sync_chance(z, n_draws, seed),
            "sync_nosink": head_sync(z0), "sync_nosink_chance": head_sync_chance(z0, n_draws, seed + 1)}


@torch.no_grad()
def logit_lens(model, idx: torch.Tensor, chunk_rows: int = 128) -> dict[str, torch.Tensor]:
    """Logit lens over the embedding output and every block output. idx (B, S) ->
    entropy, kl_to_final (KL(final || layer)), top1_agree: (L + 1, B, S); ``ln_f`` applied once per state."""
    hidden = model.forward_hidden(idx)                         # [(B, S, D)] * (L + 1), all pre-ln_f
    b, s, d = hidden[0].shape
    flat = torch.stack(hidden).reshape(len(hidden), b * s, d)
    ent = torch.empty(len(hidden), b * s, dtype=torch.float64)
    kl, agree = torch.empty_like(ent), torch.empty_like(ent)
    for start in range(0, b * s, chunk_rows):
        rows = flat[:, start:start + chunk_rows]
        logp = torch.log_softmax(model.lm_head(model.ln_f(rows)).float(), -1)   # (L+1, r, V)
        pf = logp[-1].exp()
        ent[:, start:start + rows.shape[1]] = -(logp.exp() * logp).sum(-1).double().cpu()
        kl[:, start:start + rows.shape[1]] = (pf * (logp[-1] - logp)).sum(-1).double().cpu()
        agree[:, start:start + rows.shape[1]] = (logp.argmax(-1) == logp[-1].argmax(-1)).double().cpu()
    shape = (len(hidden), b, s)
    return {"entropy": ent.view(shape), "kl_to_final": kl.view(shape), "top1_agree": agree.view(shape)}


def _nanmean(x: torch.Tensor, dims) -> torch.Tensor:
    return torch.nanmean(x, dim=dims)


@torch.no_grad()
def collapse_metrics(model, tokens: np.ndarray, batch_size: int = 8, device="cpu", n_draws: int = 32,
                     lens_chunk_rows: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-sequence aggregates over a probe tokens (N, S).

    Returns numpy arrays: per layer and head (N, L, H): entropy, entropy_norm, sink, R, R_nosink (means over
    the non-trivial rows of each sequence); per layer (N, L): sync, sync_chance, sync_nosink,
    sync_nosink_chance; lens (N, L + 1): lens_entropy, lens_kl, lens_top1; trivial rows (N, L, H):
    trivial_entropy, trivial_sink; and ``sink_uniform`` (scalar) = mean 1 / (q + 1) over rows q >= 1.
    """
    model = model.to(device).eval()
    per: dict[str, list] = {}
    for start in range(0, tokens.shape[0], batch_size):
        idx = torch.from_numpy(np.asarray(tokens[start:start + batch_size], dtype=np.int64)).to(device)
        _, probs = model.forward_with_attention(idx)
        out: dict[str, list] = {}
        for layer, p in enumerate(probs):
            m = layer_row_metrics(p.float().cpu(), n_draws, seed + 7919 * layer)
            for key in ("entropy", "entropy_norm", "sink", "R", "R_nosink"):
                vals = m[key][..., 1:]                                        # drop the trivial row 0
                out.setdefault(key, []).append(_nanmean(vals, -1))            # (b, H)
            for key in ("sync", "sync_chance", "sync_nosink", "sync_nosink_chance"):
                out.setdefault(key, []).append(_nanmean(m[key][..., 1:], -1))  # (b,)
            out.setdefault("trivial_entropy", []).append(m["entropy"][..., 0])
            out.setdefault("trivial_sink", []).append(m["sink"][..., 0])
        for key, vals in out.items():
            per.setdefault(key, []).append(torch.stack(vals, 1))               # (b, L, ...)
        lens = logit_lens(model, idx, lens_chunk_rows)
        for key, name in (("entropy", "lens_entropy"), ("kl_to_final", "lens_kl"), ("top1_agree", "lens_top1")):
            per.setdefault(name, []).append(lens[key].mean(-1).T)              # (b, L + 1)
    res = {k: torch.cat(v).double().cpu().numpy() for k, v in per.items()}
    s = tokens.shape[1]
    res["sink_uniform"] = np.asarray(np.mean(1.0 / np.arange(2, s + 1)))
    return res


def summarize_collapse(raw: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict:
    """Layer-level summary of `collapse_metrics` output, with bootstrap CIs over sequences.

    Returns ``layers`` [{metric: mean, metric_ci: [lo, hi]}], ``per_head`` {metric: (L, H)}, ``collapse``
    {layer, drop, drop_ci, sequences_agreeing}, ``lens`` {entropy, entropy_ci, kl_to_final, top1_agree:
    (L + 1,), labels}, ``trivial_rows`` and ``sink_uniform``.
    """
    from .stats import bootstrap_ci

    n, n_layers, _ = raw["entropy"].shape
    layers = []
    head_means = {k: np.nanmean(raw[k], axis=2) for k in ("entropy", "entropy_norm", "sink", "R", "R_nosink")}
    seq_vals = {**head_means, **{k: raw[k] for k in ("sync", "sync_chance", "sync_nosink", "sync_nosink_chance")}}
    seq_vals["sync_excess"] = raw["sync"] - raw["sync_chance"]
    seq_vals["sync_nosink_excess"] = raw["sync_nosink"] - raw["sync_nosink_chance"]
    for layer in range(n_layers):
        entry = {}
        for key, v in seq_vals.items():
            col = v[:, layer]
            entry[key] = float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")
            entry[f"{key}_ci"] = list(bootstrap_ci(col, n_boot=n_boot, seed=seed))
        layers.append(entry)
    curve = np.array([e["entropy_norm"] for e in layers])
    c_layer, drop = collapse_layer(curve)
    collapse = {"layer": c_layer, "drop": drop, "metric": "entropy_norm", "curve": curve.tolist()}
    if c_layer is not None:
        en = seq_vals["entropy_norm"]                              # (N, L)
        drops = en[:, :-1] - en[:, 1:]
        per_seq = np.nanargmax(np.where(np.isfinite(drops), drops, -np.inf), axis=1) + 1
        collapse["sequences_agreeing"] = float((per_seq == c_layer).mean())
        collapse["per_sequence_counts"] = np.bincount(per_seq, minlength=n_layers).tolist()
        collapse["drop_ci"] = list(bootstrap_ci(drops[:, c_layer - 1], n_boot=n_boot, seed=seed))
    lens = {"labels": ["embedding"] + [f"L{i}" for i in range(n_layers)]}
    for key, name in (("lens_entropy", "entropy"), ("lens_kl", "kl_to_final"), ("lens_top1", "top1_agree")):
        lens[name] = np.nanmean(raw[key], axis=0).tolist()
    lens["entropy_ci"] = [list(bootstrap_ci(raw["lens_entropy"][:, i], n_boot=n_boot, seed=seed))
                          for i in range(n_layers + 1)]
    return {"layers": layers,
            "per_head": {k: np.nanmean(raw[k], axis=0).tolist() for k in ("entropy_norm", "sink", "R", "R_nosink")},
            "collapse": collapse, "lens": lens,
            "trivial_rows": {"rows_per_sequence": 1, "entropy_mean": float(np.mean(raw["trivial_entropy"])),
                             "sink_mass_mean": float(np.mean(raw["trivial_sink"]))},
            "sink_uniform": float(raw["sink_uniform"]), "n_sequences": int(n)}
