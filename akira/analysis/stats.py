"""Statistics for the analyses: empirical p-values, Benjamini-Hochberg FDR, permutation tests (optionally
stratified), effect sizes, bootstrap confidence intervals, hypergeometric overlap.

All functions are pure numpy/scipy, vectorised over permutations/resamples (processed in blocks so memory
stays bounded), and take an explicit ``seed`` so results are reproducible.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_BLOCK = 256  # permutations / bootstrap resamples per vectorised block


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------ p-values / FDR
def empirical_pvalues(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided p-values ``P(null >= observed)`` with the +1 correction: ``(1 + #{null >= x}) / (1 + n)``.

    observed: any shape; null: 1-D pool of null statistics (NaNs dropped). NaN observations give NaN.
    """
    pool = np.sort(np.asarray(null, dtype=np.float64).ravel())
    pool = pool[np.isfinite(pool)]
    if pool.size == 0:
        raise ValueError("null: empty null distribution")
    obs = np.asarray(observed, dtype=np.float64)
    ge = pool.size - np.searchsorted(pool, obs, side="left")
    p = (1.0 + ge) / (1.0 + pool.size)
    return np.where(np.isfinite(obs), p, np.nan)


def bh_fdr(pvalues: np.ndarray, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg step-up procedure at false-discovery rate ``q``.

    pvalues: any shape (NaN = not tested). Returns (rejected bool, BH-adjusted p-values) of the same shape;
    the family is every finite p-value passed in.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"fdr: must be in (0, 1), got {q}")
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    ok = np.isfinite(flat)
    m = int(ok.sum())
    adjusted = np.full(flat.shape, np.nan)
    reject = np.zeros(flat.shape, dtype=bool)
    if m:
        vals = flat[ok]
        order = np.argsort(vals, kind="stable")
        ranked = vals[order] * m / np.arange(1, m + 1)
        adj = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
        out = np.empty(m)
        out[order] = adj
        adjusted[ok] = out
        passed = np.nonzero(vals[order] <= q * np.arange(1, m + 1) / m)[0]
        if passed.size:
            rej = np.zeros(m, dtype=bool)
            rej[order[: passed[-1] + 1]] = True
            reject[ok] = rej
    return reject.reshape(p.shape), adjusted.reshape(p.shape)


# ------------------------------------------------------------------------------------------ effect sizes
def _finite(x: np.ndarray) -> np.ndarray:
    """x as float without its NaN/inf entries (e.g. a dead unit's undefined centroid)."""
    x = np.asarray(x, float).ravel()
    return x[np.isfinite(x)]


