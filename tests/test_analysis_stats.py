"""akira.analysis.stats: BH, empirical p-values, permutation tests (stratified), effect sizes, overlaps."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import hypergeom

from akira.analysis import stats


def test_bh_matches_the_step_up_rule_and_skips_nans():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2, np.nan])
    reject, adj = stats.bh_fdr(p, 0.05)
    # sorted: .005 .01 .03 .04 .2 vs thresholds .01 .02 .03 .04 .05 -> the first four pass
    assert reject.tolist() == [True, True, True, True, False, False]
    np.testing.assert_allclose(adj[:5], [0.025, 0.05, 0.05, 0.025, 0.2])  # min_{j>=i} p_(j) m / j
    assert np.isnan(adj[5])
    reject, _ = stats.bh_fdr(np.array([0.02, 0.03]), 0.01)
    assert not reject.any()
    with pytest.raises(ValueError, match="fdr"):
        stats.bh_fdr(p, 1.5)


def test_empirical_pvalues_have_the_plus_one_correction():
    null = np.arange(99, dtype=float)            # 0..98
    p = stats.empirical_pvalues(np.array([98.0, 99.0, -1.0, np.nan]), null)
    np.testing.assert_allclose(p[:3], [2 / 100, 1 / 100, 1.0])
    assert np.isnan(p[3])


def test_permutation_test_detects_a_shift_and_not_its_absence():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.8, 1, 60), rng.normal(0, 1, 60)])
    lab = np.arange(120) < 60
    shifted = stats.permutation_test(x, lab, n_perm=999, seed=1)
    assert shifted["p_value"] < 0.01 and shifted["statistic"] > 0.4
    same = stats.permutation_test(rng.normal(0, 1, 120), lab, n_perm=999, seed=1)
    assert same["p_value"] > 0.05
    greater = stats.permutation_test(x, lab, n_perm=999, seed=1, alternative="less")
    assert greater["p_value"] > 0.9


def test_stratified_permutation_removes_a_confounder():
    rng = np.random.default_rng(1)
    stratum = np.repeat([0, 1], 100)
    values = stratum * 2.0 + rng.normal(0, 0.5, 200)          # depends on the stratum only
    labels = np.where(stratum == 1, rng.random(200) < 0.8, rng.random(200) < 0.2)  # labels follow the stratum
    plain = stats.permutation_test(values, labels, n_perm=999, seed=0)
    strat = stats.permutation_test(values, labels, n_perm=999, seed=0, strata=stratum)
    assert plain["p_value"] < 0.01
    assert strat["p_value"] > 0.05 and abs(strat["statistic"]) < 0.2


def test_stratified_two_sided_test_sees_an_effect_against_the_composition():
    """Labels fill the high stratum, but within each stratum the labelled values are lower: the raw difference
    is positive, the within-stratum one negative. The two-sided stratified test must find it (its null used to
    sit at the composition effect, so only effects of that sign could be significant: p = 1.0 here)."""
    rng = np.random.default_rng(3)
    stratum = np.repeat([0, 1], 100)
    labels = np.where(stratum == 1, rng.random(200) < 0.8, rng.random(200) < 0.2)
    values = stratum * 2.0 - 0.5 * labels + rng.normal(0, 0.3, 200)
    assert values[labels].mean() > values[~labels].mean()                       # composition wins raw
    strat = stats.permutation_test(values, labels, n_perm=999, seed=0, strata=stratum)
    assert strat["statistic"] < -0.2 and strat["p_value"] < 0.01
    less = stats.permutation_test(values, labels, n_perm=999, seed=0, strata=stratum, alternative="less")
    assert less["p_value"] < 0.01


def test_effect_sizes_ignore_undefined_values():
    """A dead unit's centroid is NaN: the effect sizes use the finite values (they used to return NaN)."""
    x, y = np.array([1.0, 2.0, 3.0, np.nan]), np.array([0.0, 1.0, np.nan])
    assert stats.cohens_d(x, y) == pytest.approx(stats.cohens_d(x[:3], y[:2]))
    assert stats.auc(x, y) == pytest.approx(stats.auc(x[:3], y[:2])) and np.isfinite(stats.auc(x, y))


def test_spearman_group_and_effect_sizes():
    x = np.arange(30, dtype=float)
    res = stats.spearman_permutation(x, x ** 2, n_perm=499, seed=0)
    assert res["rho"] == pytest.approx(1.0) and res["p_value"] < 0.01
    groups = np.repeat(np.arange(3), 20)
    rng = np.random.default_rng(2)
    f = stats.group_permutation(groups * 1.0 + rng.normal(0, 0.3, 60), groups, n_perm=499)
    assert f["p_value"] < 0.01 and f["F"] > 10
    a, b = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    assert stats.cohens_d(a, b) == pytest.approx(1.0, abs=0.15)
    assert stats.auc(a, b) == pytest.approx(0.76, abs=0.04)     # Phi(1 / sqrt 2)
    lo, hi = stats.bootstrap_ci(a, n_boot=500)
    assert lo < a.mean() < hi and hi - lo < 0.3
    dlo, dhi = stats.bootstrap_diff_ci(a, b, n_boot=500)
    assert dlo < 1.0 < dhi + 0.2 and dlo > 0.7


