"""Tests for controller.categorical: masks, log-softmax, entropy and inverse-CDF sampling."""

import math

import numpy as np

from controller import categorical


def test_option_mask():
  np.testing.assert_array_equal(categorical.option_mask([1, 3, 2]),
                                [[True, False, False], [True, True, True], [True, True, False]])


def test_masked_log_softmax_ignores_masked_logits():
  mask = categorical.option_mask([2, 3])
  logits = np.array([[0.0, math.log(3.0), 100.0], [0.0, 0.0, 0.0]])
  lp = categorical.masked_log_softmax(logits, mask)
  np.testing.assert_allclose(np.exp(lp), [[0.25, 0.75, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-15)
  assert lp[0, 2] == -np.inf


def test_entropy_in_nats():
  mask = categorical.option_mask([1, 2, 4])
  lp = categorical.masked_log_softmax(np.zeros((3, 4)), mask)
  np.testing.assert_allclose(categorical.entropy(lp), [0.0, math.log(2), math.log(4)], atol=1e-15)
  lp = categorical.masked_log_softmax(np.log([[0.25, 0.75]]), categorical.option_mask([2]))
  expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  np.testing.assert_allclose(categorical.entropy(lp), [expected], atol=1e-15)


def test_sample_is_the_inverse_cdf():
  lp = categorical.masked_log_softmax(np.log([[0.25, 0.75, 1.0]]), np.array([[True, True, False]]))
  u = np.array([0.0, 0.2499, 0.25, 0.9999])
  np.testing.assert_array_equal(categorical.sample(lp, u, np.array(2)), [0, 0, 1, 1])


def test_sample_never_returns_a_masked_option():
  # A CDF that rounds to below 1 would otherwise point past the last valid option.
  lp = np.array([[math.log(0.5), math.log(0.5 - 1e-12), -np.inf, -np.inf]])
  np.testing.assert_array_equal(categorical.sample(lp, np.array([0.9999999999999]), np.array(2)), [1])


def test_sample_per_decision_rows():
  mask = categorical.option_mask([2, 3])
  lp = categorical.masked_log_softmax(np.zeros((2, 3)), mask)  # uniform rows
  u = np.array([[0.6, 0.6], [0.1, 0.9]])
  np.testing.assert_array_equal(categorical.sample(lp[None], u, np.array([2, 3])), [[1, 1], [0, 2]])
