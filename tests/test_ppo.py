"""Tests for controller.ppo: config, masking, counters, baselines, checkpoints and learning."""

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402  (after controller.ppo, which selects legacy Keras)

from controller import base
from controller.landscapes import make_landscape
from controller.ppo import PPOConfig, PPOController
from search_space import default_space

ARITIES = default_space().arities
SMALL = {"lstm_size": 16, "num_epochs": 1}  # short graph tracing where learning is not tested


def test_config_defaults_and_checks():
  assert PPOConfig() == PPOConfig(learning_rate=5e-3, entropy_regularization=1e-3,
                                  importance_ratio_clipping=0.2, num_epochs=8, lstm_size=64,
                                  normalize_rewards=False, baseline_decay=0.9)
  bad = [({"learning_rate": 0.0}, r"learning_rate=0.0 is invalid; allowed: a number in \(0.0, 1.0\]"),
         ({"entropy_regularization": -1e-3}, r"entropy_regularization=-0.001 is invalid"),
         ({"importance_ratio_clipping": 0}, r"importance_ratio_clipping=0 is invalid"),
         ({"num_epochs": 0}, r"num_epochs=0 is invalid; allowed: an integer >= 1"),
         ({"lstm_size": 8.0}, r"lstm_size=8.0 is invalid"),
         ({"normalize_rewards": "yes"}, r"normalize_rewards='yes' is invalid; allowed: True or False"),
         ({"baseline_decay": 1.0}, r"baseline_decay=1.0 is invalid; allowed: a number in \[0.0, 1.0\)")]
  for kwargs, message in bad:
    with pytest.raises(ValueError, match=message):
      PPOConfig(**kwargs)
  assert PPOConfig(baseline_decay=None).baseline_decay is None


def test_a_fresh_controller_masks_counts_and_starts_near_uniform():
  c = PPOController(ARITIES, seed=0, **SMALL)
  # The policy starts close to uniform (small initial logits).
  assert abs(c.entropy() - base.uniform_entropy(ARITIES)) < 1.0
  samples = c.sample(32)
  info = np.stack([s.info for s in samples])
  assert info.shape == (32, 42, 4) and info.dtype == np.float32
  valid = np.arange(4)[None, :] < np.array(ARITIES)[:, None]
  assert np.all(info[:, ~valid] == -1e9)  # invalid options are masked, not folded
  assert np.all(np.abs(info[:, valid]) < 10)
  # The train step counter is an int64 variable that counts epochs.
  assert c.agent.train_step_counter.dtype == tf.int64
  assert isinstance(c.agent.train_step_counter, tf.Variable)
  c.update(samples, np.linspace(0.0, 1.0, 32))
  assert c.train_step == 1


def test_entropy_never_draws_from_the_controllers_rng():
  a = PPOController([2, 3, 4], seed=3, **SMALL)
  b = PPOController([2, 3, 4], seed=3, **SMALL)
  before = a.entropy()
  a.entropy()
  # a asked for its entropy twice, b never: their samples must still be the same.
  assert a.sample(16) == b.sample(16)
  # A fixed estimate: the same after sampling moved the controller's RNG, and a real entropy
  # (positive, at most the uniform policy's log 2 + log 3 + log 4).
  assert a.entropy() == before == b.entropy()
  assert 0.0 < before <= base.uniform_entropy([2, 3, 4])


def test_samples_without_info_learn_the_same_as_with_it():
  a = PPOController([2, 3, 4, 1, 3], seed=1, **SMALL)
  b = PPOController([2, 3, 4, 1, 3], seed=1, **SMALL)
  sa, sb = a.sample(12), b.sample(12)
  assert sa == sb
  rewards = np.linspace(0.2, 0.8, 12)
  with pytest.raises(ValueError, match=r"samples\[0\].info of shape \(3,\) is invalid; allowed: None "
                     r"or the logits \(5, 4\)"):
    a.update([base.Sample(sa[0].indices, info=np.zeros(3))], [0.5])
  ma = a.update(sa, rewards)
  mb = b.update([base.Sample(s.indices) for s in sb], rewards)  # e.g. rebuilt from a trials log
  assert mb == pytest.approx(ma, rel=1e-5, abs=1e-6)
  na, nb = a.sample(64), b.sample(64)
  assert na == nb


