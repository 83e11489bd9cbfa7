"""Tests for controller.reinforce: the first step by hand, the baseline, learning, checkpoints."""

import math

import numpy as np
import pytest

from controller.base import Sample
from controller.landscapes import make_landscape
from controller.reinforce import ReinforceConfig, ReinforceController
from search_space import default_space


def test_config_checks():
  assert ReinforceConfig() == ReinforceConfig(learning_rate=0.2, baseline_decay=0.9,
                                              entropy_regularization=0.0)
  with pytest.raises(ValueError, match=r"learning_rate=0 is invalid; allowed: a number in \(0.0, 10.0\]"):
    ReinforceConfig(learning_rate=0)
  with pytest.raises(ValueError, match=r"baseline_decay=1.0 is invalid"):
    ReinforceConfig(baseline_decay=1.0)


def test_starts_uniform():
  c = ReinforceController([2, 3, 1])
  assert c.entropy() == pytest.approx(math.log(6), abs=1e-12)
  np.testing.assert_allclose(np.exp(c.log_probs()), [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [1, 0, 0]],
                             atol=1e-15)


def test_first_update_by_hand():
  c = ReinforceController([2], learning_rate=0.2)
  metrics = c.update([Sample((0,)), Sample((1,))], [1.0, 0.0])
  # Baseline 0.5, advantages ±0.5, gradient (0.25, -0.25); Adam's first step is
  # lr·sign(gradient), so the logits become (0.2, -0.2): p0 = sigmoid(0.4).
  assert math.exp(c.log_probs()[0, 0]) == pytest.approx(1 / (1 + math.exp(-0.4)), abs=1e-7)
  # Loss −mean(adv·log π) = −(0.5·log ½ − 0.5·log ½)/2 = 0 before the step.
  assert metrics["loss"] == pytest.approx(0.0, abs=1e-15)
  assert metrics["baseline"] == 0.5 and metrics["mean_reward"] == 0.5
  assert metrics["entropy"] == pytest.approx(c.entropy(), abs=1e-15)


def test_baseline_is_a_moving_average():
  c = ReinforceController([2, 2], baseline_decay=0.75)
  assert c.baseline is None
  m1 = c.update(c.sample(2), [0.2, 0.6])  # the first batch sets it
  assert m1["baseline"] == pytest.approx(0.4, abs=1e-15)
  m2 = c.update(c.sample(2), [1.0, 1.0])
  assert m2["baseline"] == pytest.approx(0.4, abs=1e-15)
  assert c.baseline == pytest.approx(0.75 * 0.4 + 0.25 * 1.0, abs=1e-15)


def test_entropy_bonus_keeps_the_policy_wider():
  def entropy_after(weight):
    c = ReinforceController([3] * 5, seed=0, entropy_regularization=weight)
    land = make_landscape("onemax", [3] * 5, seed=0, noise=0.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
      s = c.sample(8)
      c.update(s, land.reward([x.indices for x in s], rng))
    return c.entropy()
  assert entropy_after(0.5) > entropy_after(0.0) + 0.5


def test_learns_a_hidden_target():
  arities = default_space().arities
  c = ReinforceController(arities, seed=0)
  land = make_landscape("onemax", arities, seed=1)
  rng = np.random.default_rng(0)
  means = []
  for _ in range(25):
    s = c.sample(16)
    idx = [x.indices for x in s]
    c.update(s, land.reward(idx, rng))
    means.append(land.score(idx).mean())
  assert np.mean(means[:3]) < 0.55
  assert np.mean(means[-3:]) > 0.75


def test_restore_brings_back_logits_adam_and_baseline(tmp_path):
  c = ReinforceController([2, 3, 4], seed=3)
  for _ in range(3):
    s = c.sample(4)
    c.update(s, [0.1, 0.4, 0.2, 0.9])
  c.save(str(tmp_path))
  fresh = ReinforceController([2, 3, 4], seed=0)
  assert fresh.restore(str(tmp_path)) is True
  np.testing.assert_array_equal(fresh.log_probs(), c.log_probs())
  assert fresh.baseline == c.baseline
  s1, s2 = c.sample(6), fresh.sample(6)
  assert s1 == s2
  assert c.update(s1, np.linspace(0, 1, 6)) == fresh.update(s2, np.linspace(0, 1, 6))
  np.testing.assert_array_equal(fresh.log_probs(), c.log_probs())


def test_decision_probabilities_are_the_policy_and_other_controllers_refuse():
  import controller
  c = controller.make("reinforce", [2, 3], seed=0)
  fresh = c.decision_probabilities()  # zero logits: uniform
  assert [len(row) for row in fresh] == [2, 3]
  assert all(abs(v - 1 / len(row)) < 1e-9 for row in fresh for v in row)
  c.update(c.sample(4), [1.0, 0.0, 0.0, 0.0])
  assert c.decision_probabilities() != fresh  # it follows the policy as it learns
  with pytest.raises(NotImplementedError, match="random"):
    controller.make("random", [2, 3]).decision_probabilities()
