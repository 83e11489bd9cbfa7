"""Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image
Classifier Architecture Search", Algorithm 1).

The first `population_size` samples are uniform random. After that each sample
is a child: `tournament_size` members are drawn from the population (with
replacement), the best one is the parent, and exactly one of its decisions is
mutated to a different valid option. Rewards arrive after sampling, so the
population changes in `update`: each scored sample joins it and the oldest
members leave once it exceeds `population_size` (aging, not culling the worst).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping

import numpy as np

from controller.base import Controller, Sample, uniform_entropy
from nas_common import check_int


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
  """Hparams of regularized evolution.

  Attributes:
    population_size: P, how many of the most recent scored samples make the population.
    tournament_size: S, how many members a tournament draws (S <= P).
  """

  population_size: int = 50
  tournament_size: int = 10

  def __post_init__(self):
    check_int("population_size", self.population_size, 2)
    check_int("tournament_size", self.tournament_size, 1)
    if self.tournament_size > self.population_size:
      raise ValueError(f"tournament_size={self.tournament_size} is invalid; allowed: an integer "
                       f"in 1..population_size={self.population_size}")


class EvolutionController(Controller):
  """Regularized evolution (see the module docstring).

  Args:
    arities: how many options each decision has.
    seed: seeds the numpy Generator behind sampling, tournaments and mutations.
    population_size, tournament_size: see `EvolutionConfig`.
  """

  NAME = "evolution"
  Config = EvolutionConfig

  def __init__(self, arities, seed: int = 0, **hparams):
    super().__init__(arities, seed, **hparams)
    # (indices, reward), oldest first.
    self._population: collections.deque = collections.deque()
    self._history: list[tuple[tuple[int, ...], float]] = []
    self._mutable = np.array([d for d, a in enumerate(self._arities) if a > 1], np.int64)

  @property
  def population(self) -> list[tuple[tuple[int, ...], float]]:
    """The current population as (indices, reward), oldest first."""
    return list(self._population)

  @property
  def history(self) -> list[tuple[tuple[int, ...], float]]:
    """Every scored sample as (indices, reward), in order."""
    return list(self._history)

  def _random(self) -> tuple[int, ...]:
    return tuple(int(self._rng.integers(a)) for a in self._arities)

  def mutate(self, parent: tuple[int, ...]) -> tuple[int, ...]:
    """`parent` with exactly one decision changed to a different valid option.

    A space where every decision has a single option cannot change; then the
    parent itself comes back.
    """
    if self._mutable.size == 0:
      return tuple(parent)
    d = int(self._mutable[self._rng.integers(self._mutable.size)])
    # Draw among the other arity-1 options, then skip over the current one.
    new = int(self._rng.integers(self._arities[d] - 1))
    child = list(parent)
    child[d] = new + (new >= parent[d])
    return tuple(child)

  def _sample(self, n: int) -> list[Sample]:
    out = []
    for k in range(n):
      # An empty population (a first batch larger than P) also falls back to random.
      if self._num_sampled + k < self.config.population_size or not self._population:
        out.append(Sample(self._random()))
        continue
      picks = self._rng.integers(len(self._population), size=self.config.tournament_size)
      # The first best in draw order wins ties.
      parent = max((self._population[int(i)] for i in picks), key=lambda m: m[1])[0]
      out.append(Sample(self.mutate(parent)))
    return out

  def _update(self, samples: list[Sample], rewards: np.ndarray) -> dict[str, float]:
    for s, r in zip(samples, rewards):
      member = (tuple(int(i) for i in s.indices), float(r))
      self._population.append(member)
      self._history.append(member)
      if len(self._population) > self.config.population_size:
        self._population.popleft()  # aging: the oldest dies
    pop_rewards = [m[1] for m in self._population]
    # Evolution has no loss; 0.0 keeps the metric present for the search loop.
    return {"loss": 0.0, "entropy": self.entropy(),
            "population_mean_reward": float(np.mean(pop_rewards)),
            "population_best_reward": float(np.max(pop_rewards))}

  def entropy(self) -> float:
    """The entropy of the population's per-decision option frequencies (its diversity).

    Before any member is scored, sampling is uniform and so is this.
    """
    if not self._population:
      return uniform_entropy(self._arities)
    idx = np.array([m[0] for m in self._population], np.int64)
    total = 0.0
    for d, a in enumerate(self._arities):
      p = np.bincount(idx[:, d], minlength=a) / len(idx)
      p = p[p > 0]
      total -= float((p * np.log(p)).sum())
    return total

  def _state(self) -> dict[str, Any]:
    return {"population": [[list(m[0]), m[1]] for m in self._population],
            "history": [[list(m[0]), m[1]] for m in self._history]}

  def _load_state(self, state: Mapping[str, Any]) -> None:
    self._population = collections.deque((tuple(i), float(r)) for i, r in state["population"])
    self._history = [(tuple(i), float(r)) for i, r in state["history"]]
