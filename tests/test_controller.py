"""Tests for the controller package: the factory, the import hygiene, and the contract that
every controller keeps (valid samples; save → restore → identical samples and updates)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import controller
from search_space import default_space

ARITIES = default_space().arities
# Small PPO networks and one epoch keep the TF graph tracing short; test_ppo covers the defaults.
FAST = {"ppo": {"lstm_size": 16, "num_epochs": 1}, "evolution": {"population_size": 6,
                                                                  "tournament_size": 3}}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str) -> subprocess.CompletedProcess:
  env = dict(os.environ)
  env.pop("TF_USE_LEGACY_KERAS", None)
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, check=True)


def test_names_and_default():
  assert controller.NAMES == ("ppo", "reinforce", "evolution", "random")
  assert controller.DEFAULT == "ppo"


def test_unknown_name_lists_the_allowed_names():
  with pytest.raises(ValueError, match=r"controller name='rl' is unknown; allowed: \['ppo', "
                     r"'reinforce', 'evolution', 'random'\]"):
    controller.make("rl", [2, 2])


@pytest.mark.parametrize("name", controller.NAMES)
def test_unknown_hparam_is_named(name):
  with pytest.raises(ValueError, match=rf"unknown hparam 'bogus' for controller '{name}'"):
    controller.make(name, [2, 2], bogus=1)


@pytest.mark.parametrize("name", controller.NAMES)
def test_make_builds_the_named_controller(name):
  c = controller.make(name, [2, 3], seed=5, **FAST.get(name, {}))
  assert isinstance(c, controller.Controller)
  assert (c.NAME, c.arities, c.seed) == (name, (2, 3), 5)
  assert controller.controller_class(name) is type(c)


def test_import_is_light_and_ppo_selects_legacy_keras_only_when_built():
  out = run_python("import os, sys, controller; import controller.evolution, controller.random_controller, "
                   "controller.reinforce; print(os.environ.get('TF_USE_LEGACY_KERAS'), "
                   "'tensorflow' in sys.modules); controller.controller_class('ppo'); "
                   "print(os.environ.get('TF_USE_LEGACY_KERAS'), 'tf_keras' in sys.modules)")
  assert out.stdout.split() == ["None", "False", "1", "True"]


def test_ppo_import_hides_the_gym_banner():
  out = run_python("import controller, sys; controller.controller_class('ppo'); print('tf_agents' in sys.modules, 'gym' in sys.modules)")
  assert out.stdout.split() == ["True", "True"]  # gym did load ...
  assert "Gym has been unmaintained" not in out.stderr  # ... but said nothing
  assert "DeprecationWarning" not in out.stderr


def test_quiet_import_passes_other_output_through(capfd):
  with controller.quiet_tf_agents_import():
    sys.stderr.write("something else\n")
  assert capfd.readouterr().err == "something else\n"


# ----------------------------------------------------------------------------- the contract
def scored(samples, seed):
  """Rewards with some failed children (reward 0)."""
  r = np.random.default_rng(seed).uniform(0.3, 0.9, len(samples))
  r[::5] = 0.0
  return r


@pytest.mark.parametrize("name", controller.NAMES)
def test_ten_thousand_samples_are_valid(name):
  c = controller.make(name, ARITIES, seed=0, **FAST.get(name, {}))
  first = c.sample(16)
  metrics = c.update(first, scored(first, 0))
  assert {"loss", "entropy", "mean_reward"} <= set(metrics)
  assert all(isinstance(v, float) for v in metrics.values())
  idx = np.array([s.indices for _ in range(10) for s in c.sample(1000)])
  assert idx.shape == (10_000, len(ARITIES))
  assert idx.min() == 0 and np.all(idx < np.array(ARITIES))
  assert c.num_sampled == 10_016 and c.num_updates == 1


@pytest.mark.parametrize("name", controller.NAMES)
def test_restore_continues_exactly(name, tmp_path):
  hp = FAST.get(name, {})
  c = controller.make(name, ARITIES, seed=7, **hp)
  for step in range(2):
    s = c.sample(8)
    c.update(s, scored(s, step))
  c.save(str(tmp_path))
  # What the uninterrupted controller does next: sample, update, sample.
  a = c.sample(8)
  ma = c.update(a, scored(a, 10))
  b = c.sample(8)

  fresh = controller.make(name, ARITIES, seed=7, **hp)
  assert fresh.restore(str(tmp_path)) is True
  a2 = fresh.sample(8)
  assert a2 == a
  assert fresh.update(a2, scored(a2, 10)) == ma
  assert fresh.sample(8) == b
  assert (fresh.num_sampled, fresh.num_updates) == (c.num_sampled, c.num_updates)
