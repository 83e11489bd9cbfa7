"""REINFORCE with independent logits per decision and a moving-average baseline,
as in TuNAS (Bender et al. 2020). Pure numpy: cheap, and a useful middle ground
between random search and the LSTM PPO controller.

Decision d is drawn from softmax(θ[d]) over its valid options (the rest of the
row is masked). One update is a gradient-ascent step, with Adam, on

    mean_i (r_i − b)·log π(a_i) + entropy_regularization·H(π)

where b is an exponential moving average of the batch mean rewards.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from controller import categorical
from controller.base import Controller, Sample, advance_baseline, check_float

_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
  """Hparams of the REINFORCE controller.

  Attributes:
    learning_rate: Adam step size on the logits.
    baseline_decay: momentum of the reward baseline (the first batch sets it).
    entropy_regularization: weight of the entropy bonus.
  """

  learning_rate: float = 0.2
  baseline_decay: float = 0.9
  entropy_regularization: float = 0.0

  def __post_init__(self):
    check_float("learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
    check_float("baseline_decay", self.baseline_decay, 0.0, 1.0, high_open=True)
    check_float("entropy_regularization", self.entropy_regularization, 0.0, 1.0)


class ReinforceController(Controller):
  """REINFORCE over independent per-decision logits (see the module docstring).

  Args:
    arities: how many options each decision has.
    seed: seeds the numpy Generator that draws the samples.
    learning_rate, baseline_decay, entropy_regularization: see `ReinforceConfig`.
  """

  NAME = "reinforce"
  Config = ReinforceConfig

  def __init__(self, arities, seed: int = 0, **hparams):
    super().__init__(arities, seed, **hparams)
    self._mask = categorical.option_mask(self._arities)
    # Zero logits: the search starts uniform.
    self._logits = np.zeros(self._mask.shape, np.float64)
    self._m = np.zeros_like(self._logits)
    self._v = np.zeros_like(self._logits)
    self._adam_steps = 0
    self._baseline: float | None = None

  @property
  def baseline(self) -> float | None:
    return self._baseline

  def decision_probabilities(self) -> list[list[float]]:
    """Exact: the decisions are independent categoricals."""
    p = np.exp(self.log_probs())
    return [[float(v) for v in p[d, :a]] for d, a in enumerate(self.arities)]

  def log_probs(self) -> np.ndarray:
    """[D, A] log-probabilities of the current policy (−inf for invalid options)."""
    return categorical.masked_log_softmax(self._logits, self._mask)

  def _sample(self, n: int) -> list[Sample]:
    u = self._rng.random((n, self.num_decisions))
    idx = categorical.sample(self.log_probs()[None], u, np.asarray(self._arities))
    return [Sample(tuple(int(i) for i in row)) for row in idx]

  def _update(self, samples: list[Sample], rewards: np.ndarray) -> dict[str, float]:
    cfg = self.config
    baseline_used, self._baseline = advance_baseline(self._baseline, rewards, cfg.baseline_decay)
    advantages = rewards - baseline_used
    logp = self.log_probs()
    p = np.exp(logp)
    idx = np.array([s.indices for s in samples], np.int64)
    onehot = np.zeros((len(samples),) + self._logits.shape)
    np.put_along_axis(onehot, idx[..., None], 1.0, axis=-1)
    # d/dθ log π(a) = onehot(a) − p, per decision.
    grad = (advantages[:, None, None] * (onehot - p[None])).mean(axis=0)
    h = categorical.entropy(logp)
    safe_logp = np.where(self._mask, logp, 0.0)
    grad += cfg.entropy_regularization * (-p * (safe_logp + h[:, None]))
    grad = np.where(self._mask, grad, 0.0)
    chosen = logp[np.arange(self.num_decisions)[None, :], idx]  # [n, D]
    loss = -float((advantages * chosen.sum(axis=1)).mean()) - cfg.entropy_regularization * float(h.sum())
    # Adam ascent.
    self._adam_steps += 1
    self._m = _ADAM_B1 * self._m + (1 - _ADAM_B1) * grad
    self._v = _ADAM_B2 * self._v + (1 - _ADAM_B2) * grad ** 2
    m_hat = self._m / (1 - _ADAM_B1 ** self._adam_steps)
    v_hat = self._v / (1 - _ADAM_B2 ** self._adam_steps)
    self._logits = self._logits + cfg.learning_rate * m_hat / (np.sqrt(v_hat) + _ADAM_EPS)
    return {"loss": loss, "entropy": self.entropy(), "baseline": baseline_used}

  def entropy(self) -> float:
    return float(categorical.entropy(self.log_probs()).sum())

  def _state(self) -> dict[str, Any]:
    # Python floats round-trip exactly through JSON.
    return {"logits": self._logits.tolist(), "adam_m": self._m.tolist(), "adam_v": self._v.tolist(),
            "adam_steps": self._adam_steps, "baseline": self._baseline}

  def _load_state(self, state: Mapping[str, Any]) -> None:
    self._logits = np.array(state["logits"], np.float64)
    self._m = np.array(state["adam_m"], np.float64)
    self._v = np.array(state["adam_v"], np.float64)
    self._adam_steps = int(state["adam_steps"])
    self._baseline = state["baseline"]
