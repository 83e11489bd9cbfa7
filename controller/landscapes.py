"""Synthetic reward landscapes over index vectors, for testing and benchmarking controllers.

Each landscape hides a target index vector drawn from a seed. Its noise-free
`score` is 1.0 exactly at the target (the optimum) and lower elsewhere;
`reward` adds Gaussian noise, as a child's validation accuracy would.

- `onemax`: the fraction of decisions that match the target (separable).
- `pairs`: the fraction of adjacent decision pairs that both match (each
  decision only pays off together with its neighbour, so there is epistasis).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from controller.base import check_arities, check_float
from nas_common import check_int

LANDSCAPES = ("onemax", "pairs")
OPTIMUM = 1.0
_TARGET_STREAM = 0x7A26E7


@dataclasses.dataclass(frozen=True)
class Landscape:
  """A hidden-target landscape (see the module docstring).

  Attributes:
    name: one of `LANDSCAPES`.
    target: the hidden optimum.
    noise: standard deviation of the Gaussian noise that `reward` adds.
  """

  name: str
  target: tuple[int, ...]
  noise: float = 0.01

  def __post_init__(self):
    if self.name not in LANDSCAPES:
      raise ValueError(f"landscape name={self.name!r} is unknown; allowed: {list(LANDSCAPES)}")
    if self.name == "pairs" and len(self.target) < 2:
      raise ValueError(f"target={self.target} is invalid for 'pairs'; allowed: at least 2 decisions")
    check_float("noise", self.noise, 0.0, 1.0)

  def score(self, indices: Sequence[Sequence[int]]) -> np.ndarray:
    """Noise-free scores in [0, 1] of a batch of index vectors [n, D]."""
    idx = np.asarray(indices, np.int64)
    if idx.ndim != 2 or idx.shape[1] != len(self.target):
      raise ValueError(f"indices of shape {idx.shape} are invalid; allowed: [n, {len(self.target)}]")
    match = idx == np.asarray(self.target, np.int64)[None, :]
    if self.name == "pairs":
      match = match[:, :-1] & match[:, 1:]
    return match.mean(axis=1)

  def reward(self, indices: Sequence[Sequence[int]], rng: np.random.Generator) -> np.ndarray:
    """`score` plus N(0, noise²) noise drawn from `rng`."""
    s = self.score(indices)
    return s + self.noise * rng.standard_normal(s.shape)


def make_landscape(name: str, arities: Sequence[int], seed: int, noise: float = 0.01) -> Landscape:
  """A landscape whose target is drawn uniformly over the space from `seed`."""
  arities = check_arities(arities)
  # Its own stream: a controller seeded with the same number must not find the target for free.
  rng = np.random.default_rng([_TARGET_STREAM, check_int("seed", seed, 0)])
  target = tuple(int(rng.integers(a)) for a in arities)
  return Landscape(name=name, target=target, noise=noise)
