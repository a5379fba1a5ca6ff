"""akira.analysis.stats: BH, empirical p-values, permutation tests (stratified), effect sizes, overlaps."""
from __future__ import annotations

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
