"""Rank statistics with numpy only: Spearman's ρ, Kendall's τ-b and P(X > Y).

They measure how well one ranking predicts another, e.g. whether the proxy task orders
architectures as longer training does (`mnas_search.fidelity`). Both handle ties; both return
NaN when a correlation is undefined (one side constant), as scipy.stats does.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """x and y as float arrays, checked: 1-D, the same length (>= 2), finite."""
  xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if xs.ndim != 1 or ys.ndim != 1:
    raise ValueError(f"x and y must be 1-D sequences, got shapes {xs.shape} and {ys.shape}")
  if len(xs) != len(ys):
    raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
  if len(xs) < 2:
    raise ValueError(f"x and y hold {len(xs)} value(s); allowed: at least 2 pairs")
  if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
    raise ValueError("x and y must be finite numbers (no NaN or Inf)")
  return xs, ys


def rankdata(values: Sequence[float]) -> np.ndarray:
  """Ranks from 1, ties given the mean of the ranks they span: [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]."""
  a = np.asarray(values, dtype=np.float64)
  order = np.argsort(a, kind="stable")
  sorted_a = a[order]
  # Each run of equal values starts where the value changes.
  starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
  ends = np.r_[starts[1:], len(a)]
  mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
  ranks = np.empty(len(a), dtype=np.float64)
  ranks[order] = np.repeat(mean_rank, ends - starts)
  return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's rank correlation ρ: the Pearson correlation of the (tie-averaged) ranks.

  Args:
    x, y: paired values, at least 2, finite.

  Returns:
    ρ in [-1, 1]; NaN when x or y is constant (no ranking to correlate).

  Raises:
    ValueError: lengths differ, fewer than 2 pairs, or a value is not finite.
  """
  xs, ys = _paired(x, y)
  rx, ry = rankdata(xs) - (len(xs) + 1) / 2.0, rankdata(ys) - (len(ys) + 1) / 2.0
  denom = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
  if denom == 0.0:
    return math.nan
  return float(np.clip(np.dot(rx, ry) / denom, -1.0, 1.0))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
  """Kendall's τ-b: (concordant − discordant) / sqrt((n0 − ties_x)(n0 − ties_y)).

  n0 = n(n−1)/2 pairs; ties_x (ties_y) counts the pairs tied in x (in y). A pair tied in both
  counts in neither the numerator nor as concordant or discordant. O(n²) pairs, which is fine
  for the tens to thousands of architectures a search compares.

  Args:
    x, y: paired values, at least 2, finite.

  Returns:
    τ-b in [-1, 1]; NaN when x or y is constant.

  Raises:
    ValueError: lengths differ, fewer than 2 pairs, or a value is not finite.
  """
  xs, ys = _paired(x, y)
  upper = np.triu_indices(len(xs), k=1)  # each unordered pair once
  dx = np.sign(xs[:, None] - xs[None, :])[upper]
  dy = np.sign(ys[:, None] - ys[None, :])[upper]
  n0 = len(dx)
  numerator = float(np.sum(dx * dy))  # +1 concordant, -1 discordant, 0 tied in either
  ties_x, ties_y = int(np.sum(dx == 0)), int(np.sum(dy == 0))
  denom = math.sqrt(float(n0 - ties_x) * float(n0 - ties_y))
  if denom == 0.0:
    return math.nan
  return float(np.clip(numerator / denom, -1.0, 1.0))


def mean_abs_pct_error(predicted: Sequence[float], actual: Sequence[float]) -> float:
  """Mean of |predicted − actual| / actual, in percent."""
  p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
  if p.shape != a.shape or p.size == 0:
    raise ValueError(f"mean_abs_pct_error needs two non-empty sequences of equal length; got "
                     f"{p.size} and {a.size}")
  if np.any(a <= 0):
    raise ValueError("mean_abs_pct_error needs actual values > 0")
  return float(np.mean(np.abs(p - a) / a) * 100)


def prob_greater(x: Sequence[float], y: Sequence[float]) -> float:
  """P(X > Y) + P(X = Y) / 2 for X drawn from x and Y from y: the common-language effect size.

  It is the Mann–Whitney U statistic of x over len(x) * len(y): 0.5 when neither side tends to
  be larger, 1.0 when every x beats every y. Used to ask whether one search arm's children score
  higher than another's, with no assumption on the shape of the rewards.

  Raises:
    ValueError: an empty side, or a value that is not a finite number.
  """
  xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if xs.ndim != 1 or ys.ndim != 1 or xs.size == 0 or ys.size == 0:
    raise ValueError(f"prob_greater needs two non-empty 1-D sequences; got shapes {xs.shape} and "
                     f"{ys.shape}")
  if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
    raise ValueError("x and y must be finite numbers (no NaN or Inf)")
  diff = xs[:, None] - ys[None, :]
  return float((np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size)
