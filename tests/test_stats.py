"""Tests of mnas_search.util.stats on cases worked out by hand: rank correlations, P(X > Y), the
permutation test and the bootstrap interval of a difference of means."""

import math

import numpy as np
import pytest

from mnas_search.util import stats


def test_rankdata_averages_ties():
  assert stats.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
  assert stats.rankdata([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]
  assert stats.rankdata([0.5, -1.0, 7.0, 0.5, 0.5]).tolist() == [3.0, 1.0, 5.0, 3.0, 3.0]


def test_perfect_and_reversed_rankings():
  x = [0.1, 0.4, 0.35, 0.9, 0.2]
  y = [1.0, 4.0, 3.0, 10.0, 2.0]  # the same order, other values: only ranks count
  assert stats.spearman(x, y) == 1.0 and stats.kendall_tau(x, y) == 1.0
  assert stats.spearman(x, [-v for v in y]) == -1.0
  assert stats.kendall_tau(x, [-v for v in y]) == -1.0


def test_hand_computed_example_without_ties():
  # d = rank differences (-1, 1, -1, 1, 0): rho = 1 - 6*4/(5*24) = 0.8.
  # Pairs (1,2) and (3,4) of the 10 are discordant: tau = (8 - 2)/10 = 0.6.
  x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
  assert stats.spearman(x, y) == pytest.approx(0.8, abs=1e-12)
  assert stats.kendall_tau(x, y) == pytest.approx(0.6, abs=1e-12)


def test_ties_in_one_variable():
  # x ranks (1, 2.5, 2.5, 4), centred (-1.5, 0, 0, 1.5); y centred (-1.5, .5, -.5, 1.5):
  # rho = 4.5 / sqrt(4.5 * 5) = 3/sqrt(10). Kendall: 5 concordant, 0 discordant, 1 pair tied
  # in x: tau_b = 5 / sqrt((6 - 1) * 6) = 5/sqrt(30).
  x, y = [1, 2, 2, 3], [1, 3, 2, 4]
  assert stats.spearman(x, y) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
  assert stats.kendall_tau(x, y) == pytest.approx(5 / math.sqrt(30), abs=1e-12)


def test_ties_in_both_variables():
  # One pair tied in both: it counts nowhere; the two others are concordant: 2/sqrt(2*2) = 1.
  assert stats.kendall_tau([1, 1, 2], [5, 5, 9]) == 1.0
  # x tied on (0,1), y tied on (1,2): of 3 pairs, (0,2) is discordant: -1/sqrt(2*2) = -0.5.
  assert stats.kendall_tau([1, 1, 2], [2, 1, 1]) == pytest.approx(-0.5, abs=1e-12)


def test_constant_side_is_nan():
  assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))
  assert math.isnan(stats.kendall_tau([1, 2, 3], [4, 4, 4]))


def test_matches_the_definitions_on_random_data():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 5, 40).astype(float)  # many ties
  y = x + rng.normal(0, 2, 40)
  rx, ry = stats.rankdata(x), stats.rankdata(y)
  assert stats.spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
  c = d = tx = ty = 0
  for i in range(40):
    for j in range(i + 1, 40):
      s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
      c, d = c + (s > 0), d + (s < 0)
      tx, ty = tx + (x[i] == x[j]), ty + (y[i] == y[j])
  n0 = 40 * 39 // 2
  assert stats.kendall_tau(x, y) == pytest.approx((c - d) / math.sqrt((n0 - tx) * (n0 - ty)),
                                                  abs=1e-12)


@pytest.mark.parametrize("x, y, message", [
    ([1, 2], [1, 2, 3], "same length, got 2 and 3"),
    ([1], [1], "hold 1 value(s); allowed: at least 2 pairs"),
    ([1, float("nan")], [1, 2], "finite"),
    ([[1, 2]], [[1, 2]], "1-D"),
])
def test_bad_input(x, y, message):
  for fn in (stats.spearman, stats.kendall_tau):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
      fn(x, y)


def test_mean_abs_pct_error():
  assert stats.mean_abs_pct_error([11.0, 9.0, 20.0], [10.0, 10.0, 20.0]) == pytest.approx(20 / 3)
  with pytest.raises(ValueError, match="actual values > 0"):
    stats.mean_abs_pct_error([1.0], [0.0])


