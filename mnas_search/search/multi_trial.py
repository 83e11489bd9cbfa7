"""The multi-trial search: propose, schedule, train, record, update; resumable at any instant.

One round: the proposer (the controller) samples K architectures; the scheduler has the executor
train them on the proxy (reusing stored trials and caching repeats of a scored network); the
recorder stores each record the moment its child finishes; the controller learns from the
rewards and is checkpointed.

Exact resume. Trial numbers are assigned in sampling order, and the controller checkpoint
(written after every update) holds its RNG state, so a restored controller re-samples exactly the
batch that was in flight at a crash. Trials of that batch already in trials.jsonl are reused, not
rerun; the others are trained. With `deterministic=True` children train bit-identically too, so a
killed and resumed search writes the same trials as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

from absl import logging

import search_space
from mnas_search.execution.resumable import EXECUTION_FIELDS
from mnas_search.runs.store import SearchStore
from mnas_search.search import pareto as pareto_lib
from mnas_search.search.config import SearchConfig
from mnas_search.search.executor import Executor, trial_seed
from mnas_search.search.objective import Objective
from mnas_search.search.proposer import Proposer, make_controller, warm_start_trials
from mnas_search.search.recorder import (
  BEST_KEYS,
  HPARAMS_DIR,
  Board,
  HParamsBoard,
  Recorder,
  TrialIndex,
  pareto_candidates,
  repair_best,
  scored_trials,
)
from mnas_search.search.scheduler import controller_rewards, make_scheduler
from mnas_search.util import faults, interrupt
from mnas_search.util.progress import Progress

__all__ = ["BEST_KEYS", "MAY_CHANGE_ON_RESUME", "Board", "Search", "SearchConfig", "SearchSummary",
           "make_controller", "run_search", "scored_trials", "trial_seed", "warm_start_trials"]

# Settings a resume may change; everything else must match params.json.
MAY_CHANGE_ON_RESUME = ("trials",) + EXECUTION_FIELDS


@dataclasses.dataclass
class SearchSummary:
  """What a finished (or stopped) `run_search` reports."""

  trials: int
  updates: int
  best: dict[str, Any] | None
  references: dict[str, Any]
  wall_seconds: float
  timings: dict[str, float]


class Search:
  """One search over one search directory (new or resumed).

  Args:
    search_dir: the search directory.
    config: every setting.
    on_trial: optional callback(record) after each trial is stored (tests, UIs).
    show_progress: draw a progress bar on stderr.
  """

  def __init__(self, search_dir: str, config: SearchConfig,
               on_trial: Callable[[dict[str, Any]], None] | None = None, show_progress: bool = True):
    self.config = config.resolved()
    self.store = SearchStore(search_dir)
    self.space = search_space.get_space(config.space)
    self.on_trial = on_trial
    self.show_progress = show_progress
    # controller_startup: this process's first sample + update, where TF traces the policy's graphs.
    self.timings = {"controller": 0.0, "controller_startup": 0.0, "cost": 0.0, "store": 0.0,
                    "children": 0.0}
    self.objective = Objective(self.config)
    self.executor = Executor(self.config, self.store, self.objective, self.timings)
    self.scheduler = make_scheduler(self.config)
    self.index = TrialIndex()
    self.by_trial = self.index.by_trial  # each child's final record
    self.recorder: Recorder | None = None

  def run(self) -> SearchSummary:
    """Runs the search holding the directory's lock (`RunDir.acquire`: one process per directory).

    Raises:
      rundir.DirectoryLockedError: another process runs in the directory; nothing was written.
      interrupt.Stopped: a stop signal (the CLI's handlers); `where` names the next trial.
    """
    self.store.acquire()
    try:
      return self._run()
    except interrupt.Stopped as e:
      e.where = f"trial {len(self.by_trial)}"
      if self.recorder is not None:
        self.recorder.progress.close()
      raise
    finally:
      self.store.release()

  def _run(self) -> SearchSummary:
    c = self.config
    t_start = time.perf_counter()
    proposer = self._open()
    progress = Progress(total=c.trials, done=min(len(self.by_trial), c.trials), enabled=self.show_progress)
    best = self.store.read_best()
    progress.best = best["reward"] if best else None
    hparams = HParamsBoard(os.path.join(self.store.tb_dir, HPARAMS_DIR), self.space,
                           c.task.steps or c.task.epochs)
    # The batches the controller learned from: a batch in flight is written when it completes.
    hparams.backfill(sorted((r for r in self.by_trial.values() if r["trial"] < proposer.next_trial),
                            key=lambda r: r["trial"]))
    self.recorder = Recorder(self.store, self.index, Board(self.store.tb_dir), progress, self.timings,
                             self.on_trial, hparams)
    with self.executor.backend() as backend:
      refs = self.executor.score_references(backend)
      while proposer.next_trial < c.trials:
        candidates = proposer.propose(min(c.trials_per_update, c.trials - proposer.next_trial))
        records = self.scheduler.run(self.executor, backend, candidates, proposer.updates, self.recorder)
        with interrupt.deferred():  # the whole batch updates the controller, or none of it
          self._commit(proposer, candidates, records)
    progress.close()
    self.recorder.board.close()
    return SearchSummary(trials=len(self.by_trial), updates=proposer.updates,
                         best=self.store.read_best(), references=refs,
                         wall_seconds=time.perf_counter() - t_start, timings=dict(self.timings))

  def _open(self) -> Proposer:
    """Makes and restores the controller and reads what the directory holds (a resume)."""
    c, store = self.config, self.store
    if c.deterministic:
      import keras
      import tensorflow as tf
      keras.utils.set_random_seed(c.seed)
      tf.config.experimental.enable_op_determinism()
    proposer = Proposer(c, self.space, self.timings)  # a bad hparam: refused before any write
    store.repair()
    # Checked, and written only once the checkpoint and the logs have been read back: a corrupted
    # file stops the run with nothing overwritten.
    store.check_params(c.to_params(), MAY_CHANGE_ON_RESUME)
    restored = proposer.restore(store)
    records = store.read_trials(rungs=True)
    warm = warm_start_trials(c)
    resumed = store.write_or_check_params(c.to_params(), MAY_CHANGE_ON_RESUME)
    for r in records:
      self.index.add(r)
    if len(self.index.at_budget) != len(records):
      raise ValueError(f"{store.path('trials.jsonl')!r} has a trial twice at one budget; it was edited by hand?")
    warm_index = TrialIndex({r["trial"]: r for r in warm})
    self.executor.remember([r for r in warm if r.get("indices") is not None], warm_index.at_budget)
    proposer.warm_start(warm, restored)
    self.executor.remember(sorted(records, key=lambda r: r["trial"]), self.index.at_budget)
    repair_best(store, list(self.by_trial.values()))
    if records:  # a crash between a batch's controller checkpoint and its pareto.json
      pareto_lib.update_pareto_file(store.path("pareto.json"), pareto_candidates(self.by_trial))
    if resumed:
      logging.info("resuming %s: %d trials stored, controller at update %d (%s)", store.directory,
                   len(records), proposer.updates, "restored" if restored else "fresh")
    return proposer

  def _commit(self, proposer: Proposer, candidates, records: dict[int, dict[str, Any]]) -> None:
    """Updates the controller with the batch's rewards, logs and checkpoints it, rewrites pareto.json."""
    metrics = proposer.observe(candidates, controller_rewards(candidates, records))
    faults.kill_point("controller_updated")  # updated in memory, not yet checkpointed
    self.recorder.after_update(proposer.updates, proposer.next_trial + len(candidates), metrics)
    proposer.save(self.store, len(candidates))
    faults.kill_point("checkpoint_saved")
    self.recorder.after_batch(records)


def run_search(search_dir: str, config: SearchConfig, **kwargs) -> SearchSummary:
  """Runs (or resumes) a search; see `Search`."""
  return Search(search_dir, config, **kwargs).run()
