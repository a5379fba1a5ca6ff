"""Seed-vs-seed representation alignment: max-correlation vs a random-rotation null (universal-neurons
method), AQ candidates at a stated FDR, held-out orthogonal Procrustes, linear CKA.

Conventions: A is model a's activations (n, Ua), B model b's (n, Ub), rows = the same probe tokens.
Functions on data matrices (`linear_cka`, `orthogonal_procrustes`) have moment-based twins
(`cka_from_cov`, `procrustes_from_moments`) used on streamed statistics (`moments.PairMoments`).

AQ test (fixes REFERENCE §4.1 problems 3, 4 and 8):
1. ``m_i = max_j |corr(a_i, b_j)|`` (index-free: no permutation symmetry issue).
2. Null: the same statistic against K random orthogonal rotations of B's standardised neuron basis,
   ``m~_i^(k) = max_j |corr(a_i, (Z_b R_k)_j)|`` (Gurnee et al. 2024). Under H0 "b's basis is no more aligned
   with a_i than a random basis", m_i and the m~_i^(k) are exchangeable.
3. Per neuron, each value is standardised by the mean / std of K-1 *other* rotation values
   (leave-one-out, so the observed and every null score have the same distribution under H0); this removes
   the neuron's own baseline (how predictable it is from b's whole space). The null pool is all null scores
   of the layer (K x U values), one-sided empirical p-values, Benjamini-Hochberg across the family.
4. The null's expected count: the whole procedure applied with one rotation playing "observed" (averaged
   over replicates), i.e. what the test finds when nothing is shared.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .stats import bh_fdr, empirical_pvalues


# ------------------------------------------------------------------------------------------ basics
def haar_rotation(n: int, generator: torch.Generator, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A Haar-distributed random orthogonal matrix (n, n) (QR of a Gaussian with the sign fix)."""
    g = torch.randn(n, n, generator=generator, dtype=torch.float32).to(device, dtype)
    q, r = torch.linalg.qr(g)
    sign = torch.diagonal(r).sign()
    sign[sign == 0] = 1.0
    return (q * sign).to(dtype)


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def linear_cka(x, y) -> float:
    """Linear CKA of data matrices x (n, p), y (n, q): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).

    Invariant to orthogonal transforms and isotropic scaling of either side; CKA(X, X) = 1.
    """
    x, y = _as_tensor(x).double(), _as_tensor(y).double()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x/y: different numbers of rows ({x.shape[0]} vs {y.shape[0]})")
    x, y = x - x.mean(0), y - y.mean(0)
    return cka_from_cov(x.T @ x, y.T @ y, x.T @ y)


def cka_from_cov(c_aa, c_bb, c_ab) -> float:
    """Linear CKA from (co)variance matrices (any common normalisation): ||C_ab||^2 / (||C_aa|| ||C_bb||)."""
    c_aa, c_bb, c_ab = (_as_tensor(c).double() for c in (c_aa, c_bb, c_ab))
    den = torch.linalg.matrix_norm(c_aa) * torch.linalg.matrix_norm(c_bb)
    return float((c_ab.pow(2).sum() / den).item()) if den > 0 else float("nan")


def procrustes_from_cross(c_ab: torch.Tensor) -> torch.Tensor:
    """R = argmin_{R^T R = I} ||A R - B||_F given the cross product A^T B (d, d): R = U V^T."""
    u, _, vh = torch.linalg.svd(c_ab.double())
    return u @ vh