def test_prob_greater_counts_wins_and_half_ties():
  # x = [1, 3, 5] against y = [2, 3]: 1 wins 0; 3 beats 2, ties 3 (1.5); 5 wins 2. 3.5 of 6.
  assert stats.prob_greater([1, 3, 5], [2, 3]) == 3.5 / 6
  assert stats.prob_greater([2, 3], [1, 3, 5]) == 2.5 / 6  # the complement
  assert stats.prob_greater([4, 5], [1, 2]) == 1.0
  assert stats.prob_greater([7, 7], [7]) == 0.5
  for x, y, message in (([], [1], "non-empty"), ([1], [float("inf")], "finite")):
    with pytest.raises(ValueError, match=message):
      stats.prob_greater(x, y)


def test_permutation_test_two_against_two_enumerates_six_relabelings():
  # Pooled {1, 2, 3, 4}; the 6 choices of x give mean(x) - mean(y) = -2 ({1,2}), -1 ({1,3}),
  # 0 ({1,4}), 0 ({2,3}), 1 ({2,4}), 2 ({3,4}). Observed -2: |d| >= 2 twice, d <= -2 once.
  assert stats.permutation_test([1, 2], [3, 4]) == pytest.approx(2 / 6, abs=1e-15)
  assert stats.permutation_test([1, 2], [3, 4], "less") == pytest.approx(1 / 6, abs=1e-15)
  assert stats.permutation_test([1, 2], [3, 4], "greater") == 1.0
  assert stats.permutation_test([3, 4], [1, 2], "greater") == pytest.approx(1 / 6, abs=1e-15)
  # Any 2 against 2 with no overlap is as extreme as it gets: the floor, whatever the gap.
  assert stats.permutation_test([0.80, 0.81], [0.10, 0.11]) == pytest.approx(1 / 3, abs=1e-15)
  assert stats.min_permutation_p(2, 2) == pytest.approx(1 / 3, abs=1e-15)
  assert stats.min_permutation_p(2, 2, "greater") == pytest.approx(1 / 6, abs=1e-15)


