"""Tests for controller.landscapes: exact scores, noise and target drawing."""

import numpy as np
import pytest

from controller.landscapes import OPTIMUM, Landscape, make_landscape
from controller.random_controller import RandomController


def test_onemax_scores_the_matching_fraction():
  land = Landscape("onemax", (0, 1, 2, 1))
  np.testing.assert_array_equal(land.score([(0, 1, 2, 1), (0, 0, 2, 0), (1, 0, 0, 0)]),
                                [1.0, 0.5, 0.0])
  assert OPTIMUM == 1.0


def test_pairs_scores_adjacent_pairs_that_both_match():
  land = Landscape("pairs", (0, 1, 2, 1))
  # Pairs (0,1), (1,2), (2,3): the second vector matches decisions 0, 2, 3 only.
  np.testing.assert_array_equal(land.score([(0, 1, 2, 1), (0, 0, 2, 1), (0, 1, 0, 1)]),
                                [1.0, 1 / 3, 1 / 3])


def test_reward_adds_gaussian_noise():
  land = Landscape("onemax", (0, 1), noise=0.1)
  r = land.reward([(0, 1)] * 20_000, np.random.default_rng(0))
  assert r.mean() == pytest.approx(1.0, abs=0.003)
  assert r.std() == pytest.approx(0.1, abs=0.003)
  np.testing.assert_array_equal(Landscape("onemax", (0, 1), noise=0.0).reward(
      [(0, 0)], np.random.default_rng(0)), [0.5])


def test_bad_input():
  with pytest.raises(ValueError, match=r"landscape name='flat' is unknown; allowed: \['onemax', 'pairs'\]"):
    Landscape("flat", (0,))
  with pytest.raises(ValueError, match=r"target=\(0,\) is invalid for 'pairs'"):
    Landscape("pairs", (0,))
  with pytest.raises(ValueError, match=r"noise=-0.1 is invalid"):
    Landscape("onemax", (0,), noise=-0.1)
  with pytest.raises(ValueError, match=r"indices of shape \(1, 3\) are invalid; allowed: \[n, 2\]"):
    Landscape("onemax", (0, 1)).score([(0, 1, 0)])


def test_make_landscape_draws_a_valid_target_per_seed():
  arities = [2, 3, 4, 1] * 5
  a = make_landscape("onemax", arities, seed=0)
  assert a == make_landscape("onemax", arities, seed=0)
  assert a.target != make_landscape("onemax", arities, seed=1).target
  assert all(0 <= t < k for t, k in zip(a.target, arities))
  # The target comes from its own stream: a controller with the same seed does not start on it.
  first = RandomController(arities, seed=0).sample(1)[0].indices
  assert a.score([first])[0] < 1.0
