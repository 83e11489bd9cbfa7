"""Masked categorical distributions over decisions of mixed arity, in numpy.

Decision d has `arities[d]` valid options out of `max(arities)`. Logits are
laid out as [..., D, A] with A = max arity; the options at and above a
decision's arity are masked, so they get probability exactly 0 and can never
be sampled. The learned controllers sample here, from their own numpy
Generator, which makes every sample reproducible from the saved RNG state.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def option_mask(arities: Sequence[int]) -> np.ndarray:
  """[D, A] booleans: True where option a is valid for decision d."""
  ar = np.asarray(arities, np.int64)
  return np.arange(int(ar.max()))[None, :] < ar[:, None]


def masked_log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Log-probabilities in float64 over the last axis; −inf where `mask` is False."""
  z = np.where(mask, np.asarray(logits, np.float64), -np.inf)
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def entropy(log_probs: np.ndarray) -> np.ndarray:
  """Entropy in nats over the last axis (masked options contribute 0)."""
  p = np.exp(log_probs)
  return -np.where(p > 0, p * np.where(p > 0, log_probs, 0.0), 0.0).sum(axis=-1)


def sample(log_probs: np.ndarray, uniforms: np.ndarray, arities: np.ndarray) -> np.ndarray:
  """Inverse-CDF sampling: one index per row of `log_probs` [..., A] from `uniforms` [...].

  `arities` (broadcastable to `uniforms`) caps the result, so a CDF that rounds
  to just below 1 can never yield a masked option.
  """
  cdf = np.cumsum(np.exp(log_probs), axis=-1)
  idx = (uniforms[..., None] >= cdf).sum(axis=-1)
  return np.minimum(idx, np.asarray(arities) - 1).astype(np.int64)