def center_within(values: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """values minus the mean of their stratum (over finite values; non-finite entries stay as they are).
    A difference of means of these is the within-stratum difference, free of how the groups fill the strata."""
    v = np.asarray(values, float).copy()
    st = np.asarray(strata)
    ok = np.isfinite(v)
    for s in np.unique(st[ok]):
        sel = ok & (st == s)
        v[sel] -= v[sel].mean()
    return v


def cohens_d(x: np.ndarray, y: np.ndarray) -> float:
    """(mean x - mean y) / pooled standard deviation over the finite values (NaN when undefined)."""
    x, y = _finite(x), _finite(y)
    nx, ny = x.size, y.size
    if nx < 2 or ny < 2:
        return float("nan")
    pooled = ((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2)
    return float((x.mean() - y.mean()) / math.sqrt(pooled)) if pooled > 0 else float("nan")


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 (the Mann-Whitney U / (nx ny)) over the finite values; 0.5 = no difference."""
    from scipy.stats import rankdata

    x, y = _finite(x), _finite(y)
    if x.size == 0 or y.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([x, y]))
    u = ranks[: x.size].sum() - x.size * (x.size + 1) / 2
    return float(u / (x.size * y.size))


# ------------------------------------------------------------------------------------------ permutation tests
def _permuted_blocks(n: int, n_perm: int, rng: np.random.Generator, strata: np.ndarray | None):
    """Yield index arrays (b, n): random permutations of range(n), within ``strata`` when given."""
    if strata is not None:
        order = np.argsort(strata, kind="stable")
        key = np.unique(strata[order], return_inverse=True)[1].astype(np.float64) * 2.0
    done = 0
    while done < n_perm:
        b = min(_BLOCK, n_perm - done)
        if strata is None:
            yield np.argsort(rng.random((b, n)), axis=1)
        else:  # sort by (stratum, random): permutes positions only inside each stratum
            within = np.argsort(key[None, :] + rng.random((b, n)), axis=1)
            perm = np.empty((b, n), dtype=np.int64)
            perm[:, order] = order[within]
            yield perm
        done += b


def permutation_test(values: np.ndarray, labels: np.ndarray, n_perm: int = 2000, seed: int = 0,
                     strata: np.ndarray | None = None, alternative: str = "two-sided") -> dict:
    """Difference of means ``mean(values[labels]) - mean(values[~labels])`` against label permutations.

    values (n,) float; labels (n,) bool; strata (n,) optional group ids: labels are permuted only within
    groups and the values are centred within them first (`center_within`), so the statistic is the
    within-stratum difference and its permutation null is centred at 0 (without the centring the null sits at
    the effect of how the labels fill the strata, and a two-sided test cannot see an effect of the other sign).
    alternative: two-sided | greater | less.
    Returns statistic, p_value ((1 + #extreme) / (1 + n_perm)), n_perm, n_true, n_false.
    """
    v = np.asarray(values, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    keep = np.isfinite(v)
    v, lab = v[keep], lab[keep]
    st = None if strata is None else np.asarray(strata)[keep]
    if st is not None:
        v = center_within(v, st)
    n1, n0 = int(lab.sum()), int((~lab).sum())
    out = {"statistic": float("nan"), "p_value": float("nan"), "n_perm": int(n_perm), "n_true": n1, "n_false": n0}
    if n1 == 0 or n0 == 0:
        return out
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative: must be two-sided, greater or less, got {alternative!r}")

    def diff(lbl: np.ndarray) -> np.ndarray:  # lbl (..., n) bool
        s1 = (lbl * v).sum(-1)
        return s1 / n1 - (v.sum() - s1) / n0

    obs = float(diff(lab))
    rng = _rng(seed)
    extreme = 0
    for perm in _permuted_blocks(v.size, n_perm, rng, st):
        null = diff(lab[perm])
        if alternative == "two-sided":
            extreme += int((np.abs(null) >= abs(obs) - 1e-12).sum())
        elif alternative == "greater":
            extreme += int((null >= obs - 1e-12).sum())
        else:
            extreme += int((null <= obs + 1e-12).sum())
    out.update(statistic=obs, p_value=(1 + extreme) / (1 + n_perm))
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman_permutation(x: np.ndarray, y: np.ndarray, n_perm: int = 2000, seed: int = 0) -> dict:
    """Spearman rank correlation of x and y with a two-sided permutation p-value (y shuffled)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": float("nan"), "p_value": float("nan"), "n": int(x.size), "n_perm": int(n_perm)}
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = (rx - rx.mean()) / rx.std(), (ry - ry.mean()) / ry.std()
    rho = float((rx * ry).mean())
    rng, extreme = _rng(seed), 0
    for perm in _permuted_blocks(x.size, n_perm, rng, None):
        extreme += int((np.abs((rx[None] * ry[perm]).mean(-1)) >= abs(rho) - 1e-12).sum())
    return {"rho": rho, "p_value": (1 + extreme) / (1 + n_perm), "n": int(x.size), "n_perm": int(n_perm)}


def group_permutation(values: np.ndarray, groups: np.ndarray, n_perm: int = 2000, seed: int = 0) -> dict:
    """One-way between-group test: F = between-group / within-group mean square, permutation p-value.

    values (n,); groups (n,) ids. Returns F, p_value, n_groups.
    """
    v = np.asarray(values, float)
    g = np.asarray(groups)
    keep = np.isfinite(v)
    v, g = v[keep], g[keep]
    ids, gi = np.unique(g, return_inverse=True)
    k, n = ids.size, v.size
    if k < 2 or n <= k:
        return {"F": float("nan"), "p_value": float("nan"), "n_groups": int(k), "n_perm": int(n_perm)}
    onehot = np.eye(k)[gi]                                            # (n, k)
    counts = onehot.sum(0)
    total_ss = ((v - v.mean()) ** 2).sum()

    def f_stat(vals: np.ndarray) -> np.ndarray:                      # vals (..., n)
        means = vals @ onehot / counts
        between = (counts * (means - v.mean()) ** 2).sum(-1)
        within = np.maximum(total_ss - between, 1e-300)
        return (between / (k - 1)) / (within / (n - k))

    obs = float(f_stat(v))
    rng, extreme = _rng(seed), 0
    for perm in _permuted_blocks(n, n_perm, rng, None):
        extreme += int((f_stat(v[perm]) >= obs - 1e-12).sum())
    return {"F": obs, "p_value": (1 + extreme) / (1 + n_perm), "n_groups": int(k), "n_perm": int(n_perm)}


# ------------------------------------------------------------------------------------------ bootstrap
def bootstrap_ci(x: np.ndarray, stat: Callable[[np.ndarray], np.ndarray] | None = None, n_boot: int = 2000,
                 alpha: float = 0.05, seed: int = 0, axis: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` (default: mean) resampling along ``axis`` (rows = units resampled).

    ``stat`` maps an array (b, n, ...) of resamples to (b,) or (b, ...) along axis 1. Returns (lo, hi) for
    1-D outputs; NaN when fewer than 2 finite observations.
    """
    a = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    if a.ndim == 1:
        a = a[np.isfinite(a)]
    n = a.shape[0]
    if n < 2:
        return (float("nan"), float("nan"))
    stat = stat or (lambda r: r.mean(axis=1))
    rng, draws, done = _rng(seed), [], 0
    while done < n_boot:
        b = min(_BLOCK, n_boot - done)
        draws.append(np.asarray(stat(a[rng.integers(0, n, size=(b, n))])))
        done += b
    d = np.concatenate(draws, axis=0)
    lo, hi = np.nanquantile(d, [alpha / 2, 1 - alpha / 2], axis=0)
    return (float(lo), float(hi)) if np.ndim(lo) == 0 else (lo, hi)


def bootstrap_diff_ci(x: np.ndarray, y: np.ndarray, n_boot: int = 2000, alpha: float = 0.05,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(x) - mean(y), resampling x and y independently."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return (float("nan"), float("nan"))
    rng, draws, done = _rng(seed), [], 0
    while done < n_boot:
        b = min(_BLOCK, n_boot - done)
        draws.append(x[rng.integers(0, x.size, (b, x.size))].mean(1) - y[rng.integers(0, y.size, (b, y.size))].mean(1))
        done += b
    lo, hi = np.quantile(np.concatenate(draws), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------ overlaps
def hypergeom_overlap(population: int, n_a: int, n_b: int, overlap: int) -> dict:
    """Overlap of two subsets of sizes n_a, n_b drawn from ``population`` items, vs independence.

    expected = n_a n_b / population; p_value = P(X >= overlap) under the hypergeometric law; ratio =
    overlap / expected; jaccard = overlap / |A u B|.
    """
    from scipy.stats import hypergeom

    expected = n_a * n_b / population if population else float("nan")
    union = n_a + n_b - overlap
    return {"population": int(population), "n_a": int(n_a), "n_b": int(n_b), "overlap": int(overlap),
            "expected": float(expected),
            "ratio": float(overlap / expected) if expected else float("nan"),
            "p_value": float(hypergeom.sf(overlap - 1, population, n_a, n_b)) if population else float("nan"),
            "jaccard": float(overlap / union) if union else float("nan")}


def summed_hypergeom_pvalue(populations, n_as, n_bs, observed_total: int, n_sim: int = 20000,
                            seed: int = 0) -> float:
    """P(sum of independent hypergeometric overlaps >= observed_total), by simulation (one draw per layer)."""
    rng = _rng(seed)
    total = np.zeros(n_sim, dtype=np.int64)
    for n_pop, n_a, n_b in zip(populations, n_as, n_bs):
        if n_pop and n_a and n_b:
            total += rng.hypergeometric(n_a, n_pop - n_a, n_b, size=n_sim)
    return float((1 + (total >= observed_total).sum()) / (1 + n_sim))


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> dict:
    """Two proportions k1/n1 vs k2/n2: Fisher's exact test (two-sided) and the odds ratio."""
    from scipy.stats import fisher_exact as _fisher

    table = [[k1, n1 - k1], [k2, n2 - k2]]
    if min(n1, n2) <= 0:
        return {"odds_ratio": float("nan"), "p_value": float("nan")}
    res = _fisher(table, alternative="two-sided")
    return {"odds_ratio": float(res[0]), "p_value": float(res[1]),
            "fraction_1": k1 / n1, "fraction_2": k2 / n2}
