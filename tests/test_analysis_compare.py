"""akira.analysis.pipeline.arm_tests / write_markdown: the between-arm tests are stratified by layer."""
from __future__ import annotations

import math

import pytest

from akira.analysis.pipeline import POOLED_LABEL, arm_tests, write_markdown


def _site(per_layer: dict[int, tuple[int, int]]) -> dict:
    """An alignment result of one probe/site: {layer: (n_candidates, n_tested)} -> layers + totals."""
    layers = {str(m): {"n_candidates": k, "n_tested": n, "fraction": k / n} for m, (k, n) in per_layer.items()}
    k, n = sum(v[0] for v in per_layer.values()), sum(v[1] for v in per_layer.values())
    return {"layers": layers, "totals": {"n_candidates": k, "n_tested": n, "fraction": k / n}}


def _universality(per_layer: dict[int, tuple[int, int]]) -> dict:
    """{layer: (overlap, n_a)} -> universality result of one site (n_a = random-probe candidates)."""
    layers = {str(m): {"overlap": o, "n_a": a, "n_b": a, "population": 10 * a} for m, (o, a) in per_layer.items()}
    o, a = sum(v[0] for v in per_layer.values()), sum(v[1] for v in per_layer.values())
    return {"layers": layers, "totals": {"overlap": o, "n_random": a, "n_text": a}}


# Simpson's paradox: layer 0 has base rate 0.5, layer 1 0.1, in both arms (every per-layer odds ratio is 1);
# akira's units sit mostly in layer 0, the baseline's in layer 1, so the pooled fractions differ (0.46 vs 0.14)
AKIRA = {0: (100, 200), 1: (2, 20)}
BASELINE = {0: (10, 20), 1: (20, 200)}


def _arms(akira: dict, baseline: dict) -> dict:
    return {arm: {"alignment": {"random": {"mlp": _site(c)}, "universality": {"mlp": _universality(c)}}}
            for arm, c in (("akira", akira), ("baseline", baseline))}


def test_stratified_test_is_not_fooled_by_simpsons_paradox(tmp_path):
    tests = arm_tests(_arms(AKIRA, BASELINE))
    assert set(tests) == {"aq_fraction/random/mlp", "universal_fraction/mlp"}
    for t in tests.values():
        assert t["pooled_fisher"]["p_value"] < 1e-10 and t["pooled_fisher"]["odds_ratio"] > 4
        assert t["pooled_fisher"]["label"] == POOLED_LABEL
        assert t["p_value"] > 0.5                           # within every layer the arms are identical
        assert t["odds_ratio"] == pytest.approx(1.0)
        lo, hi = t["odds_ratio_ci"]
        assert lo < 1.0 < hi
        assert t["breslow_day_p_value"] == pytest.approx(1.0)
        assert t["n_strata"] == 2 and t["layers"] == [0, 1] and t["unmatched_layers"] == []
        assert t["fraction_1"] == pytest.approx(102 / 220) and t["fraction_2"] == pytest.approx(30 / 220)
        assert "seed" in t["replication"]

    write_markdown(tmp_path / "compare.md", {}, tests)
    md = (tmp_path / "compare.md").read_text()
    assert "| test (akira vs baseline) | akira | baseline | common odds ratio [95% CI] | p (CMH) | p pooled Fisher |" in md
    assert POOLED_LABEL in md and "Unit of replication: the training seed" in md
    row = next(line for line in md.splitlines() if line.startswith("| aq_fraction/random/mlp |"))
    assert "| 1 [" in row


def test_stratified_test_finds_a_within_layer_effect_and_skips_unmatched_layers():
    # akira doubles the odds in both matched layers; its extra layer 2 has no baseline counterpart
    akira = {0: (60, 100), 1: (40, 200), 2: (5, 50)}
    baseline = {0: (43, 100), 1: (22, 200)}
    t = arm_tests(_arms(akira, baseline))["aq_fraction/random/mlp"]
    assert t["p_value"] < 0.01 and t["odds_ratio"] > 1.5 and t["odds_ratio_ci"][0] > 1.0
    assert t["layers"] == [0, 1] and t["unmatched_layers"] == [2] and t["n_strata"] == 2
    # no per-layer counts: one stratum, said so
    arms = _arms(akira, baseline)
    for arm in arms.values():
        del arm["alignment"]["random"]["mlp"]["layers"]
    t = arm_tests(arms)["aq_fraction/random/mlp"]
    assert "one stratum" in t["test"] and t["n_strata"] == 1 and math.isfinite(t["p_value"])
    assert arm_tests({"akira": {}, "baseline": {}}) == {}


def test_no_candidates_in_either_arm_is_no_test(tmp_path):
    tests = arm_tests(_arms({0: (0, 100), 1: (0, 80)}, {0: (0, 90), 1: (0, 70)}))
    t = tests["aq_fraction/random/mlp"]
    assert t["n_strata"] == 0 and math.isnan(t["p_value"]) and math.isnan(t["odds_ratio"])
    assert t["pooled_fisher"]["p_value"] == 1.0
    write_markdown(tmp_path / "compare.md", {}, tests)
    assert "| — | — (no informative layer) | 1 | — |" in (tmp_path / "compare.md").read_text()
