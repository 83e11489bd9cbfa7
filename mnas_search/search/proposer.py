"""The proposer: the controller over the search space, as ask (`propose`) and tell (`observe`).

It owns the controller's checkpoint, the warm start from an earlier search and the replay that
feeds it. Trial numbers follow sampling order and the checkpoint holds the controller's RNG, so a
restored controller re-samples exactly the batch that was in flight at a crash.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple, Sequence

from absl import logging

import controller as controller_lib
import search_space
from mnas_search.runs import rundir as rundir_lib
from mnas_search.runs.store import TRIALS, SearchStore
from mnas_search.search.config import SearchConfig
from nas_common import FieldError

# What must match for a warm start to reuse an earlier search's scores (the proxy task and the cost).
WARM_START_FIELDS = ("task", "space", "reward", "w", "cost", "target_flops", "target_params",
                     "target_latency_ms", "cost_resolution", "cost_num_classes", "scheduler",
                     "min_budget", "max_budget", "eta")


class Candidate(NamedTuple):
  """One proposed child: its trial number, its network and the controller's sample."""

  trial: int
  arch: search_space.Architecture
  sample: controller_lib.Sample


def make_controller(config: SearchConfig, arities: Sequence[int]) -> controller_lib.Controller:
  """The controller of `config` over `arities`; a bad hparam is a FieldError naming
  `controller_hparams` (an hparam's own name, e.g. learning_rate, is not a setting of the search)."""
  hparams = dict(config.controller_hparams)
  try:
    controller_lib.check_hparams(config.controller, **hparams)
  except ValueError as e:
    shown = ",".join(f"{k}={v}" for k, v in hparams.items())
    raise FieldError("controller_hparams", shown, "", reason=f": {e}") from None
  return controller_lib.make(config.controller, arities, seed=config.seed, **hparams)


def warm_start_trials(config: SearchConfig) -> list[dict[str, Any]]:
  """The trials of `config.warm_start_from`, in trial order; [] without one.

  Raises:
    FieldError: the folder holds no search.
    ValueError: it holds one whose proxy task or cost settings differ (`WARM_START_FIELDS`; each
      difference is listed).
  """
  source = config.warm_start_from
  if not source:
    return []
  params = rundir_lib.read_params(source) if os.path.isdir(source) else {}
  if not params or not os.path.isfile(os.path.join(source, TRIALS)):
    raise FieldError("warm_start_from", source, "a search directory (params.json, trials.jsonl)")
  mine = json.loads(json.dumps(config.to_params()))
  diff = [f"{k}: {params.get(k)!r} there, {mine.get(k)!r} here" for k in WARM_START_FIELDS
          if params.get(k) != mine.get(k)]
  if diff:
    raise FieldError("warm_start_from", source, "", reason="holds a search with another proxy task "
                     f"or cost, so its scores do not carry over; differing: {'; '.join(diff)}")
  return sorted(SearchStore(source).read_trials(), key=lambda r: r["trial"])


def replay(ctrl, records: list[dict[str, Any]]) -> int:
  """Feeds `records` to a fresh controller in their order, one update per stored update (PPO
  recomputes the log-probs of samples it did not make). Returns the updates replayed."""
  batches: dict[int, list[dict[str, Any]]] = {}
  for r in records:
    batches.setdefault(r["update"], []).append(r)
  for update in sorted(batches):
    batch = batches[update]
    ctrl.update([controller_lib.Sample(tuple(r["indices"])) for r in batch],
                [r["reward"] for r in batch])
  return len(batches)


class Proposer:
  """Proposes children and learns from their rewards.

  Built before anything is written, so that a bad hparam leaves no half-made search behind.

  Args:
    config: the search's settings (controller, its hparams, seed, warm start).
    space: the search space the controller's decisions index.
    timings: seconds by phase; "controller" and "controller_startup" (this process's first sample
      and update, where TF traces the policy's graphs) grow here.
  """

  def __init__(self, config: SearchConfig, space: search_space.SearchSpace, timings: dict[str, float]):
    self.config, self.space, self.timings = config, space, timings
    self.ctrl = make_controller(config, space.arities)
    self.next_trial = self.updates = 0
    self._first_update_done = False

  def restore(self, store: SearchStore) -> bool:
    """Restores the controller's checkpoint, if the directory has one (a resume)."""
    try:
      restored = self.ctrl.restore(store.controller_dir)
    except (ValueError, KeyError, TypeError, IndexError) as e:
      raise ValueError(f"the controller checkpoint in {store.controller_dir!r} cannot be loaded "
                       f"({type(e).__name__}: {e}); {rundir_lib.CORRUPT_HINT}") from None
    self.next_trial, self.updates = self.ctrl.num_sampled, self.ctrl.num_updates
    return restored

  def warm_start(self, warm: list[dict[str, Any]], restored: bool) -> None:
    """Feeds the warm-start trials to a controller that has no checkpoint of its own yet."""
    if warm and not restored:
      n = replay(self.ctrl, [r for r in warm if r.get("indices") is not None])
      logging.info("warm start from %s: %d trials, %d controller updates replayed",
                   self.config.warm_start_from, len(warm), n)
      self.next_trial, self.updates = self.ctrl.num_sampled, self.ctrl.num_updates

  def _clock(self) -> str:
    return "controller" if self._first_update_done else "controller_startup"

  def propose(self, k: int) -> list[Candidate]:
    """The next `k` children, numbered from `next_trial`."""
    t0 = time.perf_counter()
    samples = self.ctrl.sample(k)
    self.timings[self._clock()] += time.perf_counter() - t0
    return [Candidate(self.next_trial + j, self.space.decode(s.indices, name=f"trial-{self.next_trial + j}"), s)
            for j, s in enumerate(samples)]

  def observe(self, candidates: Sequence[Candidate], rewards: Sequence[float]) -> dict[str, float]:
    """Learns from the candidates' rewards (in memory; `save` checkpoints it). Returns the metrics."""
    t0 = time.perf_counter()
    metrics = self.ctrl.update([c.sample for c in candidates], list(rewards))
    self.timings[self._clock()] += time.perf_counter() - t0
    self._first_update_done = True
    return {k: float(v) for k, v in metrics.items()}

  def save(self, store: SearchStore, k: int) -> None:
    """Checkpoints the controller (atomically: after this the batch of `k` is consumed)."""
    t0 = time.perf_counter()
    self.ctrl.save(store.controller_dir)
    self.timings["controller"] += time.perf_counter() - t0
    self.next_trial += k
    self.updates += 1
