"""Tests for rewards: exact values on hand-computed cases and the input checks."""

import math
import subprocess
import sys

import numpy as np
import pytest

import rewards


def test_mnas_at_target_is_the_accuracy():
  assert rewards.mnas(0.8, 400e6, 400e6) == 0.8


def test_mnas_default_w_at_twice_the_target():
  # 2 ** -0.07 = exp(-0.0485203) = 1 - 0.0485203 + 0.0011771 - 0.0000190 + 0.0000002 = 0.9526380
  assert rewards.mnas(0.8, 800e6, 400e6) == pytest.approx(0.8 * 0.9526380, abs=1e-7)


def test_mnas_with_w_minus_one_is_accuracy_over_ratio():
  assert rewards.mnas(0.5, 800.0, 400.0, w=-1.0) == 0.25
  assert rewards.mnas(0.75, 200.0, 400.0, w=-1.0) == 1.5


def test_mnas_w_zero_ignores_the_cost():
  assert rewards.mnas(0.6, 123.0, 400.0, w=0.0) == 0.6


def test_mnas_hard_is_flat_at_and_below_the_target():
  assert rewards.mnas_hard(0.8, 200.0, 400.0) == 0.8
  assert rewards.mnas_hard(0.8, 400.0, 400.0) == 0.8


def test_mnas_hard_penalizes_above_the_target():
  assert rewards.mnas_hard(0.8, 800.0, 400.0) == 0.4
  assert rewards.mnas_hard(0.8, 800.0, 400.0, beta=-2.0) == 0.2


def test_abs_reward_at_below_and_above_the_target():
  assert rewards.abs_reward(0.8, 400.0, 400.0) == 0.8
  assert rewards.abs_reward(0.8, 600.0, 400.0) == pytest.approx(0.75, abs=1e-12)
  assert rewards.abs_reward(0.8, 200.0, 400.0) == pytest.approx(0.75, abs=1e-12)
  assert rewards.abs_reward(0.5, 1200.0, 400.0, beta=-0.5) == pytest.approx(-0.5, abs=1e-12)


def test_numpy_numbers_are_accepted():
  assert rewards.mnas(np.float32(0.5), np.int64(800), 400, w=-1.0) == 0.25


def test_registry_and_defaults():
  assert set(rewards.REWARDS) == {"mnas", "mnas_hard", "abs"}
  assert rewards.default_coefficient("mnas") == -0.07
  assert rewards.default_coefficient("mnas_hard") == -1.0
  assert rewards.default_coefficient("abs") == -0.10
  with pytest.raises(TypeError):
    rewards.REWARDS["other"] = rewards.mnas  # read-only


def test_compute_uses_the_default_or_the_given_coefficient():
  assert rewards.compute("mnas", 0.8, 800e6, 400e6) == rewards.mnas(0.8, 800e6, 400e6)
  assert rewards.compute("mnas", 0.5, 800.0, 400.0, coefficient=-1.0) == 0.25
  assert rewards.compute("mnas_hard", 0.8, 800.0, 400.0) == 0.4
  assert rewards.compute("mnas_hard", 0.8, 100.0, 400.0, coefficient=-3.0) == 0.8
  assert rewards.compute("abs", 0.8, 600.0, 400.0) == pytest.approx(0.75, abs=1e-12)
  assert rewards.compute("abs", 0.8, 600.0, 400.0, coefficient=-0.2) == pytest.approx(0.7, abs=1e-12)


@pytest.mark.parametrize("fn", [rewards.mnas, rewards.mnas_hard, rewards.abs_reward])
@pytest.mark.parametrize("accuracy", [-0.01, 1.01, math.nan, True, "0.5"])
def test_bad_accuracy_is_refused(fn, accuracy):
  with pytest.raises(ValueError, match=r"accuracy=.*allowed: a number in \[0, 1\]"):
    fn(accuracy, 400.0, 400.0)


@pytest.mark.parametrize("fn", [rewards.mnas, rewards.mnas_hard, rewards.abs_reward])
@pytest.mark.parametrize("arg", ["cost", "target"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_non_positive_cost_or_target_is_refused(fn, arg, value):
  kwargs = {"cost": 400.0, "target": 400.0, arg: value}
  with pytest.raises(ValueError, match=rf"{arg}=.*allowed: a finite number > 0"):
    fn(0.5, **kwargs)


def test_positive_exponents_are_refused():
  with pytest.raises(ValueError, match=r"w=0.07 is invalid; allowed: a finite number <= 0"):
    rewards.mnas(0.5, 400.0, 400.0, w=0.07)
  with pytest.raises(ValueError, match=r"beta=1.0 is invalid"):
    rewards.mnas_hard(0.5, 400.0, 400.0, beta=1.0)
  with pytest.raises(ValueError, match=r"beta=0.1 is invalid"):
    rewards.abs_reward(0.5, 400.0, 400.0, beta=0.1)
  with pytest.raises(ValueError, match=r"w=nan is invalid"):
    rewards.compute("mnas", 0.5, 400.0, 400.0, coefficient=math.nan)


def test_unknown_reward_name_lists_the_allowed_names():
  msg = r"reward name='soft' is unknown; allowed: \['abs', 'mnas', 'mnas_hard'\]"
  with pytest.raises(ValueError, match=msg):
    rewards.compute("soft", 0.5, 400.0, 400.0)
  with pytest.raises(ValueError, match=msg):
    rewards.default_coefficient("soft")


def test_select_cost_picks_the_kind():
  assert rewards.COST_KINDS == ("flops", "params", "latency")
  assert rewards.select_cost("flops", flops=390e6, params=5.3e6) == 390e6
  assert rewards.select_cost("params", flops=390e6, params=5.3e6) == 5.3e6
  assert rewards.select_cost("latency", flops=390e6, params=5.3e6, latency_ms=12.5) == 12.5
  assert isinstance(rewards.select_cost("flops", flops=390, params=5), float)


def test_select_cost_errors():
  with pytest.raises(ValueError, match=r"cost kind='macs' is unknown; allowed: \['flops', 'params', 'latency'\]"):
    rewards.select_cost("macs", flops=1.0, params=1.0)
  with pytest.raises(ValueError, match=r"latency_ms=None is invalid for cost kind 'latency'"):
    rewards.select_cost("latency", flops=1.0, params=1.0)
  with pytest.raises(ValueError, match=r"latency_ms=-2.0 is invalid"):
    rewards.select_cost("latency", flops=1.0, params=1.0, latency_ms=-2.0)
  with pytest.raises(ValueError, match=r"params=0 is invalid"):
    rewards.select_cost("params", flops=1.0, params=0)
  # The unselected numbers are not checked: a missing latency never blocks a FLOPs reward.
  assert rewards.select_cost("flops", flops=2.0, params=-1.0, latency_ms=None) == 2.0
  with pytest.raises(TypeError):
    rewards.select_cost("flops", 1.0, 1.0)  # keyword-only numbers


def test_rewards_import_no_tensorflow():
  code = "import sys, rewards; assert 'tensorflow' not in sys.modules; assert 'search_space' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)
