"""Rank statistics with numpy only: Spearman's ρ, Kendall's τ-b and P(X > Y).

They measure how well one ranking predicts another, e.g. whether the proxy task orders
architectures as longer training does (`mnas_search.analysis.fidelity`). Both handle ties; both return
NaN when a correlation is undefined (one side constant), as scipy.stats does.

Two-group comparisons (e.g. one search arm's runs against random search's): a permutation test of
the difference of means, the smallest p-value it can reach at a given size, and a bootstrap
interval of that difference. Paired comparisons (e.g. two arms run on the same seeds): a sign-flip
test of the mean paired difference.
"""

from __future__ import annotations

import itertools
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


def retest_tau(values: Sequence[float], noise_std: float, draws: int = 2000, seed: int = 0) -> float:
  """Expected Kendall τ between two re-runs of a ranking whose every value carries seed noise.

  Each re-run is `values` plus independent Gaussian noise of standard deviation `noise_std`; the
  mean τ over `draws` pairs of re-runs is how far a ranking that noisy agrees with itself, the
  ceiling a cheaper signal can be expected to reach against one run of it.

  Args:
    values: the measured value per item (e.g. a network's mean test accuracy), at least 2.
    noise_std: the seed standard deviation of one measurement, in the units of `values`.
    draws: pairs of simulated re-runs.
    seed: the simulation's seed.

  Raises:
    ValueError: fewer than 2 values, a value not finite, or noise_std negative.
  """
  xs, _ = _paired(values, values)
  if not (math.isfinite(noise_std) and noise_std >= 0):
    raise ValueError(f"noise_std={noise_std!r}; allowed: a finite number >= 0")
  rng = np.random.default_rng(seed)
  taus = [kendall_tau(xs + rng.normal(0.0, noise_std, len(xs)), xs + rng.normal(0.0, noise_std, len(xs)))
          for _ in range(draws)]
  return float(np.nanmean(taus))


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
  xs, ys = _groups(x, y)
  diff = xs[:, None] - ys[None, :]
  return float((np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size)


def bootstrap_interval(x: Sequence[float], y: Sequence[float], fn, level: float = 0.9,
                       resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
  """Percentile bootstrap interval of `fn(x, y)` over pairs resampled with replacement.

  Resamples on which `fn` is undefined (NaN: a constant side) are left out.

  Args:
    x, y: paired values.
    fn: a statistic of two arrays, e.g. `kendall_tau`.
    level: the interval's coverage (0.9: the 5th and 95th percentiles).
    resamples: bootstrap resamples.
    seed: the resampling seed (the interval is reproducible).

  Returns:
    (low, high), or None with fewer than 4 pairs or no defined resample.
  """
  xs, ys = _paired(x, y)
  if len(xs) < 4:
    return None
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(resamples):
    idx = rng.integers(0, len(xs), len(xs))
    v = fn(xs[idx], ys[idx])
    if not math.isnan(v):
      values.append(v)
  if not values:
    return None
  low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
  return float(low), float(high)


def rank_agreement(x: Sequence[float], y: Sequence[float], level: float = 0.9) -> dict:
  """Kendall's τ-b and Spearman's ρ of x against y, each with a bootstrap interval.

  Returns:
    {"n", "kendall_tau", "kendall_tau_interval", "spearman_rho", "spearman_rho_interval",
    "level"}; a statistic is None where undefined (fewer than 2 pairs, or a constant side),
    an interval None below 4 pairs. Values are rounded to 4 decimals.
  """
  out: dict = {"n": len(x), "level": level}
  for name, fn in (("kendall_tau", kendall_tau), ("spearman_rho", spearman)):
    v = fn(x, y) if len(x) >= 2 else math.nan
    interval = bootstrap_interval(x, y, fn, level) if len(x) >= 2 else None
    out[name] = None if math.isnan(v) else round(v, 4)
    out[name + "_interval"] = None if interval is None else [round(b, 4) for b in interval]
  return out


ALTERNATIVES = ("two-sided", "greater", "less")


def _groups(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """x and y as float arrays, checked: 1-D, non-empty, finite (their lengths may differ)."""
  xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if xs.ndim != 1 or ys.ndim != 1 or xs.size == 0 or ys.size == 0:
    raise ValueError(f"x and y must be non-empty 1-D sequences, got shapes {xs.shape} and "
                     f"{ys.shape}")
  if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
    raise ValueError("x and y must be finite numbers (no NaN or Inf)")
  return xs, ys


def _extreme(values: np.ndarray, observed: float, alternative: str, tol: float) -> np.ndarray:
  """Which of a test's `values` are at least as far out as `observed` in the `alternative`'s
  direction; ties within `tol` count (sums of the same values in another order differ in the
  last bits)."""
  if alternative == "two-sided":
    return np.abs(values) >= abs(observed) - tol
  if alternative == "greater":
    return values >= observed - tol
  return values <= observed + tol


def permutation_test(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided",
                     exact_limit: int = 20000, resamples: int = 20000, seed: int = 0) -> float:
  """p-value of mean(x) − mean(y) against relabelings of the pooled values (x and y exchangeable).

  Exact when there are at most `exact_limit` relabelings, C(len(x) + len(y), len(x)): every way
  of choosing which pooled values are x, the observed one included. Otherwise a seeded Monte Carlo
  test over `resamples` random relabelings, p = (1 + extreme) / (1 + resamples), so that it never
  reports less evidence than it has. A relabeling counts as extreme when its difference is at
  least as far out as the observed one (ties count, within rounding error), so the exact p is at
  least 1 / C(n, len(x)): with 2 values per group, 1/3 two-sided and 1/6 one-sided.

  Args:
    x, y: the two groups' values (e.g. one value per search run), non-empty, finite.
    alternative: "two-sided" (|difference| as large), "greater" (mean(x) − mean(y) as large),
      "less" (as small).
    exact_limit: the most relabelings enumerated before switching to Monte Carlo.
    resamples: random relabelings of the Monte Carlo test.
    seed: the Monte Carlo seed (the p-value is reproducible).

  Returns:
    The p-value, in (0, 1].

  Raises:
    ValueError: an empty group, a value that is not finite, or an unknown `alternative`.
  """
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative={alternative!r} is invalid; allowed: {', '.join(ALTERNATIVES)}")
  xs, ys = _groups(x, y)
  pooled = np.concatenate([xs, ys])
  nx, n = len(xs), len(pooled)
  total = float(pooled.sum())

  def differences(x_sums: np.ndarray) -> np.ndarray:
    return x_sums / nx - (total - x_sums) / (n - nx)

  observed = float(differences(np.array([xs.sum()]))[0])
  exact = math.comb(n, nx) <= exact_limit
  if exact:
    x_sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(n), nx)])
  else:
    rng = np.random.default_rng(seed)
    x_sums = np.array([pooled[rng.permutation(n)[:nx]].sum() for _ in range(resamples)])
  d = differences(x_sums)
  count = int(_extreme(d, observed, alternative, 1e-9 * max(1.0, float(np.abs(pooled).max()))).sum())
  return count / len(d) if exact else (count + 1) / (len(d) + 1)


