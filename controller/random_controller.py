"""Random search: every decision uniform over its valid options, independently."""

from __future__ import annotations

import numpy as np

from controller.base import Controller, Sample, uniform_entropy


class RandomController(Controller):
  """Uniform random search; `update` learns nothing but keeps the counters.

  Args:
    arities: how many options each decision has.
    seed: seeds the numpy Generator that draws the samples.
  """

  NAME = "random"

  def _sample(self, n: int) -> list[Sample]:
    idx = self._rng.integers(0, np.asarray(self._arities), size=(n, self.num_decisions))
    return [Sample(tuple(int(i) for i in row)) for row in idx]

  def _update(self, samples: list[Sample], rewards: np.ndarray) -> dict[str, float]:
    # Nothing is learned, so there is no loss to report.
    return {"loss": 0.0, "entropy": self.entropy()}

  def entropy(self) -> float:
    return uniform_entropy(self._arities)
