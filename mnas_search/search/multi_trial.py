"""The search loop: sample, cost, train, reward, update, store; resumable at any instant.

One round: the controller samples K architectures; each one's deploy cost is
counted analytically; the backend trains the children on the proxy; rewards
are computed; the controller is updated and checkpointed. Every finished trial
is appended to trials.jsonl the moment it finishes.

Exact resume. Trial numbers are assigned in sampling order, and the controller
checkpoint (written after every update) holds its RNG state, so a restored
controller re-samples exactly the batch that was in flight at a crash. Trials
of that batch already in trials.jsonl are reused, not rerun; the others are
trained. With `deterministic=True` children train bit-identically too, so a
killed and resumed search writes the same trials as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from absl import logging

import controller as controller_lib
import rewards as rewards_lib
import search_space
from mnas_search.execution import backends as backends_lib
from mnas_search.execution.resumable import EXECUTION_FIELDS, run_resumable
from mnas_search.runs import rundir as rundir_lib
from mnas_search.runs.records import Sampled, TrialRecord, best_by_reward
from mnas_search.runs.store import TRIALS, SearchStore
from mnas_search.search import pareto as pareto_lib
from mnas_search.search.config import SearchConfig
from mnas_search.util import faults, interrupt
from mnas_search.util.progress import Progress
from nas_common import FieldError

# best.json: the best ok trial's summary.
BEST_KEYS = ("trial", "reward", "accuracy", "flops", "params", "blocks", "arch")
# Settings a resume may change; everything else must match params.json.
MAY_CHANGE_ON_RESUME = ("trials",) + EXECUTION_FIELDS
# What must match for a warm start to reuse an earlier search's scores (the proxy task and the cost).
WARM_START_FIELDS = ("task", "space", "reward", "w", "cost", "target_flops", "target_params",
                     "target_latency_ms", "cost_resolution", "cost_num_classes")


def scored_trials(by_trial: Mapping[int, dict[str, Any]]) -> list[dict[str, Any]]:
  """The trials that stand for a network of their own: trained ok, or cached from another
  architecture that trains as the same network (own deploy cost, own point on the front)."""
  out = []
  for r in by_trial.values():
    original = by_trial.get(r.get("cached_from"))
    if r["status"] == "ok" or (r["status"] == "cached" and original is not None
                               and original["status"] == "ok"
                               and list(original["blocks"]) != list(r["blocks"])):
      out.append(r)
  return out


def make_controller(config: "SearchConfig", arities: Sequence[int]) -> controller_lib.Controller:
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
  import json
  mine = json.loads(json.dumps(config.to_params()))
  diff = [f"{k}: {params.get(k)!r} there, {mine.get(k)!r} here" for k in WARM_START_FIELDS
          if params.get(k) != mine.get(k)]
  if diff:
    raise FieldError("warm_start_from", source, "", reason="holds a search with another proxy task "
                     f"or cost, so its scores do not carry over; differing: {'; '.join(diff)}")
  return sorted(SearchStore(source).read_trials(), key=lambda r: r["trial"])


def _replay(ctrl, records: list[dict[str, Any]]) -> int:
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


def trial_seed(seed: int, trial: int) -> int:
  """A per-trial seed that differs across trials and across search seeds.

  Reference networks use negative trial numbers; they get a stream of their own
  (SeedSequence takes only non-negative entropy).
  """
  entropy = [seed, 0, trial] if trial >= 0 else [seed, 1, -trial]
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2 ** 31 - 1))


@dataclasses.dataclass
class SearchSummary:
  """What a finished (or stopped) `run_search` reports."""

  trials: int
  updates: int
  best: dict[str, Any] | None
  references: dict[str, Any]
  wall_seconds: float
  timings: dict[str, float]


class Board:
  """TensorBoard scalars and text, written lazily (TF is imported on first use)."""

  def __init__(self, logdir: str):
    import tensorflow as tf
    self._tf = tf
    self._writer = tf.summary.create_file_writer(logdir)

  def scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
    with self._writer.as_default():
      for k, v in values.items():
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
          self._tf.summary.scalar(f"{prefix}/{k}", float(v), step=step)

  def text(self, tag: str, step: int, text: str) -> None:
    with self._writer.as_default():
      self._tf.summary.text(tag, text, step=step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


@dataclasses.dataclass
class _Batch:
  """One round in flight: the samples, their records so far and what is left to train."""

  first: int  # the trial number of the first sample
  samples: list[Any]
  records: dict[int, dict[str, Any]]  # trial -> record, filled as trials finish
  jobs: list[backends_lib.Job]
  extras: dict[str, tuple[Any, Any, tuple]]  # arch key -> (arch, indices, cost tuple) to train
  deferred: list[tuple[int, Any, Any, str]]  # repeats within the batch, cached after training


class Search:
  """One search over one search directory (new or resumed).

  A round is three steps: `_plan` samples K architectures and sorts them into stored, cached and
  to-train; `_train` stores the cached ones and trains the rest (`resumable.run_resumable`);
  `_commit` updates the controller, checkpoints it and rewrites pareto.json.

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
    self._latency = None
    if config.cost == "latency":
      from mnas_search.costs.latency import LatencyModel
      # Measured on this machine, lazily: a new block configuration is timed the first time it shows up.
      self._latency = LatencyModel(cache_dir=config.latency_cache_dir, threads=config.latency_threads,
                                   resolution=config.cost_resolution, num_classes=config.cost_num_classes)
    self._by_trial: dict[int, dict[str, Any]] = {}
    self._originals: dict[str, dict[str, Any]] = {}  # arch key -> first record of that architecture
    self._logged_updates: set[int] = set()
    self._trial = self._update = 0
    self._first_update_done = False
    self._t_children = 0.0
    self._board: Board | None = None
    self._progress: Progress | None = None

  # --------------------------------------------------------------------------- helpers
  def cost_of(self, arch) -> tuple[int, int, float | None, float]:
    """(flops, params, latency_ms or None, the cost the reward uses) at the deploy resolution."""
    c = self.config
    flops = search_space.count_flops(arch, c.cost_resolution, c.cost_num_classes)
    params = search_space.count_params(arch, c.cost_num_classes)
    latency_ms = self._latency.predict_ms(arch) if self._latency is not None else None
    cost = rewards_lib.select_cost(c.cost, flops=flops, params=params, latency_ms=latency_ms)
    return flops, params, latency_ms, cost

  def _reward(self, status: str, accuracy: float, cost: float) -> float:
    if status != "ok":
      return 0.0  # failed and timed-out children: recorded, reward 0, never dropped
    return float(rewards_lib.compute(self.config.reward, accuracy, cost, self.config.target, self.config.w))

  def _job(self, trial: int, arch) -> backends_lib.Job:
    c = self.config
    return backends_lib.Job(trial=trial, arch=arch, task=c.task, seed=trial_seed(c.seed, trial),
                            deterministic=c.deterministic, strategy=c.strategy, tpu=c.tpu)

  def _record(self, trial: int, update: int, arch, indices, result, cost_tuple) -> dict[str, Any]:
    """The trials.jsonl record of a trained child; indices None for a reference network."""
    flops, params, latency_ms, cost = cost_tuple
    child = Sampled(trial, update, arch, indices, trial_seed(self.config.seed, trial))
    return TrialRecord.from_result(child, result, (flops, params, latency_ms),
                                   lambda status, accuracy: self._reward(status, accuracy, cost)).to_json()

  def trained_as(self, arch) -> str:
    """The cache key of `arch`: the network the proxy trains (`network_identity` at the proxy's
    width and resolution), so that the same network is never scored twice as two children."""
    task = self.config.task
    return search_space.scale(arch, width=task.proxy_width, resolution=task.resolution
                              ).network_identity()

  def _cached_record(self, trial: int, update: int, arch, indices, original) -> dict[str, Any]:
    """`original`'s score for `arch`, with `arch`'s own deploy costs and reward where it differs."""
    rec = TrialRecord.from_json(original)
    child = Sampled(trial, update, arch, indices, trial_seed(self.config.seed, trial))
    if search_space.Architecture.from_dict(rec.arch).identity() == arch.identity():
      return rec.cached_as(child).to_json()
    flops, params, latency_ms, cost = self.cost_of(arch)
    return rec.cached_as(child, (flops, params, latency_ms),
                         lambda status, accuracy: self._reward(status, accuracy, cost)).to_json()

  def _backend(self):
    c = self.config
    ray = backends_lib.RayOptions(c.ray_address, c.ray_allow_insecure, c.cpus_per_trial, c.gpus_per_trial)
    return backends_lib.make_backend(c.backend, workers=c.workers, ray=ray,
                                     threads_per_worker=c.threads_per_worker,
                                     hard_timeout_s=backends_lib.hard_timeout_for(c.task.timeout_s))

  # --------------------------------------------------------------------------- references
  def _score_references(self, backend) -> dict[str, Any]:
    refs = self.store.read_references()
    missing = [n for n in self.config.references if n not in refs]
    if not missing:
      return refs
    logging.info("scoring reference network(s) %s on the same proxy", ", ".join(missing))
    jobs, costs = [], {}
    for i, name in enumerate(missing):
      arch = search_space.named(name)
      job = self._job(-1 - i, arch)
      jobs.append(job)
      costs[job.trial] = (name, arch, self.cost_of(arch))
    t0 = time.perf_counter()
    for job, result in backend.run(jobs):
      name, arch, cost_tuple = costs[job.trial]
      rec = self._record(job.trial, -1, arch, None, result, cost_tuple)
      refs[name] = rec
      logging.info("reference %s: accuracy %.4f, reward %.4f, %s", name, rec["accuracy"], rec["reward"],
                   rec["status"])
    self.timings["children"] += time.perf_counter() - t0
    self.store.write_references(refs)
    return refs

  # --------------------------------------------------------------------------- given architectures
  def train_given(self, items: Sequence[tuple[int, Any, Sequence[int]]], update: int,
                  by_trial: dict[int, dict[str, Any]], board: Board, progress: Progress
                  ) -> dict[str, Any]:
    """Trains architectures chosen elsewhere (the one-shot finalists) as this search's trials.

    Each is stored exactly as a sampled child would be (trials.jsonl, best.json, TensorBoard,
    the log line); a trial already in `by_trial` is never trained twice. The references are
    scored first on the same proxy. The caller holds the directory (lock, params.json).

    Args:
      items: (trial, architecture, indices) in the order to train them.
      update: the controller update the records name.
      by_trial: the stored trials by number; filled as trials finish.
      board: the TensorBoard writer.
      progress: the progress bar (its `best` is the best reward so far).

    Returns:
      The references' records by name.
    """
    self._by_trial, self._board, self._progress = by_trial, board, progress
    with self._backend() as backend:
      refs = self._score_references(backend)
      for trial, arch, indices in items:
        if trial in by_trial:  # trained before a crash: never twice
          continue
        cost_tuple = self.cost_of(arch)
        for job, result in backend.run([self._job(trial, arch)]):
          faults.kill_point("child_trained")
          self._store_trial(self._record(job.trial, update, arch, indices, result, cost_tuple))
    return refs

  # --------------------------------------------------------------------------- main loop
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
      e.where = f"trial {len(self._by_trial)}"
      if self._progress is not None:
        self._progress.close()
      raise
    finally:
      self.store.release()

  def _run(self) -> SearchSummary:
    c = self.config
    t_start = time.perf_counter()
    ctrl = self._open()
    best = self.store.read_best()
    self._board = Board(self.store.tb_dir)
    self._progress = Progress(total=c.trials, done=min(len(self._by_trial), c.trials),
                              enabled=self.show_progress)
    if best:
      self._progress.best = best["reward"]
    with self._backend() as backend:
      refs = self._score_references(backend)
      while self._trial < c.trials:
        batch = self._plan(ctrl, min(c.trials_per_update, c.trials - self._trial))
        self._train(backend, batch)
        with interrupt.deferred():  # the whole batch updates the controller, or none of it
          self._commit(ctrl, batch)
    self._progress.close()
    self._board.close()
    return SearchSummary(trials=len(self._by_trial), updates=self._update,
                         best=self.store.read_best(), references=refs,
                         wall_seconds=time.perf_counter() - t_start, timings=dict(self.timings))

  def _open(self):
    """Makes and restores the controller and reads what the directory holds (a resume)."""
    c, store = self.config, self.store
    if c.deterministic:
      import keras
      import tensorflow as tf
      keras.utils.set_random_seed(c.seed)
      tf.config.experimental.enable_op_determinism()
    # Built before anything is written, so that a bad hparam leaves no half-made search behind.
    ctrl = make_controller(c, self.space.arities)
    store.repair()
    # Checked, and written only once the checkpoint and the logs have been read back: a corrupted
    # file stops the run with nothing overwritten.
    store.check_params(c.to_params(), MAY_CHANGE_ON_RESUME)
    try:
      restored = ctrl.restore(store.controller_dir)
    except (ValueError, KeyError, TypeError, IndexError) as e:
      raise ValueError(f"the controller checkpoint in {store.controller_dir!r} cannot be loaded "
                       f"({type(e).__name__}: {e}); {rundir_lib.CORRUPT_HINT}") from None
    records = store.read_trials()
    warm = warm_start_trials(c)
    resumed = store.write_or_check_params(c.to_params(), MAY_CHANGE_ON_RESUME)
    self._by_trial = {r["trial"]: r for r in records}
    if len(self._by_trial) != len(records):
      raise ValueError(f"{store.path('trials.jsonl')!r} has duplicate trial numbers; it was edited by hand?")
    self._warm_start(ctrl, warm, restored)
    for r in sorted(records, key=lambda r: r["trial"]):
      self._originals.setdefault(
          self.trained_as(search_space.Architecture.from_dict(r["arch"])),
          r if r.get("cached_from") is None else self._by_trial.get(r["cached_from"], r))
    self._logged_updates = {u["update"] for u in store.read_updates()}
    self._trial, self._update = ctrl.num_sampled, ctrl.num_updates
    self._repair_best(records)
    if resumed:
      logging.info("resuming %s: %d trials stored, controller at update %d (%s)", store.directory,
                   len(records), self._update, "restored" if restored else "fresh")
    return ctrl

  def _warm_start(self, ctrl, warm: list[dict[str, Any]], restored: bool) -> None:
    """Puts the warm-start trials' architectures in the cache (their first score), and feeds them
    to a controller that has no checkpoint of its own yet."""
    by_trial = {r["trial"]: r for r in warm}
    for r in warm:
      if r.get("indices") is not None:
        self._originals.setdefault(self.trained_as(search_space.Architecture.from_dict(r["arch"])),
                                   by_trial.get(r.get("cached_from"), r))
    if warm and not restored:
      n = _replay(ctrl, [r for r in warm if r.get("indices") is not None])
      logging.info("warm start from %s: %d trials, %d controller updates replayed",
                   self.config.warm_start_from, len(warm), n)

  def _repair_best(self, records) -> None:
    """Rewrites best.json when trials.jsonl holds a better ok trial: a crash (or a full disk)
    between a trial's append and best.json's write would otherwise leave best.json stale."""
    top = best_by_reward(records, ("ok", "cached"))
    best = self.store.read_best()
    if top is not None and (best is None or top["reward"] > best["reward"]):
      logging.warning("best.json was behind trials.jsonl (a crash between the two writes); "
                      "rewriting it with trial %d", top["trial"])
      self.store.write_best({k: top[k] for k in BEST_KEYS})

  def _ctrl_key(self) -> str:
    return "controller" if self._first_update_done else "controller_startup"

  def _plan(self, ctrl, k: int) -> _Batch:
    """Samples K architectures: stored ones are reused, repeats cached, the rest become jobs."""
    t0 = time.perf_counter()
    samples = ctrl.sample(k)
    self.timings[self._ctrl_key()] += time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = _Batch(first=self._trial, samples=samples, records={}, jobs=[], extras={}, deferred=[])
    for j, s in enumerate(samples):
      t = self._trial + j
      arch = self.space.decode(s.indices, name=f"trial-{t}")
      key = self.trained_as(arch)
      if t in self._by_trial:  # finished before a crash: reuse, never rerun
        rec = self._by_trial[t]
        if list(rec["indices"]) != list(s.indices):
          logging.error("trial %d: the restored controller sampled %s but trials.jsonl holds %s; "
                        "keeping the stored trial", t, list(s.indices), rec["indices"])
        batch.records[t] = rec
      elif key in self._originals:
        batch.records[t] = self._cached_record(t, self._update, arch, s.indices, self._originals[key])
      elif key in batch.extras:  # the same architecture twice in one batch: train once
        batch.deferred.append((t, arch, s.indices, key))
      else:
        batch.extras[key] = (arch, s.indices, self.cost_of(arch))
        batch.jobs.append(self._job(t, arch))
    self.timings["cost"] += time.perf_counter() - t0
    return batch

  def _train(self, backend, batch: _Batch) -> None:
    """Stores the cached records (they need no training), then trains and stores the jobs."""
    for t in sorted(batch.records):
      if t not in self._by_trial:
        self._store_trial(batch.records[t])
    key_of = {job.trial: self.trained_as(job.arch) for job in batch.jobs}

    def to_record(job, result):
      self.timings["children"] += time.perf_counter() - self._t_children
      faults.kill_point("child_trained")  # trained, not yet stored: a resume must retrain it
      _, indices, cost_tuple = batch.extras[key_of[job.trial]]
      rec = self._record(job.trial, self._update, job.arch, indices, result, cost_tuple)
      self._originals[key_of[job.trial]] = rec
      batch.records[job.trial] = rec
      return rec

    def stored(rec):
      self._after_store(rec)
      self._t_children = time.perf_counter()

    self._t_children = time.perf_counter()
    run_resumable(self.store, TRIALS, batch.jobs, to_record, backend, stored)
    for t, arch, indices, key in batch.deferred:
      batch.records[t] = self._cached_record(t, self._update, arch, indices, self._originals[key])
      self._store_trial(batch.records[t])

  def _commit(self, ctrl, batch: _Batch) -> None:
    """Updates the controller with the batch's rewards, logs and checkpoints it, rewrites pareto.json."""
    k = len(batch.samples)
    rewards = [batch.records[batch.first + j]["reward"] for j in range(k)]
    t0 = time.perf_counter()
    metrics = ctrl.update(batch.samples, rewards)
    self.timings[self._ctrl_key()] += time.perf_counter() - t0
    self._first_update_done = True
    faults.kill_point("controller_updated")  # updated in memory, not yet checkpointed
    t0 = time.perf_counter()
    metrics = {k_: float(v) for k_, v in metrics.items()}
    if self._update not in self._logged_updates:
      self.store.append_update({"update": self._update, "trials": self._trial + k, **metrics,
                                "best_reward": self._progress.best})
      self._logged_updates.add(self._update)
    self._board.scalars("controller", self._update, metrics)
    self.timings["store"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    ctrl.save(self.store.controller_dir)  # atomic; after this the batch is consumed
    self.timings["controller"] += time.perf_counter() - t0
    faults.kill_point("checkpoint_saved")
    t0 = time.perf_counter()
    pareto_lib.update_pareto_file(self.store.path("pareto.json"), scored_trials(self._by_trial))
    self._board.flush()
    self.timings["store"] += time.perf_counter() - t0
    self._trial += k
    self._update += 1

  def _store_trial(self, rec) -> None:
    """Appends a record that needed no training (stored or cached) and files it."""
    t0 = time.perf_counter()
    self.store.append_trial(rec)
    self.timings["store"] += time.perf_counter() - t0
    self._after_store(rec)

  def _after_store(self, rec) -> None:
    """What follows a record's append: TensorBoard, best.json, the log line, progress, on_trial."""
    t0 = time.perf_counter()
    self._by_trial[rec["trial"]] = rec
    self._board.scalars("trial", rec["trial"], {k: rec[k] for k in ("accuracy", "reward", "flops", "params")})
    progress = self._progress
    # A new best only when strictly better: on a tie the trial stored first stays best.
    # A repeat of the same architecture has its original's reward, so it never passes this test;
    # another architecture that trains as the same network has its own deploy cost, so it may.
    if rec["status"] in ("ok", "cached") and (progress.best is None or rec["reward"] > progress.best):
      best = {k: rec[k] for k in BEST_KEYS}
      self.store.write_best(best)
      self._board.text("best_architecture", rec["trial"], "\n".join(f"    {b}" for b in rec["blocks"]) +
                       f"\n\nreward {rec['reward']:.4f}, accuracy {rec['accuracy']:.4f}, "
                       f"{rec['flops'] / 1e6:.1f}M FLOPs")
      progress.best = rec["reward"]
    logging.info("trial %d  %-7s acc %.4f  reward %.4f  %6.1fM FLOPs  %5.2fM params  %.1fs%s",
                 rec["trial"], rec["status"], rec["accuracy"], rec["reward"], rec["flops"] / 1e6,
                 rec["params"] / 1e6, rec["train_seconds"],
                 f"  ({rec['error'].splitlines()[0][:120]})" if rec.get("error") else "")
    progress.advance()
    self.timings["store"] += time.perf_counter() - t0
    if self.on_trial:
      self.on_trial(rec)


def run_search(search_dir: str, config: SearchConfig, **kwargs) -> SearchSummary:
  """Runs (or resumes) a search; see `Search`."""
  return Search(search_dir, config, **kwargs).run()
