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
    """Two proportions k1/n1 vs k2/n2: Fisher's exact test (two-sided) and the sample odds ratio.

    Every one of the n1 + n2 trials is taken as an independent, exchangeable draw. When the counts are sums
    over strata with different base rates (e.g. the neurons of all layers), that is false and the p-value is
    anti-conservative (and the direction can even reverse: Simpson's paradox); use `cmh_test` on the
    per-stratum tables instead."""
    from scipy.stats import fisher_exact as _fisher

    table = [[k1, n1 - k1], [k2, n2 - k2]]
    if min(n1, n2) <= 0:
        return {"odds_ratio": float("nan"), "p_value": float("nan")}
    res = _fisher(table, alternative="two-sided")
    return {"odds_ratio": float(res[0]), "p_value": float(res[1]),
            "fraction_1": k1 / n1, "fraction_2": k2 / n2}


# ------------------------------------------------------------------------------------------ stratified 2x2
def _homogeneity_expected(r1: float, r2: float, c1: float, psi: float) -> float:
    """The cell-(0,0) count of a 2x2 table with row sums r1, r2 and first column sum c1 whose odds ratio is
    ``psi`` (0 < psi < inf, every margin > 0): the root of x (r2 - c1 + x) = psi (r1 - x)(c1 - x) strictly
    inside its admissible range (the odds ratio rises from 0 to inf over it)."""
    from scipy.optimize import brentq

    lo, hi = max(0.0, c1 - r2), min(r1, c1)

    def f(x: float) -> float:
        return x * (r2 - c1 + x) - psi * (r1 - x) * (c1 - x)

    return float(brentq(f, lo, hi, xtol=1e-12 * max(1.0, hi), rtol=1e-14, maxiter=200))


def cmh_test(tables, correction: bool = True, alpha: float = 0.05, tarone: bool = True) -> dict:
    """Cochran-Mantel-Haenszel test of a common odds ratio of 1 over K stratified 2x2 tables, the
    Mantel-Haenszel common odds ratio with its Robins-Breslow-Greenland CI, and the Breslow-Day test that the
    strata share one odds ratio.

    tables: (K, 2, 2) (or one (2, 2)) non-negative counts; rows = the two groups, columns = (event, no event),
    so an odds ratio > 1 means a higher event rate in row 0. Per stratum with cells a b / c d, n = a+b+c+d:

    - CMH: X2 = (max(|sum a - sum E| - 0.5, 0) if ``correction`` else |sum a - sum E|)^2 / sum V, with
      E = (a+b)(a+c)/n and V = (a+b)(c+d)(a+c)(b+d) / (n^2 (n-1)) (hypergeometric mean and variance of a
      given the margins); p = P(chi2_1 >= X2), two-sided. The continuity correction is capped at the
      deviation, as scipy's `chi2_contingency` does; R's `mantelhaen.test` gives the same whenever
      |sum a - sum E| >= 0.5. With one stratum X2 = Yates' chi-square * (n-1)/n.
    - Common odds ratio (Mantel-Haenszel): sum(a d / n) / sum(b c / n); 1 - alpha CI exp(log OR +- z se)
      with the Robins-Breslow-Greenland (1986) variance of log OR (Woolf's 1/a+1/b+1/c+1/d for one stratum);
      the CI is NaN when the estimate is 0 or inf.
    - Breslow-Day: sum (a - A)^2 / Var(A) over the strata, A = the expected a under the common odds ratio
      (`_homogeneity_expected`), Var(A) = 1 / (1/A + 1/B + 1/C + 1/D); minus Tarone's (1985) adjustment
      (sum a - sum A)^2 / sum Var(A) when ``tarone``; chi2 with (informative strata - 1) df. A small p says
      the odds ratio differs between strata: the common odds ratio then summarises unlike effects.

    Strata with a zero margin carry no information on the association and are left out of everything
    (n_strata counts the rest). This is a large-sample test: it needs enough events summed over strata, not
    per stratum. It treats the units within a stratum as independent trials. References: Mantel & Haenszel
    (1959); Agresti, Categorical Data Analysis (2002) 6.3; checked against R's `mantelhaen.test`.

    Returns statistic, p_value, df (1), odds_ratio, odds_ratio_ci [lo, hi], ci_level, log_odds_ratio_se,
    observed (sum a), expected (sum E), n_strata, breslow_day_statistic, breslow_day_p_value, breslow_day_df,
    correction, tarone.
    """
    from scipy.stats import chi2, norm

    t = np.asarray(tables, dtype=np.float64)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[1:] != (2, 2):
        raise ValueError(f"tables: expected shape (K, 2, 2), got {t.shape}")
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError("tables: counts must be finite and non-negative")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    a, b, c, d = t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1]
    r1, r2, c1, c2 = a + b, c + d, a + c, b + d
    ok = (r1 > 0) & (r2 > 0) & (c1 > 0) & (c2 > 0)
    a, b, c, d, r1, r2, c1, c2 = (x[ok] for x in (a, b, c, d, r1, r2, c1, c2))
    n = r1 + r2
    nan = float("nan")
    out = {"statistic": nan, "p_value": nan, "df": 1, "odds_ratio": nan, "odds_ratio_ci": [nan, nan],
           "ci_level": 1.0 - alpha, "log_odds_ratio_se": nan, "observed": float(a.sum()),
           "expected": nan, "n_strata": int(ok.sum()), "breslow_day_statistic": nan,
           "breslow_day_p_value": nan, "breslow_day_df": max(int(ok.sum()) - 1, 0),
           "correction": bool(correction), "tarone": bool(tarone)}
    if not ok.any():
        return out

    expected = r1 * c1 / n
    var = r1 * r2 * c1 * c2 / (n ** 2 * (n - 1))
    dev = abs(float(a.sum() - expected.sum()))
    if correction:
        dev = max(dev - 0.5, 0.0)
    stat = dev ** 2 / float(var.sum())
    out.update(statistic=stat, p_value=float(chi2.sf(stat, 1)), expected=float(expected.sum()))

    R, S = a * d / n, b * c / n
    sr, ss = float(R.sum()), float(S.sum())
    if sr == 0.0 and ss == 0.0:
        return out
    odds = sr / ss if ss > 0 else float("inf")
    out["odds_ratio"] = odds
    if not (sr > 0 and ss > 0):
        return out
    P, Q = (a + d) / n, (b + c) / n
    v = ((P * R).sum() / (2 * sr ** 2) + (P * S + Q * R).sum() / (2 * sr * ss) + (Q * S).sum() / (2 * ss ** 2))
    se = math.sqrt(float(v))
    z = float(norm.ppf(1.0 - alpha / 2))
    out.update(log_odds_ratio_se=se,
               odds_ratio_ci=[math.exp(math.log(odds) - z * se), math.exp(math.log(odds) + z * se)])

    if a.size >= 2:
        ea = np.array([_homogeneity_expected(*m, odds) for m in zip(r1, r2, c1)])
        va = 1.0 / (1.0 / ea + 1.0 / (r1 - ea) + 1.0 / (c1 - ea) + 1.0 / (r2 - c1 + ea))
        bd = float(((a - ea) ** 2 / va).sum())
        if tarone:
            bd -= float((a.sum() - ea.sum()) ** 2 / va.sum())
        out.update(breslow_day_statistic=bd, breslow_day_p_value=float(chi2.sf(bd, a.size - 1)))
    return out