def min_permutation_p(nx: int, ny: int, alternative: str = "two-sided") -> float:
  """The smallest p-value an exact `permutation_test` can give with groups of nx and ny values.

  One relabeling out of C(nx + ny, nx) is as extreme as the most extreme observation can be, two
  for a two-sided test (the mirror image) when nx == ny. It is the floor below which no data of
  that size can push the evidence: 1/3 two-sided (1/6 one-sided) for 2 values against 2.
  """
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative={alternative!r} is invalid; allowed: {', '.join(ALTERNATIVES)}")
  if nx < 1 or ny < 1:
    raise ValueError(f"min_permutation_p needs groups of at least 1 value; got {nx} and {ny}")
  mirrored = alternative == "two-sided" and nx == ny
  return (2 if mirrored else 1) / math.comb(nx + ny, nx)


def min_sign_flip_p(n: int, alternative: str = "two-sided") -> float:
  """The smallest p-value `sign_flip_test` can give with n pairs: the observed sign pattern (and
  its mirror, two-sided) out of 2^n. A pair whose difference is zero is the same under both signs,
  so on data with z such pairs the floor is that of n − z pairs."""
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative={alternative!r} is invalid; allowed: {', '.join(ALTERNATIVES)}")
  if n < 1:
    raise ValueError(f"min_sign_flip_p needs at least 1 pair; got {n}")
  return (2 if alternative == "two-sided" else 1) / 2 ** n


def bootstrap_mean_difference_interval(x: Sequence[float], y: Sequence[float], level: float = 0.9,
                                       resamples: int = 10000, seed: int = 0
                                       ) -> tuple[float, float]:
  """Percentile bootstrap interval of mean(x) − mean(y), each group resampled on its own.

  The groups are independent samples (not pairs), so x and y are each resampled with replacement
  at their own size; `bootstrap_interval` resamples pairs and does not apply. With few values the
  interval is too narrow: a group of n values has only C(2n − 1, n) distinct resamples (3 for
  n = 2), and the bootstrap variance of a mean is (n − 1) / n of the unbiased one (half for n = 2).

  Args:
    x, y: the two groups' values, non-empty, finite.
    level: the interval's coverage (0.9: the 5th and 95th percentiles).
    resamples: bootstrap resamples.
    seed: the resampling seed (the interval is reproducible).

  Returns:
    (low, high).

  Raises:
    ValueError: an empty group, a value that is not finite, or a level outside (0, 1).
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level={level} is invalid; allowed: a number in (0, 1)")
  xs, ys = _groups(x, y)
  rng = np.random.default_rng(seed)
  mx = xs[rng.integers(0, len(xs), (resamples, len(xs)))].mean(axis=1)
  my = ys[rng.integers(0, len(ys), (resamples, len(ys)))].mean(axis=1)
  low, high = np.percentile(mx - my, [50 * (1 - level), 50 * (1 + level)])
  return float(low), float(high)


def sign_flip_test(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> float:
  """Exact p-value of the mean paired difference mean(x − y) against its sign flips.

  Under the null, each pair's two values are exchangeable, so each difference is as likely
  negated: every one of the 2^n sign patterns (the observed one included) is enumerated. Ties are
  counted as extreme (within rounding error); the smallest p is 2 / 2^n two-sided (1 / 2^n
  one-sided) when no difference is zero: 1/4 two-sided for 3 pairs, 1/32 for 6.

  Args:
    x, y: paired values (pair i is x[i], y[i]), at least 2 pairs, at most 20, finite.
    alternative: "two-sided", "greater" (mean(x − y) as large) or "less" (as small).

  Returns:
    The p-value, in (0, 1].

  Raises:
    ValueError: unpaired, too few or too many pairs, a value that is not finite, or an unknown
      `alternative`.
  """
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative={alternative!r} is invalid; allowed: {', '.join(ALTERNATIVES)}")
  xs, ys = _paired(x, y)
  if len(xs) > 20:
    raise ValueError(f"x and y hold {len(xs)} pairs; allowed: at most 20 (2^n sign patterns)")
  d = xs - ys
  signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
  means = signs @ d / len(d)
  observed = float(d.mean())
  return float(_extreme(means, observed, alternative, 1e-9 * max(1.0, float(np.abs(d).max()))).mean())
