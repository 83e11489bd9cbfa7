"""The search space as plain data: block strings, architectures, decisions, costs and scaling.

Everything here is pure Python and numpy except `build_model`, which imports
Keras on first use so that counting FLOPs never pays for a TF import.
"""

from search_space.blocks import (
  ACTIVATIONS,
  Architecture,
  BlockArgs,
  ConcreteBlock,
  parse_block,
  parse_blocks,
  round_filters,
  round_repeats,
)
from search_space.costs import BlockCost, block_costs, count_flops, count_params, count_trainable_params
from search_space.scaling import (
  NAMED,
  PAPER_ALPHA,
  PAPER_BETA,
  PAPER_FAMILY,
  PAPER_GAMMA,
  FamilyMember,
  check_coefficients,
  compound_family,
  compound_member,
  named,
  paper_family,
  round_resolution,
  scale,
)
from search_space.space import SPACES, Decision, SearchSpace, StageSpace, default_space, get_space


def build_model(*args, **kwargs):
  """See `search_space.model.build_model` (imported lazily: it pulls in Keras)."""
  from search_space.model import build_model as _build
  return _build(*args, **kwargs)


def resolve_arch(spec: str) -> Architecture:
  """A named reference (`efficientnet-b0`, …) or the path of an architecture JSON."""
  import os
  if spec in NAMED:
    return named(spec)
  if spec.endswith(".json") or os.path.sep in spec:
    return Architecture.load(spec)
  raise ValueError(f"unknown architecture {spec!r}; allowed: a path to an architecture JSON or one of "
                   f"{sorted(NAMED)}")
