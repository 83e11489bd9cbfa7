"""The executor: candidates -> jobs -> backend -> typed records.

A child that trains as a network already scored at the same budget (`trained_as`: the same
network at the proxy's width and resolution) is not trained again: it is stored as a cached repeat
with its own deploy cost and reward. The reference networks are scored once per search directory
on the same proxy (at the full budget).

In a multi-fidelity search each job trains one rung: from the child's checkpoint at the rung
before (children/trial-NNNNN-bB.npz in the search directory) to the rung's budget, saving a
checkpoint there unless the rung is the last.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

import search_space
from mnas_search.execution import backends as backends_lib
from mnas_search.execution.resumable import run_resumable
from mnas_search.runs.records import Sampled, budget_of
from mnas_search.runs.store import TRIALS, SearchStore
from mnas_search.search.config import SearchConfig
from mnas_search.search.objective import Objective
from mnas_search.search.proposer import Candidate
from mnas_search.search.recorder import Recorder, TrialIndex
from mnas_search.training import continuation
from mnas_search.util import faults

CHILDREN_DIR = "children"  # checkpoints of children a multi-fidelity search may continue


def trial_seed(seed: int, trial: int) -> int:
  """A per-trial seed that differs across trials and across search seeds.

  Reference networks use negative trial numbers; they get a stream of their own
  (SeedSequence takes only non-negative entropy).
  """
  entropy = [seed, 0, trial] if trial >= 0 else [seed, 1, -trial]
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2 ** 31 - 1))


@dataclasses.dataclass(frozen=True)
class Rung:
  """One rung of a bracket: train the rung's children from `previous` to `budget` (of `total`).

  Attributes:
    index: the rung's index among the search's budgets (0 is the smallest).
    budget: what its children are trained to.
    previous: what they were trained to before (0: from scratch, at a bracket's first rung).
    total: the largest budget: the children's learning-rate schedule runs over it.
  """

  index: int
  budget: int
  previous: int
  total: int


@dataclasses.dataclass
class Batch:
  """One round (or one rung of it) in flight: the candidates, their records so far and what is
  left to train."""

  candidates: list[Candidate]
  update: int
  records: dict[int, dict[str, Any]]  # trial -> record, filled as trials finish
  jobs: list[backends_lib.Job]
  extras: dict[tuple[str, int], tuple[Candidate, Any]]  # (network, budget) -> (candidate, costs) to train
  deferred: list[tuple[Candidate, tuple[str, int]]]  # repeats within the batch, cached after training
  rung: Rung | None = None

  @property
  def budget(self) -> int:
    return self.rung.budget if self.rung else 0


class Executor:
  """Trains a search's children on a backend and turns their results into records.

  Args:
    config: the search's settings (task, seed, backend, strategy).
    store: the search directory.
    objective: costs and rewards.
    timings: seconds by phase; "children" and "cost" grow here.
  """

  def __init__(self, config: SearchConfig, store: SearchStore, objective: Objective,
               timings: dict[str, float]):
    self.config, self.store, self.objective, self.timings = config, store, objective, timings
    self.originals: dict[tuple[str, int], dict[str, Any]] = {}  # (network, budget) -> its first record
    self._t_children = 0.0

  def backend(self) -> backends_lib.Backend:
    c = self.config
    ray = backends_lib.RayOptions(c.ray_address, c.ray_allow_insecure, c.cpus_per_trial, c.gpus_per_trial)
    return backends_lib.make_backend(c.backend, workers=c.workers, ray=ray,
                                     threads_per_worker=c.threads_per_worker,
                                     hard_timeout_s=backends_lib.hard_timeout_for(c.task.timeout_s))

  def trained_as(self, arch) -> str:
    """The cache key of `arch`: the network the proxy trains (`network_identity` at the proxy's
    width and resolution), so that the same network is never scored twice as two children."""
    task = self.config.task
    return search_space.scale(arch, width=task.proxy_width, resolution=task.resolution
                              ).network_identity()

  def remember(self, records: Sequence[dict[str, Any]],
               at_budget: Mapping[tuple[int, int], dict[str, Any]]) -> None:
    """Puts stored (or warm-start) records' networks in the cache, each with its first score at
    its budget (`at_budget`: the records by (trial, budget), to find a cached one's original)."""
    for r in records:
      b = budget_of(r)
      original = r if r.get("cached_from") is None else at_budget.get((r["cached_from"], b), r)
      self.originals.setdefault((self.trained_as(search_space.Architecture.from_dict(r["arch"])), b),
                                original)

  def full_rung(self) -> Rung | None:
    """The whole schedule as one rung (a multi-fidelity search's references train to its largest
    budget, as its finalists do); None without a scheduler."""
    if self.config.scheduler == "none":
      return None
    budgets = self.config.budgets
    return Rung(len(budgets) - 1, budgets[-1], 0, budgets[-1])

  def checkpoint(self, trial: int, budget: int) -> str:
    """Where trial's checkpoint at `budget` is kept (multi-fidelity searches)."""
    return self.store.path(CHILDREN_DIR, f"trial-{trial:05d}-b{budget}.npz")

  def discard(self, trials: Sequence[int], budget: int) -> None:
    """Deletes the trials' checkpoints at `budget`: nothing will continue from them."""
    if budget:
      continuation.discard([self.checkpoint(t, budget) for t in trials])

  def _span(self, trial: int, rung: Rung | None) -> continuation.Span | None:
    if rung is None:
      return None
    return continuation.Span(
        rung.previous, rung.budget, rung.total,
        resume_from=self.checkpoint(trial, rung.previous) if rung.previous else None,
        save_to=self.checkpoint(trial, rung.budget) if rung.budget < rung.total else None)

  def _job(self, trial: int, arch, rung: Rung | None = None) -> backends_lib.Job:
    c = self.config
    return backends_lib.Job(trial=trial, arch=arch, task=c.task, seed=trial_seed(c.seed, trial),
                            deterministic=c.deterministic, strategy=c.strategy, tpu=c.tpu,
                            span=self._span(trial, rung))

  def _child(self, trial: int, update: int, arch, indices) -> Sampled:
    return Sampled(trial, update, arch, indices, trial_seed(self.config.seed, trial))

  def score_references(self, backend) -> dict[str, Any]:
    """The reference networks' records by name, scored now for those references.json lacks."""
    refs = self.store.read_references()
    missing = [n for n in self.config.references if n not in refs]
    if not missing:
      return refs
    logging.info("scoring reference network(s) %s on the same proxy", ", ".join(missing))
    jobs, costs = [], {}
    for i, name in enumerate(missing):
      arch = search_space.named(name)
      jobs.append(self._job(-1 - i, arch, self.full_rung()))
      costs[jobs[-1].trial] = (name, arch, self.objective.cost_of(arch))
    t0 = time.perf_counter()
    for job, result in backend.run(jobs):
      name, arch, cost = costs[job.trial]
      refs[name] = rec = self.objective.record(self._child(job.trial, -1, arch, None), result, cost)
      logging.info("reference %s: accuracy %.4f, reward %.4f, %s", name, rec["accuracy"], rec["reward"],
                   rec["status"])
    self.timings["children"] += time.perf_counter() - t0
    self.store.write_references(refs)
    return refs

  def plan(self, candidates: list[Candidate], update: int, stored: TrialIndex,
           rung: Rung | None = None) -> Batch:
    """Sorts candidates into stored (reused), cached (a network scored before at this budget) and
    jobs to train (the whole task, or `rung`)."""
    t0 = time.perf_counter()
    batch = Batch(candidates, update, records={}, jobs=[], extras={}, deferred=[], rung=rung)
    for cand in candidates:
      t, key = cand.trial, (self.trained_as(cand.arch), batch.budget)
      if stored.has(t, batch.budget):  # finished before a crash: reuse, never rerun
        rec = stored.at_budget[(t, batch.budget)]
        if list(rec["indices"]) != list(cand.sample.indices):
          logging.error("trial %d: the restored controller sampled %s but trials.jsonl holds %s; "
                        "keeping the stored trial", t, list(cand.sample.indices), rec["indices"])
        batch.records[t] = rec
      elif key in self.originals:
        batch.records[t] = self.objective.cached_record(
            self.originals[key], self._child(t, update, cand.arch, cand.sample.indices))
      elif key in batch.extras:  # the same network twice in one batch: train once
        batch.deferred.append((cand, key))
      else:
        batch.extras[key] = (cand, self.objective.cost_of(cand.arch))
        batch.jobs.append(self._job(t, cand.arch, rung))
    self.timings["cost"] += time.perf_counter() - t0
    return batch

  def train(self, backend, batch: Batch, recorder: Recorder) -> None:
    """Stores the cached records (they need no training), then trains and stores the jobs."""
    for t in sorted(batch.records):
      if not recorder.index.has(t, batch.budget):
        recorder.store_trial(batch.records[t])
    key_of = {job.trial: (self.trained_as(job.arch), batch.budget) for job in batch.jobs}

    def to_record(job, result):
      self.timings["children"] += time.perf_counter() - self._t_children
      faults.kill_point("child_trained")  # trained, not yet stored: a resume must retrain it
      cand, costs = batch.extras[key_of[job.trial]]
      rec = self.objective.record(self._child(job.trial, batch.update, job.arch, cand.sample.indices),
                                  result, costs)
      if batch.rung is not None:
        rec.update(budget=batch.rung.budget, rung=batch.rung.index)
      self.originals[key_of[job.trial]] = batch.records[job.trial] = rec
      return rec

    def stored(rec):
      recorder.after_trial(rec)
      self._t_children = time.perf_counter()

    self._t_children = time.perf_counter()
    run_resumable(self.store, TRIALS, batch.jobs, to_record, backend, stored)
    for cand, key in batch.deferred:
      batch.records[cand.trial] = self.objective.cached_record(
          self.originals[key], self._child(cand.trial, batch.update, cand.arch, cand.sample.indices))
      recorder.store_trial(batch.records[cand.trial])

  def train_given(self, items: Sequence[tuple[int, Any, Sequence[int]]], update: int,
                  recorder: Recorder) -> dict[str, Any]:
    """Trains architectures chosen elsewhere (the one-shot finalists) as this search's trials.

    Each is stored exactly as a sampled child would be; a trial the recorder already holds is
    never trained twice. The references are scored first on the same proxy.

    Args:
      items: (trial, architecture, indices) in the order to train them.
      update: the controller update the records name.
      recorder: stores each record and runs the hooks after it.

    Returns:
      The references' records by name.
    """
    with self.backend() as backend:
      refs = self.score_references(backend)
      for trial, arch, indices in items:
        if trial in recorder.by_trial:  # trained before a crash: never twice
          continue
        costs = self.objective.cost_of(arch)
        for job, result in backend.run([self._job(trial, arch)]):
          faults.kill_point("child_trained")
          recorder.store_trial(self.objective.record(self._child(job.trial, update, arch, indices),
                                                     result, costs))
    return refs
