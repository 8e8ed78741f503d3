"""Labeling statistics against numbers worked out by hand (in the comments) or published examples."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from lab.label.stats import (
    bootstrap_bradley_terry,
    bradley_terry,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    pairwise_agreement,
    position_bias,
    win_matrix,
)

# Two raters, 10 items, as a 2x2 table (rater 1 rows, rater 2 columns):
#            r2=a  r2=b
#   r1=a       4     2     -> rater 1: a 6, b 4
#   r1=b       1     3     -> rater 2: a 5, b 5
RATER_1 = ["a"] * 4 + ["a"] * 2 + ["b"] * 1 + ["b"] * 3
RATER_2 = ["a"] * 4 + ["b"] * 2 + ["a"] * 1 + ["b"] * 3


def test_cohen_kappa_hand_example() -> None:
    # p_o = (4 + 3) / 10 = 7/10
    # p_e = (6*5 + 4*5) / 100 = 1/2
    # kappa = (7/10 - 1/2) / (1 - 1/2) = 2/5
    assert cohen_kappa(RATER_1, RATER_2) == pytest.approx(2 / 5, abs=1e-12)


def test_cohen_kappa_perfect_opposite_and_degenerate() -> None:
    assert cohen_kappa(["a", "b", "tie", "a"], ["a", "b", "tie", "a"]) == pytest.approx(1.0)
    # p_o = 0, p_e = (1*1 + 1*1) / 4 = 1/2 -> kappa = -1
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    # One label from both raters: p_e = 1, the formula is 0/0; full agreement counts as 1.
    assert cohen_kappa(["a"] * 5, ["a"] * 5) == 1.0
    assert cohen_kappa(["a"], ["b"]) is None
    with pytest.raises(ValueError):
        cohen_kappa(["a", "b"], ["a"])


# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
FLEISS_COUNTS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_wikipedia_example() -> None:
    table = [[f"c{j}" for j, n in enumerate(row) for _ in range(n)] for row in FLEISS_COUNTS]
    assert all(len(labels) == 14 for labels in table)
    # Column totals 20, 28, 39, 21, 32 of 140: P_e = (400 + 784 + 1521 + 441 + 1024) / 19600 = 4170/19600.
    # Row sums of n_ij(n_ij - 1): 182, 46, 56, 80, 60, 84, 44, 32, 52, 52 = 688, so P_bar = 688 / (10 * 14 * 13).
    # kappa = (688/1820 - 4170/19600) / (1 - 4170/19600) = 4211/20059 = 0.20993...
    expected = (Fraction(688, 1820) - Fraction(4170, 19600)) / (1 - Fraction(4170, 19600))
    assert expected == Fraction(4211, 20059)
    kappa = fleiss_kappa(table)
    assert kappa == pytest.approx(float(expected), abs=1e-12)
    assert round(kappa, 3) == 0.210


def test_fleiss_kappa_variable_raters_and_edge_cases() -> None:
    # Items with one rating are skipped. Item 1: a,a (P=1); item 2: a,b,b (P = 2/6 = 1/3).
    # Ratings counted: a 3, b 2 of 5 -> P_e = 9/25 + 4/25 = 13/25; P_bar = (1 + 1/3) / 2 = 2/3.
    # kappa = (2/3 - 13/25) / (12/25) = (50/75 - 39/75) / (36/75) = 11/36
    assert fleiss_kappa([["a", "a"], ["a", "b", "b"], ["tie"]]) == pytest.approx(11 / 36, abs=1e-12)
    assert fleiss_kappa([["a"], ["b"]]) is None
    assert fleiss_kappa([["a", "a"], ["a", "a", "a"]]) == 1.0


# Three raters with missing ratings; the last item has one rating and cannot be paired.
ALPHA_TABLE = [["a", "a", "a"], ["a", "a", "b"], ["b", "b"], ["a", "b"], ["a"]]


def test_krippendorff_alpha_hand_example() -> None:
    # Coincidences off the diagonal (each ordered pair weighted 1 / (m_u - 1)):
    #   (a,a,a): 0;  (a,a,b): 2 (a,b) + 2 (b,a) pairs / 2 = 2;  (b,b): 0;  (a,b): 2 / 1 = 2   -> sum 4
    # Margins: n_a = 3 + 2 + 0 + 1 = 6, n_b = 0 + 1 + 2 + 1 = 4, n = 10; sum_{c!=k} n_c n_k = 2 * 24 = 48.
    # alpha = 1 - (n - 1) * 4 / 48 = 1 - 36/48 = 1/4
    assert krippendorff_alpha_nominal(ALPHA_TABLE) == pytest.approx(0.25, abs=1e-12)


def test_krippendorff_alpha_two_raters_vs_scotts_pi() -> None:
    table = [[x, y] for x, y in zip(RATER_1, RATER_2)]
    # Pooled margins: a 11, b 9 of 20. Scott's pi: p_e = (121 + 81)/400 = 101/200, p_o = 7/10,
    #   pi = (7/10 - 101/200) / (99/200) = 39/99 = 13/33.
    # Alpha: 3 disagreeing items -> 6 off-diagonal coincidences; 2 * 11 * 9 = 198;
    #   alpha = 1 - 19 * 6 / 198 = 14/33, i.e. 1 - (1 - pi) * (2N - 1) / (2N) with N = 10.
    alpha = krippendorff_alpha_nominal(table)
    pi = 13 / 33
    assert alpha == pytest.approx(14 / 33, abs=1e-12)
    assert alpha == pytest.approx(1 - (1 - pi) * 19 / 20, abs=1e-12)
    assert alpha != pytest.approx(pi, abs=1e-3)  # close to pi and Cohen's 0.4, yet not equal


def test_krippendorff_alpha_edge_cases() -> None:
    assert krippendorff_alpha_nominal([["a"], ["b"], []]) is None
    assert krippendorff_alpha_nominal([["tie", "tie"], ["tie", "tie", "tie"]]) == 1.0


def test_pairwise_agreement() -> None:
    # (a,a,a): 3 of 3 pairs agree; (a,a,b): 1 of 3; (b,b): 1 of 1; (a,b): 0 of 1; (a): no pairs -> 5/8
    assert pairwise_agreement(ALPHA_TABLE) == pytest.approx(5 / 8)
    assert pairwise_agreement([["a"], []]) is None


def test_position_bias_flags_a_lopsided_side() -> None:
    result = position_bias(["a"] * 30 + ["b"] * 10 + ["tie"] * 5 + ["both_bad"] * 3)
    assert (result["a_wins"], result["b_wins"], result["decided"]) == (30, 10, 40)
    assert result["a_rate"] == 0.75
    assert result["p_value"] < 0.01
    assert result["flagged"] is True
    # The test is two-sided: the mirror image has the same p-value.
    assert position_bias(["a"] * 10 + ["b"] * 30)["p_value"] == pytest.approx(result["p_value"])


def test_position_bias_balanced_is_not_flagged() -> None:
    result = position_bias(["a"] * 21 + ["b"] * 19)
    assert result["p_value"] > 0.5
    assert result["flagged"] is False


def test_position_bias_exact_p_value() -> None:
    # 10 of 10 for A: P(X = 10) + P(X = 0) = 2 / 2**10, exactly.
    result = position_bias(["a"] * 10)
    assert result["p_value"] == 2 / 1024
    assert result["flagged"] is False  # too few votes to flag, however lopsided
    assert position_bias(["tie", "both_bad"])["p_value"] is None
    assert position_bias(["tie"])["a_rate"] is None
    with pytest.raises(ValueError):
        position_bias(["left"])


def test_position_bias_large_n_matches_exact_sum() -> None:
    # Past the exact-integer limit the p-value is summed in log space; check it against the integer sum.
    n, a = 2100, 1100
    exact = float(Fraction(2 * sum(math.comb(n, i) for i in range(n - a + 1)), 2**n))
    result = position_bias(["a"] * a + ["b"] * (n - a))
    assert result["p_value"] == pytest.approx(exact, rel=1e-9)
    assert 0.01 < result["p_value"] < 0.05  # normal approximation: z = 50 / sqrt(525) = 2.18


def test_bradley_terry_transitive_order_and_mean() -> None:
    comparisons = (
        [("A", "B", 1.0)] * 3 + [("A", "B", 0.0)]
        + [("B", "C", 1.0)] * 3 + [("B", "C", 0.0)]
        + [("A", "C", 1.0)] * 3 + [("A", "C", 0.0)]
    )
    ratings = bradley_terry(comparisons)
    assert ratings["A"] > ratings["B"] > ratings["C"]
    assert sum(ratings.values()) / 3 == pytest.approx(1000.0)
    # Swapping winners and losers maps A to C and leaves B alone, so B sits exactly at the mean.
    assert ratings["B"] == pytest.approx(1000.0, abs=1e-6)


def test_bradley_terry_two_players_is_the_odds() -> None:
    # For two players the MLE strength ratio is p / (1 - p) = (3/4) / (1/4) = 3.
    comparisons = [("A", "B", 1.0)] * 3 + [("A", "B", 0.0)]
    ratings = bradley_terry(comparisons, prior=1e-9)
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(3), abs=1e-3)
    # The default prior shrinks the gap towards zero.
    shrunk = bradley_terry(comparisons)
    assert 0 < shrunk["A"] - shrunk["B"] < ratings["A"] - ratings["B"]


def test_bradley_terry_symmetric_data_and_ties() -> None:
    even = bradley_terry([("A", "B", 1.0), ("A", "B", 0.0), ("B", "A", 1.0), ("B", "A", 0.0)])
    assert even["A"] == pytest.approx(even["B"], abs=1e-9)
    ties = bradley_terry([("A", "B", 0.5)] * 4 + [("B", "C", 0.5)] * 2)
    assert ties == pytest.approx({"A": 1000.0, "B": 1000.0, "C": 1000.0}, abs=1e-6)


def test_bradley_terry_unbeaten_model_stays_finite() -> None:
    comparisons = [("A", "B", 1.0)] * 5 + [("C", "A", 0.0)] * 5
    ratings = bradley_terry(comparisons)
    assert set(ratings) == {"A", "B", "C"}  # models that only lost are rated too
    assert all(math.isfinite(r) for r in ratings.values())
    assert ratings["A"] > ratings["B"]
    # The prior is what holds the gap: less prior, wider gap.
    weaker_prior = bradley_terry(comparisons, prior=0.1)
    assert weaker_prior["A"] - weaker_prior["B"] > ratings["A"] - ratings["B"]
    assert bradley_terry([]) == {}
    with pytest.raises(ValueError):
        bradley_terry([("A", "A", 1.0)])


BOOTSTRAP_DATA = (
    [("A", "B", 1.0)] * 7 + [("A", "B", 0.0)] * 3
    + [("B", "C", 1.0)] * 6 + [("B", "C", 0.5)] * 2 + [("B", "C", 0.0)] * 2
    + [("A", "C", 1.0)] * 4 + [("A", "C", 0.0)] * 1
)


def test_bootstrap_interval_contains_the_point_estimate() -> None:
    result = bootstrap_bradley_terry(BOOTSTRAP_DATA, rounds=100, seed=3)
    point = bradley_terry(BOOTSTRAP_DATA)
    assert set(result) == {"A", "B", "C"}
    # A: 10 vs B + 5 vs C; B: 10 + 10; C: 10 + 5.
    assert {m: r["comparisons"] for m, r in result.items()} == {"A": 15, "B": 20, "C": 15}
    for model, r in result.items():
        assert r["rating"] == pytest.approx(point[model])
        assert r["low"] <= r["rating"] <= r["high"]
        assert r["low"] < r["high"]


def test_bootstrap_is_deterministic_per_seed() -> None:
    first = bootstrap_bradley_terry(BOOTSTRAP_DATA, rounds=50, seed=7)
    assert bootstrap_bradley_terry(BOOTSTRAP_DATA, rounds=50, seed=7) == first
    assert bootstrap_bradley_terry(BOOTSTRAP_DATA, rounds=50, seed=8) != first


def test_win_matrix_hand_example() -> None:
    comparisons = [("C", "A", 0.0), ("B", "A", 0.0), ("A", "B", 1.0), ("A", "B", 0.5)]
    models, rates, counts = win_matrix(comparisons)
    assert models == ["A", "B", "C"]
    # A vs B: A scores 1 + 1 + 0.5 = 2.5 of 3; B scores 0.5 of 3. A vs C: A 1 of 1. B and C never met.
    assert rates == [
        [None, pytest.approx(2.5 / 3), 1.0],
        [pytest.approx(0.5 / 3), None, None],
        [0.0, None, None],
    ]
    assert counts == [[0, 3, 1], [3, 0, 0], [1, 0, 0]]