def test_baseline_is_a_moving_average_or_off():
  c = PPOController([2, 2], seed=0, baseline_decay=0.5, **SMALL)
  assert c.baseline is None
  m1 = c.update(c.sample(4), [0.0, 0.2, 0.4, 0.6])
  assert m1["baseline"] == pytest.approx(0.3, abs=1e-12)  # the first batch sets it
  m2 = c.update(c.sample(4), [1.0, 1.0, 1.0, 1.0])
  assert m2["baseline"] == pytest.approx(0.3, abs=1e-12)
  assert c.baseline == pytest.approx(0.65, abs=1e-12)
  off = PPOController([2, 2], seed=0, baseline_decay=None, normalize_rewards=True, **SMALL)
  m = off.update(off.sample(4), [0.0, 0.2, 0.4, 0.6])
  assert m["baseline"] == 0.0 and off.baseline is None
  assert np.isfinite(m["loss"])


def test_restore_brings_back_the_reward_normalizer(tmp_path):
  hp = dict(SMALL, normalize_rewards=True, baseline_decay=None)
  c = PPOController([3, 2, 4], seed=2, **hp)
  c.update(c.sample(8), np.linspace(0.0, 5.0, 8))
  c.save(str(tmp_path))
  fresh = PPOController([3, 2, 4], seed=2, **hp)
  assert fresh.restore(str(tmp_path)) is True
  a, a2 = c.sample(8), fresh.sample(8)
  assert a == a2
  # The normalizer's statistics shape the loss: equal losses mean they were restored.
  assert c.update(a, np.linspace(1.0, 9.0, 8)) == fresh.update(a2, np.linspace(1.0, 9.0, 8))
  assert c.sample(8) == fresh.sample(8)


def test_restore_refuses_other_network_sizes(tmp_path):
  PPOController([2, 3], **SMALL).save(str(tmp_path))
  with pytest.raises(ValueError, match=r"written with config=.*'lstm_size': 16.*this controller "
                     r"has config=.*'lstm_size': 8"):
    PPOController([2, 3], lstm_size=8, num_epochs=1).restore(str(tmp_path))


def run_search(c, land, batches: int, batch: int = 16) -> list[float]:
  """Mean noise-free score of each batch."""
  rng = np.random.default_rng(0)
  means = []
  for _ in range(batches):
    s = c.sample(batch)
    idx = [x.indices for x in s]
    c.update(s, land.reward(idx, rng))
    means.append(float(land.score(idx).mean()))
  return means


@pytest.mark.slow  # default-suite time: a 16 s learning run; PPO updates are checked by the tests above
def test_learns_a_small_landscape():
  arities = [2, 3, 4] * 4
  land = make_landscape("onemax", arities, seed=0)
  means = run_search(PPOController(arities, seed=0), land, batches=12)
  # Chance is mean(1/arity) = 0.36.
  assert np.mean(means[:2]) < 0.5
  assert np.mean(means[-3:]) > 0.7


@pytest.mark.slow
def test_learns_the_default_space_within_a_few_hundred_samples():
  land = make_landscape("onemax", ARITIES, seed=0)
  means = run_search(PPOController(ARITIES, seed=0), land, batches=24)  # 384 samples
  assert np.mean(means[:2]) < 0.55  # chance is 0.49
  assert np.mean(means[-3:]) > 0.85


def test_decision_probabilities_are_marginals_and_never_draw_from_the_controllers_rng():
  a = PPOController([2, 3, 1], seed=3, **SMALL)
  b = PPOController([2, 3, 1], seed=3, **SMALL)
  p = a.decision_probabilities()
  assert [len(row) for row in p] == [2, 3, 1]
  assert all(abs(sum(row) - 1.0) < 1e-9 for row in p) and p[2] == [1.0]
  assert a.sample(4) == b.sample(4)  # the estimate used a Generator of its own
