"""Tests for controller.base: Sample, argument checks, the update/restore contract and
atomic checkpoints (the concrete controller here is the light `random` one)."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from controller import base
from controller.evolution import EvolutionController
from controller.random_controller import RandomController


def test_sample_compares_indices_only_and_is_frozen():
  a = base.Sample((1, 2), info=np.zeros(3))
  assert a == base.Sample((1, 2), info="other")
  assert a != base.Sample((2, 1))
  assert hash(a) == hash(base.Sample((1, 2)))
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.indices = (0, 0)


@pytest.mark.parametrize("arities,message", [
    ([], r"arities=\(\) is invalid"),
    ([2, 0], r"arities\[1\]=0 is invalid; allowed: an integer >= 1"),
    ([2, True], r"arities\[1\]=True is invalid"),
    ([2.0], r"arities\[0\]=2.0 is invalid"),
    (None, r"arities=None is invalid; allowed: a non-empty sequence"),
])
def test_check_arities_refuses(arities, message):
  with pytest.raises(ValueError, match=message):
    base.check_arities(arities)


def test_check_arities_accepts_numpy_ints():
  assert base.check_arities(np.array([1, 4])) == (1, 4)


def test_scalar_checks():
  assert base.check_int("n", 3, 1) == 3
  with pytest.raises(ValueError, match=r"n=0 is invalid; allowed: an integer >= 1"):
    base.check_int("n", 0, 1)
  with pytest.raises(ValueError, match=r"n=2.5 is invalid"):
    base.check_int("n", 2.5, 1)
  assert base.check_float("lr", 1, 0.0, 1.0, low_open=True) == 1.0
  with pytest.raises(ValueError, match=r"lr=0.0 is invalid; allowed: a number in \(0.0, 1.0\]"):
    base.check_float("lr", 0.0, 0.0, 1.0, low_open=True)
  with pytest.raises(ValueError, match=r"decay=1.0 is invalid; allowed: a number in \[0.0, 1.0\)"):
    base.check_float("decay", 1.0, 0.0, 1.0, high_open=True)
  with pytest.raises(ValueError, match=r"x=nan is invalid"):
    base.check_float("x", math.nan, 0.0, 1.0)
  assert base.check_bool("flag", np.True_) is True
  with pytest.raises(ValueError, match=r"flag=1 is invalid; allowed: True or False"):
    base.check_bool("flag", 1)


def test_unknown_hparam_is_named():
  with pytest.raises(ValueError, match=r"unknown hparam 'population' for controller 'evolution'; "
                     r"allowed: \['population_size', 'tournament_size'\]"):
    EvolutionController([2, 2], population=3)
  with pytest.raises(ValueError, match=r"unknown hparam 'lr' for controller 'random'; allowed: \[\]"):
    RandomController([2, 2], lr=1.0)


def test_advance_baseline():
  used, nxt = base.advance_baseline(None, np.array([0.2, 0.6]), 0.9)  # the first batch starts it
  assert used == pytest.approx(0.4, abs=1e-15) and nxt == pytest.approx(0.4, abs=1e-15)
  used, nxt = base.advance_baseline(0.4, np.array([1.0, 1.0]), 0.75)
  assert used == 0.4 and nxt == pytest.approx(0.55, abs=1e-15)


def test_uniform_entropy():
  assert base.uniform_entropy([1, 2, 3]) == pytest.approx(math.log(6), abs=1e-15)


def test_sample_and_seed_checks():
  c = RandomController([2, 3])
  for n in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match=rf"n={n!r} is invalid; allowed: an integer >= 1"):
      c.sample(n)
  with pytest.raises(ValueError, match=r"seed=-1 is invalid"):
    RandomController([2], seed=-1)


def test_update_checks_its_inputs():
  c = RandomController([2, 3])
  s = c.sample(2)
  with pytest.raises(ValueError, match=r"got 2 samples and rewards of shape \(1,\)"):
    c.update(s, [0.5])
  with pytest.raises(ValueError, match=r"got 0 samples"):
    c.update([], [])
  with pytest.raises(ValueError, match=r"rewards=\[0.5, nan\] is invalid; allowed: finite numbers"):
    c.update(s, [0.5, math.nan])
  with pytest.raises(ValueError, match=r"samples\[1\].indices=\(0, 3\) is invalid; allowed: 2 indices"):
    c.update([s[0], base.Sample((0, 3))], [0.5, 0.5])
  with pytest.raises(ValueError, match=r"samples\[0\].indices=\(0,\) is invalid"):
    c.update([base.Sample((0,))], [0.5])
  assert c.num_updates == 0
  metrics = c.update(s, [0.25, 0.75])
  assert metrics == {"loss": 0.0, "entropy": pytest.approx(math.log(6), abs=1e-12), "mean_reward": 0.5}
  assert c.num_updates == 1 and c.num_sampled == 2


# ----------------------------------------------------------------------------- checkpoints
def test_restore_without_checkpoint_returns_false(tmp_path):
  c = RandomController([2, 3])
  assert c.restore(str(tmp_path / "missing")) is False
  assert c.restore(str(tmp_path)) is False
  assert base.latest_checkpoint(str(tmp_path)) is None


def test_save_writes_one_checkpoint_and_a_pointer(tmp_path):
  c = RandomController([2, 3], seed=4)
  c.sample(3)
  c.save(str(tmp_path))
  c.save(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["LATEST", "ckpt-000002"]
  with open(tmp_path / "LATEST") as f:
    assert json.load(f) == {"checkpoint": "ckpt-000002"}
  with open(tmp_path / "ckpt-000002" / "state.json") as f:
    state = json.load(f)
  assert (state["controller"], state["arities"], state["num_sampled"], state["seed"]) == (
      "random", [2, 3], 3, 4)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
  c = RandomController([2, 3])
  c.save(str(tmp_path))
  expected = c.sample(5)

  def failing_write(folder):
    with open(os.path.join(folder, "half"), "w") as f:
      f.write("partial")
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    base.write_checkpoint(str(tmp_path), failing_write)
  assert sorted(os.listdir(tmp_path)) == ["LATEST", "ckpt-000001"]
  fresh = RandomController([2, 3], seed=99)
  assert fresh.restore(str(tmp_path)) is True
  assert fresh.sample(5) == expected


def test_a_crash_before_the_pointer_moves_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  c = RandomController([2, 3])
  c.save(str(tmp_path))
  expected = c.sample(4)

  def crash(path, obj):
    raise OSError("power cut")

  with monkeypatch.context() as m:
    m.setattr(base, "write_json_atomic", crash)
    with pytest.raises(OSError, match="power cut"):
      c.save(str(tmp_path))  # ckpt-000002 is in place, LATEST still names ckpt-000001
  assert sorted(os.listdir(tmp_path)) == ["LATEST", "ckpt-000001", "ckpt-000002"]
  fresh = RandomController([2, 3])
  assert fresh.restore(str(tmp_path)) is True
  assert fresh.sample(4) == expected
  # The next save replaces the orphan and cleans up.
  fresh.save(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["LATEST", "ckpt-000002"]
  assert base.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-000002")


def test_write_json_atomic_replaces_the_file(tmp_path):
  path = str(tmp_path / "x.json")
  base.write_json_atomic(path, {"a": 1})
  base.write_json_atomic(path, {"a": 2})
  with open(path) as f:
    assert json.load(f) == {"a": 2}
  assert os.listdir(tmp_path) == ["x.json"]


def test_a_pointer_to_a_missing_checkpoint_is_reported(tmp_path):
  base.write_json_atomic(str(tmp_path / "LATEST"), {"checkpoint": "ckpt-000007"})
  with pytest.raises(ValueError, match=r"is corrupt: LATEST names 'ckpt-000007', which has no state.json"):
    RandomController([2]).restore(str(tmp_path))


def test_restore_refuses_another_controller_space_or_config(tmp_path):
  EvolutionController([2, 3], population_size=4, tournament_size=2).save(str(tmp_path))
  with pytest.raises(ValueError, match=r"written with controller='evolution'; this controller has "
                     r"controller='random'"):
    RandomController([2, 3]).restore(str(tmp_path))
  with pytest.raises(ValueError, match=r"written with arities=\[2, 3\]; this controller has "
                     r"arities=\[2, 4\]"):
    EvolutionController([2, 4], population_size=4, tournament_size=2).restore(str(tmp_path))
  with pytest.raises(ValueError, match=r"written with config=\{'population_size': 4, "
                     r"'tournament_size': 2\}; this controller has config=\{'population_size': 5"):
    EvolutionController([2, 3], population_size=5, tournament_size=2).restore(str(tmp_path))


def test_restore_brings_back_rng_counters_and_seed(tmp_path):
  c = RandomController([3, 4, 2], seed=11)
  c.update(c.sample(7), np.linspace(0, 1, 7))
  c.save(str(tmp_path))
  fresh = RandomController([3, 4, 2], seed=0)
  assert fresh.restore(str(tmp_path)) is True
  assert (fresh.seed, fresh.num_sampled, fresh.num_updates) == (11, 7, 1)
  assert fresh.sample(20) == c.sample(20)