def test_hypergeometric_overlap_and_fisher():
    res = stats.hypergeom_overlap(100, 20, 30, 12)
    assert res["expected"] == pytest.approx(6.0)
    assert res["p_value"] == pytest.approx(hypergeom.sf(11, 100, 20, 30))
    assert res["ratio"] == pytest.approx(2.0) and res["jaccard"] == pytest.approx(12 / 38)
    p = stats.summed_hypergeom_pvalue([100, 100], [20, 20], [30, 30], 12, n_sim=4000)
    assert 0.4 < p < 0.6                         # the expected total is 12
    f = stats.fisher_exact(30, 100, 10, 100)
    assert f["p_value"] < 0.01 and f["odds_ratio"] > 1


# Reference values: R's mantelhaen.test (correct=TRUE) and DescTools::BreslowDayTest, as quoted in statsmodels'
# test suite. Rows = groups, columns = (event, no event); tables[k] is stratum k.
RABBITS = [[[0, 6], [0, 5]], [[3, 3], [0, 6]], [[6, 0], [2, 4]], [[5, 1], [6, 0]], [[2, 0], [5, 0]]]  # Agresti (2002)
DESC_TOOLS = [[[20, 14], [10, 24]], [[15, 12], [3, 15]], [[3, 2], [3, 2]], [[12, 3], [7, 5]], [[1, 0], [3, 2]]]


def test_cmh_matches_r_mantelhaen_test():
    r = stats.cmh_test(RABBITS)      # mantelhaen.test(Rabbits): X2 = 3.9286, p = 0.04747, OR 7 [1.026713, 47.725133]
    assert r["statistic"] == pytest.approx(3.9286, abs=1e-4)
    assert r["p_value"] == pytest.approx(0.04747, abs=1e-5)
    assert r["odds_ratio"] == pytest.approx(7.0)
    np.testing.assert_allclose(r["odds_ratio_ci"], [1.026713, 47.725133], rtol=1e-6)
    assert r["n_strata"] == 3        # strata 1 and 5 have an empty column: no information
    r = stats.cmh_test(DESC_TOOLS, tarone=False)
    assert r["statistic"] == pytest.approx(11.8852, abs=1e-4) and r["p_value"] == pytest.approx(0.0005658, abs=1e-7)
    assert r["odds_ratio"] == pytest.approx(3.5912, abs=1e-4)
    np.testing.assert_allclose(r["odds_ratio_ci"], [1.781135, 7.240633], rtol=1e-6)
    assert r["breslow_day_statistic"] == pytest.approx(1.8438, abs=1e-4) and r["breslow_day_df"] == 4
    assert r["breslow_day_p_value"] == pytest.approx(0.7645, abs=1e-4)
    assert stats.cmh_test(DESC_TOOLS)["breslow_day_statistic"] == pytest.approx(1.8436, abs=1e-4)  # Tarone
    # by hand: odds ratios 1 and 16, n = 20 each; MH OR = sum(a d / n) / sum(b c / n) = (25 + 64) / (25 + 4);
    # E = 10 * 10 / 20 = 5 and V = 10^4 / (20^2 * 19) per stratum, sum a = 13
    r = stats.cmh_test([[[5, 5], [5, 5]], [[8, 2], [2, 8]]], correction=False)
    assert r["odds_ratio"] == pytest.approx(89 / 29)
    assert r["statistic"] == pytest.approx((13 - 10) ** 2 / (2 * 1e4 / 7600))
    assert stats.cmh_test([[[5, 5], [5, 5]], [[8, 2], [2, 8]]])["statistic"] == pytest.approx(2.5 ** 2 / (2e4 / 7600))
    assert r["breslow_day_p_value"] < 0.05          # the two odds ratios differ


def test_cmh_single_stratum_is_the_continuity_corrected_chi_square():
    from scipy.stats import chi2_contingency
    from scipy.stats import fisher_exact as scipy_fisher

    table = np.array([[30, 70], [12, 88]])
    n = table.sum()
    r = stats.cmh_test(table)
    yates = chi2_contingency(table, correction=True)[0]
    assert r["statistic"] == pytest.approx(yates * (n - 1) / n, rel=1e-12)   # hypergeometric variance: n - 1
    assert stats.cmh_test(table, correction=False)["statistic"] == pytest.approx(
        chi2_contingency(table, correction=False)[0] * (n - 1) / n, rel=1e-12)
    assert r["odds_ratio"] == pytest.approx(scipy_fisher(table)[0], rel=1e-12)   # = a d / (b c)
    woolf = math.sqrt((1 / table).sum())                                          # RBG reduces to Woolf
    np.testing.assert_allclose(r["odds_ratio_ci"], r["odds_ratio"] * np.exp([-1.959964 * woolf, 1.959964 * woolf]),
                               rtol=1e-6)
    assert np.isnan(r["breslow_day_p_value"])        # homogeneity needs two strata
    zero = stats.cmh_test([[[0, 50], [10, 40]], [[0, 30], [5, 25]]])
    assert zero["odds_ratio"] == 0.0 and np.isnan(zero["odds_ratio_ci"]).all() and zero["p_value"] < 0.01
    assert np.isnan(stats.cmh_test(np.zeros((0, 2, 2)))["p_value"])
    with pytest.raises(ValueError, match="tables"):
        stats.cmh_test([[1, 2, 3]])
    with pytest.raises(ValueError, match="non-negative"):
        stats.cmh_test([[1, -2], [3, 4]])
