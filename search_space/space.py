"""The factorized search space: named decisions with options, as plain data.

A point of the space is an index vector with one index per decision. Decisions
are ordered stage by stage: kernel, expansion, se_ratio, skip, repeats,
filters. `decode` maps indices to an `Architecture`; `encode` maps back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Sequence

from search_space.blocks import Architecture, BlockArgs

if TYPE_CHECKING:  # numpy is imported on use: importing the package stays light
  import numpy as np

STAGE_FIELDS = ("kernel", "expansion", "se_ratio", "skip", "repeats", "filters")
SKIP_OPTIONS = ("identity", "none")


@dataclasses.dataclass(frozen=True)
class Decision:
  """One categorical choice: a name such as `s3/kernel` and its options."""

  name: str
  options: tuple

  def __post_init__(self):
    if not self.options:
      raise ValueError(f"decision {self.name!r} has no options")
    if len(set(self.options)) != len(self.options):
      raise ValueError(f"decision {self.name!r} has duplicate options {self.options}")

  @property
  def arity(self) -> int:
    return len(self.options)


@dataclasses.dataclass(frozen=True)
class StageSpace:
  """The options of one stage; the stride is fixed."""

  stride: int
  kernel: tuple[int, ...]
  expansion: tuple[int, ...]
  se_ratio: tuple[float, ...]
  skip: tuple[str, ...]
  repeats: tuple[int, ...]
  filters: tuple[int, ...]


def repeats_around(base: int, minimum: int = 1) -> tuple[int, ...]:
  """base−1, base, base+1 with a floor of `minimum` (duplicates dropped)."""
  return tuple(sorted({max(minimum, base + d) for d in (-1, 0, 1)}))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """A factorized MBConv search space.

  Attributes:
    stages: one `StageSpace` per stage.
    stem_filters, head_filters, activation, resolution, dropout_rate,
    drop_connect_rate: the global parameters every decoded architecture gets.
  """

  stages: tuple[StageSpace, ...]
  stem_filters: int = 32
  head_filters: int = 1280
  activation: str = "swish"
  resolution: int = 224
  dropout_rate: float = 0.2
  drop_connect_rate: float = 0.2
  name: str = "default"

  def __post_init__(self):
    for i, st in enumerate(self.stages):
      bad = [s for s in st.skip if s not in SKIP_OPTIONS]
      if bad:
        raise ValueError(f"stage {i + 1}: skip options {bad} are invalid; allowed: {SKIP_OPTIONS}")
    # Derived, cached views (the dataclass stays frozen for users).
    decisions = tuple(Decision(f"s{i + 1}/{field}", tuple(getattr(st, field)))
                      for i, st in enumerate(self.stages) for field in STAGE_FIELDS)
    object.__setattr__(self, "_decisions", decisions)
    object.__setattr__(self, "_arities", tuple(d.arity for d in decisions))

  @property
  def decisions(self) -> tuple[Decision, ...]:
    return self._decisions  # type: ignore[attr-defined]

  @property
  def arities(self) -> tuple[int, ...]:
    return self._arities  # type: ignore[attr-defined]

  @property
  def num_decisions(self) -> int:
    return len(self._arities)  # type: ignore[attr-defined]

  @property
  def size(self) -> int:
    """How many distinct index vectors the space has."""
    return math.prod(self.arities)

  def check_indices(self, indices: Sequence[int]) -> tuple[int, ...]:
    idx = tuple(int(i) for i in indices)
    if len(idx) != self.num_decisions:
      raise ValueError(f"got {len(idx)} indices; this space has {self.num_decisions} decisions")
    for d, i in zip(self.decisions, idx):
      if not 0 <= i < d.arity:
        raise ValueError(f"index {i} for decision {d.name!r} is out of range; allowed: 0..{d.arity - 1}")
    return idx

  def decode(self, indices: Sequence[int], name: str = "sampled") -> Architecture:
    """Maps an index vector to an architecture (base blocks plus the space's globals)."""
    idx = self.check_indices(indices)
    n = len(STAGE_FIELDS)
    blocks = []
    cin = self.stem_filters
    for s, st in enumerate(self.stages):
      k, e, se, skip, r, f = (getattr(st, field)[idx[s * n + j]] for j, field in enumerate(STAGE_FIELDS))
      blocks.append(BlockArgs(repeats=r, kernel_size=k, stride=st.stride, expand_ratio=e,
                              input_filters=cin, output_filters=f, se_ratio=float(se),
                              id_skip=(skip == "identity")))
      cin = f
    return Architecture(blocks=tuple(blocks), name=name, resolution=self.resolution,
                        dropout_rate=self.dropout_rate, drop_connect_rate=self.drop_connect_rate,
                        activation=self.activation, stem_filters=self.stem_filters,
                        head_filters=self.head_filters)

  def encode(self, arch: Architecture) -> tuple[int, ...]:
    """Maps an architecture back to its index vector.

    Only the blocks are encoded (activation and other globals are not decisions).

    Raises:
      ValueError: naming the stage and field when the architecture is not in the space.
    """
    if len(arch.blocks) != len(self.stages):
      raise ValueError(f"architecture {arch.name!r} has {len(arch.blocks)} stages; "
                       f"this space has {len(self.stages)}")
    out = []
    cin = self.stem_filters
    for s, (b, st) in enumerate(zip(arch.blocks, self.stages)):
      if b.stride != st.stride:
        raise ValueError(f"stage {s + 1}: stride {b.stride} is not this space's fixed stride {st.stride}")
      if b.input_filters != cin:
        raise ValueError(f"stage {s + 1}: input filters {b.input_filters} do not follow the previous "
                         f"stage's output {cin}")
      values = {"kernel": b.kernel_size, "expansion": b.expand_ratio, "se_ratio": b.se_ratio,
                "skip": "identity" if b.id_skip else "none", "repeats": b.repeats,
                "filters": b.output_filters}
      for field in STAGE_FIELDS:
        options = getattr(st, field)
        if values[field] not in options:
          raise ValueError(f"stage {s + 1}: {field}={values[field]!r} is not in this space; "
                           f"allowed: {list(options)}")
        out.append(options.index(values[field]))
      cin = b.output_filters
    return tuple(out)

  def contains(self, arch: Architecture) -> bool:
    try:
      self.encode(arch)
      return True
    except ValueError:
      return False

  def sample_indices(self, rng: np.random.Generator) -> tuple[int, ...]:
    """A uniform random point of the space."""
    return tuple(int(rng.integers(a)) for a in self.arities)

  def to_dict(self) -> dict[str, Any]:
    return {"name": self.name, "size": self.size,
            "decisions": [{"name": d.name, "options": list(d.options)} for d in self.decisions],
            "strides": [st.stride for st in self.stages], "stem_filters": self.stem_filters,
            "head_filters": self.head_filters, "activation": self.activation,
            "resolution": self.resolution}


DEFAULT_STRIDES = (1, 2, 2, 2, 1, 2, 1)
DEFAULT_BASE_REPEATS = (1, 2, 3, 4, 3, 3, 1)
DEFAULT_FILTERS = ((16,), (16, 24, 32), (24, 32, 40, 48), (64, 80, 96), (96, 112, 128),
                   (160, 192, 224), (320,))


def default_space(activation: str = "swish") -> SearchSpace:
  """The EfficientNet-B0 search space (about 1.44e15 points; see docs/ARCHITECTURE.md)."""
  stages = tuple(StageSpace(stride=s, kernel=(3, 5), expansion=(1, 3, 6), se_ratio=(0.0, 0.25),
                            skip=SKIP_OPTIONS, repeats=repeats_around(r), filters=f)
                 for s, r, f in zip(DEFAULT_STRIDES, DEFAULT_BASE_REPEATS, DEFAULT_FILTERS))
  return SearchSpace(stages=stages, activation=activation)


def micro_space(activation: str = "swish") -> SearchSpace:
  """A 3-stage space of the same decisions, for smoke tests and quick trials of the tooling.

  Children build and trace in about a second on a CPU, so a whole search with
  resume can run inside a unit test. It is not meant to find good networks.
  """
  stages = tuple(StageSpace(stride=s, kernel=(3, 5), expansion=(1, 3, 6), se_ratio=(0.0, 0.25),
                            skip=SKIP_OPTIONS, repeats=(1, 2), filters=f)
                 for s, f in zip((1, 2, 2), ((8,), (8, 16), (16, 24))))
  return SearchSpace(stages=stages, stem_filters=8, head_filters=64, activation=activation,
                     resolution=32, name="micro")


SPACES = {"default": default_space, "micro": micro_space}


def get_space(name: str) -> SearchSpace:
  if name not in SPACES:
    raise ValueError(f"unknown search space {name!r}; allowed: {sorted(SPACES)}")
  return SPACES[name]()