def test_permutation_test_counts_ties_as_extreme():
  # x = [1, 2, 4], y = [3]; the 4 relabelings (y is one value) give d = 2 (y=1), 2/3 (y=2),
  # -2/3 (y=3, observed), -2 (y=4). Two-sided: all 4 have |d| >= 2/3, the 2/3 computed from
  # other sums (a tie in the last bits); greater: 3 of 4; less: 2 of 4.
  assert stats.permutation_test([1, 2, 4], [3]) == 1.0
  assert stats.permutation_test([1, 2, 4], [3], "greater") == 0.75
  assert stats.permutation_test([1, 2, 4], [3], "less") == 0.5
  assert stats.min_permutation_p(3, 1) == 0.25
  # Identical values: every relabeling ties with the observed one.
  assert stats.permutation_test([5, 5], [5, 5]) == 1.0
  # 3 against 3: 20 relabelings, [1, 2, 3] the lowest and [4, 5, 6] its mirror.
  assert stats.permutation_test([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20, abs=1e-15)
  assert stats.permutation_test([1, 2, 3], [4, 5, 6], "less") == pytest.approx(1 / 20, abs=1e-15)


def test_permutation_test_monte_carlo_above_the_exact_limit():
  exact = stats.permutation_test([1, 2, 3], [4, 5, 6])
  mc = stats.permutation_test([1, 2, 3], [4, 5, 6], exact_limit=0, resamples=20000, seed=3)
  # 2 of 20 relabelings are extreme; 20,000 draws put the estimate within 3 standard errors.
  assert mc == pytest.approx(exact, abs=3 * math.sqrt(0.1 * 0.9 / 20000))
  assert mc == stats.permutation_test([1, 2, 3], [4, 5, 6], exact_limit=0, resamples=20000,
                                      seed=3)  # seeded
  # The observed labeling counts: never below 1 / (resamples + 1).
  far = stats.permutation_test(list(range(20)), list(range(100, 120)), resamples=99)
  assert far == pytest.approx(1 / 100, abs=1e-15)


def test_bootstrap_mean_difference_interval():
  # Resampling 2 values gives mean(x) in {1, 1.5, 2} with probabilities 1/4, 1/2, 1/4, and the
  # same for y in {3, 3.5, 4}: d in {-3, -2.5, -2, -1.5, -1} with 1, 4, 6, 4, 1 in 16. The
  # cumulative shares 1/16, 5/16, 11/16, 15/16 put the 25th percentile at -2.5, the 75th at -1.5.
  assert stats.bootstrap_mean_difference_interval([1, 2], [3, 4], level=0.5) == (-2.5, -1.5)
  # The 5th and 95th percentiles: the extremes, each 1/16 = 6.25% > 5% of the resamples.
  assert stats.bootstrap_mean_difference_interval([1, 2], [3, 4]) == (-3.0, -1.0)
  # Constant groups: no spread to resample. Different sizes are allowed.
  assert stats.bootstrap_mean_difference_interval([2, 2, 2], [0.5]) == (1.5, 1.5)
  assert stats.bootstrap_mean_difference_interval([1, 2], [3, 4], seed=7) == \
      stats.bootstrap_mean_difference_interval([1, 2], [3, 4], seed=7)


@pytest.mark.parametrize("call, message", [
    (lambda: stats.permutation_test([], [1]), "non-empty"),
    (lambda: stats.permutation_test([1], [float("nan")]), "finite"),
    (lambda: stats.permutation_test([1], [2], "bigger"), "alternative='bigger' is invalid"),
    (lambda: stats.min_permutation_p(0, 2), "at least 1 value"),
    (lambda: stats.bootstrap_mean_difference_interval([1], [2], level=1.0), "level=1.0"),
    (lambda: stats.bootstrap_mean_difference_interval([1], []), "non-empty"),
])
def test_group_comparisons_refuse_bad_input(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_retest_tau_is_one_without_noise_and_falls_as_noise_grows_against_the_spread():
  values = list(np.linspace(90.0, 92.0, 20))  # a 2-point spread, as G's networks
  assert stats.retest_tau(values, 0.0, draws=10) == 1.0
  low, high = stats.retest_tau(values, 0.1, draws=300), stats.retest_tau(values, 1.0, draws=300)
  assert 0.6 < low < 1.0 and 0.0 < high < 0.4 and high < low
  # Noise far above the spread leaves nothing to rank.
  assert abs(stats.retest_tau(values, 100.0, draws=300)) < 0.1
  with pytest.raises(ValueError, match="noise_std"):
    stats.retest_tau(values, -1.0)


def test_sign_flip_test_enumerates_every_sign_pattern_of_the_paired_differences():
  # 3 pairs, all x above y: only the observed pattern and its mirror are as extreme (2 of 8).
  assert stats.sign_flip_test([2, 3, 4], [1, 1, 1]) == pytest.approx(2 / 8, abs=1e-15)
  assert stats.sign_flip_test([2, 3, 4], [1, 1, 1], "greater") == pytest.approx(1 / 8, abs=1e-15)
  assert stats.sign_flip_test([2, 3, 4], [1, 1, 1], "less") == 1.0
  # Differences +1, +1, -1: patterns with |mean| >= 1/3 are all 8 (every mean is ±1/3 or ±1).
  assert stats.sign_flip_test([2, 2, 0], [1, 1, 1]) == 1.0
  # Differences 3, 1, 1, 1: only all-plus (sum 6) and its mirror reach |sum| 6: 2 of 16.
  assert stats.sign_flip_test([4, 2, 2, 2], [1, 1, 1, 1]) == pytest.approx(2 / 16, abs=1e-15)
  assert stats.min_sign_flip_p(3) == pytest.approx(2 / 8, abs=1e-15)
  assert stats.min_sign_flip_p(6, "greater") == pytest.approx(1 / 64, abs=1e-15)
  # A zero difference is the same under both signs: the floor is that of the other pairs.
  assert stats.sign_flip_test([2, 3, 1], [1, 1, 1]) == pytest.approx(stats.min_sign_flip_p(2), abs=1e-15)
  # Pairing matters: the same values unpaired are far from significant (10 of 20 relabelings).
  assert stats.permutation_test([2.0, 3.1, 4.2], [1.0, 2.05, 3.15]) == pytest.approx(0.5, abs=1e-15)
  assert stats.sign_flip_test([2.0, 3.1, 4.2], [1.0, 2.05, 3.15]) == pytest.approx(2 / 8, abs=1e-15)
  for x, y, message in (([1], [2], "at least 2"), ([1, 2], [1], "same length"),
                        ([1, float("nan")], [1, 2], "finite")):
    with pytest.raises(ValueError, match=message):
      stats.sign_flip_test(x, y)
  with pytest.raises(ValueError, match="alternative"):
    stats.sign_flip_test([1, 2], [0, 0], "both")