def orthogonal_procrustes(a, b) -> torch.Tensor:
    """Orthogonal R (d, d) minimising ||A R - B||_F for data a (n, d), b (n, d) (no centring)."""
    a, b = _as_tensor(a).double(), _as_tensor(b).double()
    if a.shape != b.shape:
        raise ValueError(f"a/b: Procrustes needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return procrustes_from_cross(a.T @ b)


def _procrustes_eval(r: torch.Tensor, c_aa: torch.Tensor, c_bb: torch.Tensor, c_ab: torch.Tensor) -> dict:
    """Quality of x -> x R on data with covariances C: relative error ||A R - B|| / ||B|| (centred) and
    per-dimension correlation corr((A R)_j, B_j) averaged over the dimensions with variance."""
    rca = r.T @ c_aa @ r
    cross = r.T @ c_ab                                   # cov((AR)_j, B_k) = (R^T C_ab)_jk
    err = torch.diagonal(rca).sum() - 2 * torch.diagonal(cross).sum() + torch.diagonal(c_bb).sum()
    tot = torch.diagonal(c_bb).sum()
    den = torch.sqrt(torch.diagonal(rca) * torch.diagonal(c_bb))
    ok = den > 1e-12 * den.max().clamp_min(1e-300)
    rho = torch.diagonal(cross)[ok] / den[ok]
    return {"rel_error": float(torch.sqrt(err.clamp_min(0) / tot)) if tot > 0 else float("nan"),
            "mean_corr": float(rho.mean()) if rho.numel() else float("nan"),
            "median_corr": float(rho.median()) if rho.numel() else float("nan")}


def procrustes_from_moments(fit, ev, idx_a=None, idx_b=None, standardize: bool = True) -> dict:
    """Orthogonal Procrustes A -> B fitted on the rows of ``fit`` and evaluated on the held-out rows of ``ev``
    (`PairMoments`), restricted to unit indices idx_a / idx_b (same length).

    standardize: z-score every unit with the *fit* rows' mean and std (dead units -> 0) before aligning.
    Returns held-out ``heldout`` and in-sample ``in_sample`` {rel_error, mean_corr, median_corr}, and the
    same two for a row-shuffled null (B's sequences mismatched, `PairMoments` null products) ``null_heldout``.
    """
    def sub(c, ia, ib):
        c = c if ia is None else c[ia]
        return c if ib is None else c[:, ib]

    ia = None if idx_a is None else torch.as_tensor(idx_a, device=fit.m_aa.device)
    ib = None if idx_b is None else torch.as_tensor(idx_b, device=fit.m_aa.device)
    fa, fb, fab, fab0 = sub(fit.cov_aa(), ia, ia), sub(fit.cov_bb(), ib, ib), sub(fit.cov_ab(), ia, ib), \
        sub(fit.cov_ab(null=True), ia, ib)
    if fa.shape != fb.shape:
        raise ValueError(f"idx_a/idx_b: Procrustes needs the same number of units, got {fa.shape[0]} and {fb.shape[0]}")
    if standardize:
        def scale(c):
            v = torch.diagonal(c)
            live = v > 1e-12 * v.max().clamp_min(1e-300)
            return torch.where(live, v.clamp_min(1e-300).rsqrt(), torch.zeros_like(v))
        sa, sb = scale(fa), scale(fb)
    else:
        sa = torch.ones(fa.shape[0], dtype=fa.dtype, device=fa.device)
        sb = torch.ones(fb.shape[0], dtype=fb.dtype, device=fb.device)

    def z(c, s1, s2):
        return s1[:, None] * c * s2[None, :]

    r = procrustes_from_cross(z(fab, sa, sb))
    r0 = procrustes_from_cross(z(fab0, sa, sb))
    ea, eb = z(sub(ev.cov_aa(), ia, ia), sa, sa), z(sub(ev.cov_bb(), ib, ib), sb, sb)
    eab, eab0 = z(sub(ev.cov_ab(), ia, ib), sa, sb), z(sub(ev.cov_ab(null=True), ia, ib), sa, sb)
    return {"heldout": _procrustes_eval(r, ea, eb, eab),
            "in_sample": _procrustes_eval(r, z(fa, sa, sa), z(fb, sb, sb), z(fab, sa, sb)),
            "null_heldout": _procrustes_eval(r0, ea, eb, eab0),
            "units": int(fa.shape[0]), "fit_rows": int(fit.n), "heldout_rows": int(ev.n)}


# ------------------------------------------------------------------------------------------ max-corr + null
def correlations(c_aa_diag: torch.Tensor, c_bb: torch.Tensor, c_ab: torch.Tensor):
    """(corr_ab (Ua, Ub), corr_bb (Ub, Ub), live_a (Ua,), live_b (Ub,)) from covariances; units with
    (relative) zero variance are not live and get zero correlations."""
    va, vb = c_aa_diag.double(), torch.diagonal(c_bb).double()
    live_a = va > 1e-12 * va.max().clamp_min(1e-300)
    live_b = vb > 1e-12 * vb.max().clamp_min(1e-300)
    sa = torch.where(live_a, va.clamp_min(1e-300).rsqrt(), torch.zeros_like(va))
    sb = torch.where(live_b, vb.clamp_min(1e-300).rsqrt(), torch.zeros_like(vb))
    return sa[:, None] * c_ab.double() * sb[None, :], sb[:, None] * c_bb.double() * sb[None, :], live_a, live_b


def max_corr_rotation_null(corr_ab: torch.Tensor, corr_bb: torch.Tensor, live_a: torch.Tensor,
                           live_b: torch.Tensor, n_rotations: int, seed: int = 0, abs_corr: bool = True,
                           device: str | torch.device = "cpu") -> dict:
    """Per neuron of A: observed max correlation with B's neurons and the same under K random rotations.

    corr_ab (Ua, Ub), corr_bb (Ub, Ub): correlation matrices; live_a/live_b (U,) bool. The rotation acts on
    B's standardised live units: corr(a_i, (Z_b R)_j) = (C R)_ij / sqrt((R^T K_bb R)_jj).
    Returns numpy ``observed`` (Ua,), ``null`` (K, Ua) (NaN for dead units of A), ``best`` (Ua,) index of
    the best-matching B unit (-1 if dead) and ``best_corr`` (Ua,) its signed correlation.
    """
    ua = corr_ab.shape[0]
    ib = torch.nonzero(live_b).flatten()
    if ib.numel() == 0:
        raise ValueError("activations: every unit of model b is constant on this probe; nothing to correlate")
    c = corr_ab[:, ib].to(device, torch.float32)
    kbb = corr_bb[ib][:, ib].to(device, torch.float32)
    obs, best_local = (c.abs() if abs_corr else c).max(1)
    best = ib.to(best_local.device)[best_local]
    best_corr = c.gather(1, best_local[:, None]).squeeze(1)
    gen = torch.Generator().manual_seed(int(seed))
    null = torch.empty(n_rotations, ua, dtype=torch.float32)
    n = ib.numel()
    for k in range(n_rotations):   # one rotation per iteration: O(U^3) matmuls, memory O(U^2)
        r = haar_rotation(n, gen, device)
        cr = c @ r
        var = (r * (kbb @ r)).sum(0).clamp_min(1e-12)
        rc = cr / var.sqrt()
        null[k] = (rc.abs() if abs_corr else rc).max(1).values.cpu()
    dead = ~live_a.cpu()
    obs, null = obs.double().cpu().numpy(), null.double().numpy()
    obs[dead.numpy()] = np.nan
    null[:, dead.numpy()] = np.nan
    best = best.cpu().numpy().astype(np.int64)
    best[dead.numpy()] = -1
    return {"observed": obs, "null": null, "best": best, "best_corr": best_corr.double().cpu().numpy()}


def loo_scores(observed: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out standardised scores. observed (U,), null (K, U), K >= 3.

    null score k: (x_k - mean of the other K-1) / std of the other K-1; observed: (x - mean) / std of the
    first K-1 null values, so under H0 all K+1 scores have the same distribution per neuron.
    Returns (t_obs (U,), t_null (K, U)); NaN where the std is zero or the neuron is dead.
    """
    k = null.shape[0]
    if k < 3:
        raise ValueError(f"n_rotations: need at least 3 rotations for standardised scores, got {k}")
    tot, tot2 = null.sum(0), (null ** 2).sum(0)
    m_loo = (tot[None] - null) / (k - 1)
    v_loo = ((tot2[None] - null ** 2) - (k - 1) * m_loo ** 2) / (k - 2)
    sd_loo = np.sqrt(np.clip(v_loo, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        t_null = np.where(sd_loo > 1e-12, (null - m_loo) / sd_loo, np.nan)
        ref = null[: k - 1]
        sd = ref.std(0, ddof=1)
        t_obs = np.where(sd > 1e-12, (observed - ref.mean(0)) / sd, np.nan)
    return t_obs, t_null


def aq_test(layers: list[dict], fdr: float = 0.05, n_replicates: int = 8) -> dict:
    """AQ candidates over a family of layers. ``layers``: outputs of `max_corr_rotation_null`.

    Per layer, p-values of the observed scores against that layer's pooled null scores; BH across every
    neuron of every layer at ``fdr``. Null replicates: rotation r plays "observed" (scored against the pool
    of the other rotations), BH over the family; their candidate masks estimate what the procedure finds
    with nothing shared.
    Returns per layer ``p`` (U,), ``q`` (U,) BH-adjusted, ``candidate`` (U,) bool, ``t`` (U,), ``excess`` (U,)
    = observed - mean null (Gurnee's excess), and ``null_candidates`` (R, U) bool.
    """
    scores = [loo_scores(layer["observed"], layer["null"]) for layer in layers]
    p_obs = [empirical_pvalues(t_obs, t_null) for t_obs, t_null in scores]
    sizes = np.cumsum([0] + [p.size for p in p_obs])
    reject, adjusted = bh_fdr(np.concatenate(p_obs), fdr) if sizes[-1] else (np.zeros(0, bool), np.zeros(0))
    k = min(layer["null"].shape[0] for layer in layers) if layers else 0
    n_rep = min(n_replicates, k)
    null_masks = [np.zeros((n_rep, p.size), dtype=bool) for p in p_obs]
    for r in range(n_rep):
        reps = []
        for _, t_null in scores:
            others = np.delete(t_null, r, axis=0)
            reps.append(empirical_pvalues(t_null[r], others))
        rej, _ = bh_fdr(np.concatenate(reps), fdr)
        for i in range(len(layers)):
            null_masks[i][r] = rej[sizes[i]:sizes[i + 1]]
    out = []
    for i, layer in enumerate(layers):
        with np.errstate(invalid="ignore"):
            excess = layer["observed"] - np.nanmean(layer["null"], axis=0) if layer["null"].size else layer["observed"]
        out.append({"p": p_obs[i], "q": adjusted[sizes[i]:sizes[i + 1]],
                    "candidate": reject[sizes[i]:sizes[i + 1]], "t": scores[i][0], "excess": excess,
                    "null_candidates": null_masks[i]})
    return {"layers": out, "fdr": fdr, "n_replicates": n_rep}


def min_rotations(fdr: float, n_layers: int = 1) -> int:
    """Smallest K for which a single unit's pooled p-value can pass BH: K * U null scores give p >= 1/(K U + 1),
    BH over a family of n_layers * U tests needs p <= fdr / (n_layers U), so K >= n_layers / fdr (with r units
    at the smallest p, K >= n_layers / (fdr r))."""
    return max(3, math.ceil(n_layers / fdr))
