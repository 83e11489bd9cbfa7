"""Rewards and cost definitions for the search, as pure functions of numbers.

A reward trades a child's accuracy `a` against its cost `c` relative to a
target `T` (see docs/ARCHITECTURE.md):

- `mnas` (soft, MnasNet/EfficientNet): a·(c/T)^w, w ≤ 0 (−0.07 by default).
- `mnas_hard`: a·min(1, (c/T)^β), β ≤ 0 (−1 by default); only a cost above T
  is penalized.
- `abs` (TuNAS): a + β·|c/T − 1|, β ≤ 0 (−0.10 by default).

Nothing here imports TF or another project package: the search computes the
cost (FLOPs and parameters through `search_space`, or a measured latency) and
passes plain numbers in. A failed child gets reward 0 from the search loop; it
never reaches these functions.
"""

from __future__ import annotations

import math
import numbers
import types
from typing import Callable, Mapping, Optional

from nas_common import FieldError

MNAS_W = -0.07
MNAS_HARD_BETA = -1.0
ABS_BETA = -0.10

COST_KINDS = ("flops", "params", "latency")
# Per cost kind: the setting that holds its target T (a search flag and params.json key), and units.
COST_TARGETS = types.MappingProxyType({"flops": ("target_flops", "FLOPs (multiply-adds)"),
                                       "params": ("target_params", "parameters"),
                                       "latency": ("target_latency_ms", "ms")})


def _check_number(name: str, value, allowed: str) -> float:
  """`value` as a float, or a FieldError when it is not a real number (bools refused)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise FieldError(name, value, allowed)
  return float(value)


def _check_positive(name: str, value) -> float:
  allowed = "a finite number > 0"
  v = _check_number(name, value, allowed)
  if not (math.isfinite(v) and v > 0):
    raise FieldError(name, value, allowed)
  return v


def _check_accuracy(accuracy) -> float:
  allowed = "a number in [0, 1]"
  a = _check_number("accuracy", accuracy, allowed)
  if not 0.0 <= a <= 1.0:  # also refuses NaN
    raise FieldError("accuracy", accuracy, allowed)
  return a


def _check_exponent(name: str, value) -> float:
  # A positive exponent would reward a larger cost, which no search wants.
  allowed = "a finite number <= 0"
  v = _check_number(name, value, allowed)
  if not (math.isfinite(v) and v <= 0):
    raise FieldError(name, value, allowed)
  return v


def _ratio(cost, target) -> float:
  return _check_positive("cost", cost) / _check_positive("target", target)


def mnas(accuracy: float, cost: float, target: float, w: float = MNAS_W) -> float:
  """The soft MnasNet reward a·(c/T)^w.

  Args:
    accuracy: validation accuracy in [0, 1].
    cost: the child's cost (> 0), in the same unit as `target`.
    target: the target cost T (> 0).
    w: the exponent, ≤ 0; −0.07 is the EfficientNet-B0 setting.

  Returns:
    The reward.

  Raises:
    ValueError: naming the argument when an input is out of range.
  """
  a = _check_accuracy(accuracy)
  r = _ratio(cost, target)
  return a * r ** _check_exponent("w", w)


def mnas_hard(accuracy: float, cost: float, target: float, beta: float = MNAS_HARD_BETA) -> float:
  """The hard-constraint MnasNet reward a·min(1, (c/T)^β); a cost at or below T is free.

  Args and Raises: as `mnas`, with `beta` (≤ 0) the exponent applied above T.
  """
  a = _check_accuracy(accuracy)
  r = _ratio(cost, target)
  return a * min(1.0, r ** _check_exponent("beta", beta))


def abs_reward(accuracy: float, cost: float, target: float, beta: float = ABS_BETA) -> float:
  """The TuNAS absolute-value reward a + β·|c/T − 1|.

  Args and Raises: as `mnas`, with `beta` (≤ 0) the weight of the distance from T.
  """
  a = _check_accuracy(accuracy)
  r = _ratio(cost, target)
  return a + _check_exponent("beta", beta) * abs(r - 1.0)


REWARDS: Mapping[str, Callable[..., float]] = types.MappingProxyType(
    {"mnas": mnas, "mnas_hard": mnas_hard, "abs": abs_reward})

_DEFAULT_COEFFICIENTS = types.MappingProxyType(
    {"mnas": MNAS_W, "mnas_hard": MNAS_HARD_BETA, "abs": ABS_BETA})


def _check_name(name: str) -> None:
  if name not in REWARDS:
    raise ValueError(f"reward name={name!r} is unknown; allowed: {sorted(REWARDS)}")


def default_coefficient(name: str) -> float:
  """The default exponent or weight (w or β) of the reward called `name`."""
  _check_name(name)
  return _DEFAULT_COEFFICIENTS[name]


def compute(name: str, accuracy: float, cost: float, target: float,
            coefficient: Optional[float] = None) -> float:
  """The reward called `name`; `coefficient` is its w or β (None: that reward's default)."""
  _check_name(name)
  if coefficient is None:
    coefficient = _DEFAULT_COEFFICIENTS[name]
  return REWARDS[name](accuracy, cost, target, coefficient)


def select_cost(kind: str, *, flops: float, params: float,
                latency_ms: Optional[float] = None) -> float:
  """The cost of kind `kind` ("flops", "params" or "latency") from the numbers given.

  Raises:
    ValueError: for an unknown kind, for "latency" without `latency_ms`, or when
      the selected number is not finite and > 0.
  """
  if kind not in COST_KINDS:
    raise ValueError(f"cost kind={kind!r} is unknown; allowed: {list(COST_KINDS)}")
  if kind == "latency":
    if latency_ms is None:
      raise ValueError("latency_ms=None is invalid for cost kind 'latency'; allowed: a measured "
                       "latency in milliseconds (a finite number > 0)")
    return _check_positive("latency_ms", latency_ms)
  if kind == "flops":
    return _check_positive("flops", flops)
  return _check_positive("params", params)
