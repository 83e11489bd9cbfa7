"""Tests for controller.random_controller: validity, uniformity and reproducibility."""

import math

import numpy as np
import pytest

from controller.random_controller import RandomController
from search_space import default_space

ARITIES = default_space().arities
Z_999 = 3.090232  # the standard normal's 0.999 quantile


def chi_square(idx: np.ndarray, arities) -> tuple[float, int]:
  """Pearson's statistic against uniform, summed over decisions, and its degrees of freedom."""
  stat, dof = 0.0, 0
  for d, a in enumerate(arities):
    if a == 1:
      continue
    counts = np.bincount(idx[:, d], minlength=a)
    expected = len(idx) / a
    stat += float(((counts - expected) ** 2 / expected).sum())
    dof += a - 1
  return stat, dof


def chi_square_critical(dof: int, z: float) -> float:
  """The Wilson–Hilferty approximation of the chi-square quantile at normal quantile z."""
  c = 2.0 / (9.0 * dof)
  return dof * (1.0 - c + z * math.sqrt(c)) ** 3


def test_samples_are_valid_and_uniform():
  c = RandomController(ARITIES, seed=0)
  idx = np.array([s.indices for s in c.sample(10_000)])
  assert idx.shape == (10_000, 42)
  assert idx.min() == 0
  assert np.all(idx < np.array(ARITIES))
  stat, dof = chi_square(idx, ARITIES)
  assert dof == sum(a - 1 for a in ARITIES) == 58
  assert stat < chi_square_critical(dof, Z_999)
  # Every option of every decision shows up.
  for d, a in enumerate(ARITIES):
    assert len(np.unique(idx[:, d])) == a


def test_the_uniformity_check_catches_a_bias():
  rng = np.random.default_rng(0)
  biased = np.stack([rng.choice(a, size=10_000, p=np.r_[0.55, np.full(a - 1, 0.45 / (a - 1))])
                     if a > 1 else np.zeros(10_000, np.int64) for a in ARITIES], axis=1)
  stat, dof = chi_square(biased, ARITIES)
  assert stat > chi_square_critical(dof, Z_999)


def test_the_critical_value_approximation():
  # Tables: chi-square 0.999 quantiles for 10 and 50 degrees of freedom, within 1%.
  assert chi_square_critical(10, Z_999) == pytest.approx(29.588, rel=0.01)
  assert chi_square_critical(50, Z_999) == pytest.approx(86.661, rel=0.01)


def test_same_seed_same_samples_other_seed_other_samples():
  a = RandomController(ARITIES, seed=3).sample(50)
  assert a == RandomController(ARITIES, seed=3).sample(50)
  assert a != RandomController(ARITIES, seed=4).sample(50)


def test_single_option_decisions_always_get_zero():
  idx = np.array([s.indices for s in RandomController([1, 3, 1], seed=1).sample(200)])
  assert set(idx[:, 0]) == {0} and set(idx[:, 2]) == {0} and set(idx[:, 1]) == {0, 1, 2}


def test_entropy_and_metrics():
  c = RandomController([2, 4], seed=0)
  assert c.entropy() == pytest.approx(math.log(8), abs=1e-15)
  metrics = c.update(c.sample(4), [0.0, 0.0, 1.0, 1.0])
  assert metrics == {"loss": 0.0, "entropy": pytest.approx(math.log(8), abs=1e-15), "mean_reward": 0.5}
