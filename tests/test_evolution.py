"""Tests for controller.evolution: random start, mutation, tournaments, aging, checkpoints."""

import math

import numpy as np
import pytest

from controller.base import Sample
from controller.evolution import EvolutionConfig, EvolutionController
from search_space import default_space

ARITIES = default_space().arities


def hamming(a, b) -> int:
  return sum(x != y for x, y in zip(a, b))


def test_config_checks():
  assert EvolutionConfig() == EvolutionConfig(population_size=50, tournament_size=10)
  with pytest.raises(ValueError, match=r"population_size=1 is invalid; allowed: an integer >= 2"):
    EvolutionConfig(population_size=1)
  with pytest.raises(ValueError, match=r"tournament_size=0 is invalid"):
    EvolutionConfig(tournament_size=0)
  with pytest.raises(ValueError, match=r"tournament_size=11 is invalid; allowed: an integer in "
                     r"1..population_size=10"):
    EvolutionConfig(population_size=10, tournament_size=11)


def test_mutation_changes_exactly_one_decision_to_another_valid_option():
  c = EvolutionController(ARITIES, seed=0)
  parent = tuple(a - 1 for a in ARITIES)
  changed = set()
  for _ in range(3000):
    child = c.mutate(parent)
    diff = [d for d in range(len(ARITIES)) if child[d] != parent[d]]
    assert len(diff) == 1
    d = diff[0]
    assert 0 <= child[d] < ARITIES[d]
    changed.add(d)
  # Every decision with a choice is mutated sometimes; single-option ones never.
  assert changed == {d for d, a in enumerate(ARITIES) if a > 1}


def test_mutation_reaches_every_other_option():
  c = EvolutionController([4], seed=1)
  assert {c.mutate((2,))[0] for _ in range(200)} == {0, 1, 3}
  assert EvolutionController([1, 1]).mutate((0, 0)) == (0, 0)  # nothing can change


def test_the_first_population_size_samples_are_random_then_children():
  c = EvolutionController(ARITIES, seed=0, population_size=8, tournament_size=3)
  first = c.sample(8)
  # Random draws over 42 decisions are far apart; children are one step from a member.
  assert min(hamming(a.indices, b.indices) for i, a in enumerate(first) for b in first[i + 1:]) > 5
  c.update(first, np.linspace(0.1, 0.8, 8))
  members = [m[0] for m in c.population]
  for child in c.sample(20):
    assert min(hamming(child.indices, m) for m in members) == 1


def test_an_empty_population_falls_back_to_random():
  c = EvolutionController(ARITIES, seed=0, population_size=4, tournament_size=2)
  batch = c.sample(10)  # nothing is scored yet, so samples 5..10 cannot have parents
  assert min(hamming(a.indices, b.indices) for i, a in enumerate(batch) for b in batch[i + 1:]) > 5


def test_tournaments_prefer_the_best_member():
  # Ten far-apart members; only one has a high reward. With S = 10 draws out of
  # 10 members, the best is drawn (and so is the parent) with p = 1 - 0.9^10 = 0.651.
  c = EvolutionController(ARITIES, seed=5, population_size=10, tournament_size=10)
  members = c.sample(10)
  rewards = np.full(10, 0.1)
  rewards[3] = 0.9
  c.update(members, rewards)
  best = members[3].indices
  children = c.sample(2000)
  share = np.mean([hamming(ch.indices, best) == 1 for ch in children])
  assert share == pytest.approx(1 - 0.9 ** 10, abs=0.04)


def test_a_tournament_of_one_picks_uniformly():
  c = EvolutionController(ARITIES, seed=6, population_size=4, tournament_size=1)
  members = c.sample(4)
  c.update(members, [0.9, 0.1, 0.1, 0.1])
  share = np.mean([hamming(ch.indices, members[0].indices) == 1 for ch in c.sample(2000)])
  assert share == pytest.approx(0.25, abs=0.04)


def test_aging_keeps_the_most_recent_members_not_the_best():
  c = EvolutionController([3, 3], seed=0, population_size=3, tournament_size=2)
  s = c.sample(5)
  c.update(s[:2], [0.9, 0.8])
  c.update(s[2:], [0.1, 0.2, 0.3])
  assert c.population == [(s[2].indices, 0.1), (s[3].indices, 0.2), (s[4].indices, 0.3)]
  assert c.history == [(x.indices, r) for x, r in zip(s, [0.9, 0.8, 0.1, 0.2, 0.3])]


def test_update_metrics_and_population_entropy():
  c = EvolutionController([2, 3], seed=0, population_size=4, tournament_size=2)
  assert c.entropy() == pytest.approx(math.log(6), abs=1e-15)  # nothing scored: uniform
  metrics = c.update([Sample((0, 0)), Sample((1, 0)), Sample((1, 2)), Sample((1, 0))],
                     [0.2, 0.4, 0.6, 0.0])
  # Decision 0: frequencies (1/4, 3/4); decision 1: (3/4, 0, 1/4).
  h = -2 * (0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  assert metrics == {"loss": 0.0, "entropy": pytest.approx(h, abs=1e-12),
                     "population_mean_reward": pytest.approx(0.3, abs=1e-12),
                     "population_best_reward": 0.6, "mean_reward": pytest.approx(0.3, abs=1e-12)}


def test_restore_brings_back_population_and_history(tmp_path):
  c = EvolutionController([3, 2, 4], seed=2, population_size=4, tournament_size=2)
  s = c.sample(6)
  c.update(s, [0.1, 0.5, 0.3, 0.7, 0.2, 0.6])
  c.save(str(tmp_path))
  fresh = EvolutionController([3, 2, 4], seed=0, population_size=4, tournament_size=2)
  assert fresh.restore(str(tmp_path)) is True
  assert fresh.population == c.population and fresh.history == c.history
  assert fresh.sample(10) == c.sample(10)
