"""What a search writes after each trial and each controller update.

After a trial: its line in trials.jsonl (the trained ones are appended by the runner as they
finish), TensorBoard scalars, best.json when it is a new best, the log line, the progress bar and
the caller's hook. After an update: its line in updates.jsonl, TensorBoard, pareto.json.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any, Callable, Mapping

from absl import logging

from mnas_search.runs.records import best_by_reward, budget_of
from mnas_search.runs.store import SearchStore
from mnas_search.search import pareto as pareto_lib
from mnas_search.util.progress import Progress

# best.json: the best ok trial's summary (and its budget, in a multi-fidelity search).
BEST_KEYS = ("trial", "reward", "accuracy", "flops", "params", "blocks", "arch")


def best_summary(rec: Mapping[str, Any]) -> dict[str, Any]:
  """best.json's content for `rec`."""
  return {k: rec[k] for k in BEST_KEYS + (("budget",) if "budget" in rec else ())}


def rank_key(rec: Mapping[str, Any]) -> tuple[int, float]:
  """What best.json maximizes: the budget first (a low-rung score never beats a high-rung one),
  then the reward."""
  return budget_of(rec), rec["reward"]


class TrialIndex:
  """A search's stored records: each child's final (highest-budget) record by trial, and every
  record by (trial, budget). A search without rungs has one record per trial, at budget 0.

  Args:
    by_trial: the dict to keep the final records in (shared with the caller); its records are indexed.
  """

  def __init__(self, by_trial: dict[int, dict[str, Any]] | None = None):
    self.by_trial = {} if by_trial is None else by_trial
    self.at_budget = {(r["trial"], budget_of(r)): r for r in self.by_trial.values()}

  def add(self, rec: dict[str, Any]) -> bool:
    """Files a record; True when it is its trial's first."""
    t = rec["trial"]
    first = t not in self.by_trial
    self.at_budget[(t, budget_of(rec))] = rec
    if first or budget_of(rec) >= budget_of(self.by_trial[t]):
      self.by_trial[t] = rec
    return first

  def has(self, trial: int, budget: int) -> bool:
    return (trial, budget) in self.at_budget


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


def pareto_candidates(by_trial: Mapping[int, dict[str, Any]]) -> list[dict[str, Any]]:
  """`scored_trials` that reached the highest budget stored (all of them without rungs): a child
  stopped at a low rung is not on the accuracy-cost front beside fully trained ones."""
  scored = scored_trials(by_trial)
  top = max((budget_of(r) for r in scored), default=0)
  return [r for r in scored if budget_of(r) == top]


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


HPARAMS_DIR = "hparams"  # under the search's tb/: TensorBoard's HParams view of the trials
HPARAMS_METRICS = ("reward", "accuracy", "flops", "params", "budget")


class HParamsBoard:
  """TensorBoard's HParams table and parallel-coordinates view of a search.

  The experiment (every decision with its options, and the metrics) is written once per search
  directory; each trial is a run of its own (logdir/trial-NNNNN) with its decisions as hparams and
  its reward, accuracy, deploy FLOPs and parameters and training budget as metrics.

  Args:
    logdir: the HParams folder (the search's tb/hparams).
    space: the search space, whose decisions are the hparams.
    budget: what every trial trains for (the proxy's epochs, or its steps when set).
  """

  def __init__(self, logdir: str, space: Any, budget: int):
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    self._tf, self._hp, self.logdir, self.space, self.budget = tf, hp, logdir, space, budget
    self._hparams = [hp.HParam(d.name, hp.Discrete(list(d.options))) for d in space.decisions]
    if not self._has_events(logdir):  # once per search directory: a resume keeps the first
      try:
        writer = tf.summary.create_file_writer(logdir)
        with writer.as_default():
          hp.hparams_config(hparams=self._hparams, metrics=[hp.Metric(m) for m in HPARAMS_METRICS])
        writer.close()
      except tf.errors.OpError as e:  # as for a trial's run: a resume writes it
        logging.warning("TensorBoard HParams: the experiment was not written (%s)", str(e).splitlines()[0][:200])

  @staticmethod
  def _has_events(folder: str) -> bool:
    return os.path.isdir(folder) and any(f.startswith("events.") for f in os.listdir(folder))

  def run_dir(self, trial: int) -> str:
    return os.path.join(self.logdir, f"trial-{trial:05d}")

  def trial(self, rec: Mapping[str, Any]) -> None:
    """Writes `rec`'s run, unless it has one (a trial is written once, also across a resume)."""
    folder = self.run_dir(rec["trial"])
    if rec.get("indices") is None or self._has_events(folder):
      return
    values = {h: d.options[i] for h, d, i in zip(self._hparams, self.space.decisions, rec["indices"])}
    metrics = {"reward": rec["reward"], "accuracy": rec["accuracy"], "flops": rec["flops"],
               "params": rec["params"], "budget": rec.get("budget", self.budget)}
    try:
      writer = self._tf.summary.create_file_writer(folder)
      with writer.as_default():
        self._hp.hparams(values, trial_id=f"trial-{rec['trial']}")
        for name, value in metrics.items():
          self._tf.summary.scalar(name, float(value), step=0)
      writer.close()
    except self._tf.errors.OpError as e:
      # A view derived from trials.jsonl: a run that cannot be written (e.g. a full disk) must not
      # stop the search; it is removed, so that the next resume's backfill writes it whole.
      shutil.rmtree(folder, ignore_errors=True)
      logging.warning("TensorBoard HParams: trial %d's run was not written (%s); a resume writes it",
                      rec["trial"], str(e).splitlines()[0][:200])

  def backfill(self, records) -> None:
    """Writes the runs a crash left unwritten (between a record's append and its run)."""
    for rec in records:
      self.trial(rec)


class Recorder:
  """The hooks after each stored trial and each controller update.

  Args:
    store: the search directory.
    index: the stored records, filled as records are stored (shared with the caller).
    board: the TensorBoard writer.
    progress: the progress bar; its `best` is the best reward so far.
    timings: seconds by phase; "store" grows by the time spent here.
    on_trial: optional callback(record) after each trial is stored (tests, UIs).
    hparams: the HParams view, given a run per trial when set.
  """

  def __init__(self, store: SearchStore, index: TrialIndex, board: Board,
               progress: Progress, timings: dict[str, float],
               on_trial: Callable[[dict[str, Any]], None] | None = None,
               hparams: HParamsBoard | None = None):
    self.store, self.index, self.board, self.progress = store, index, board, progress
    self.timings, self.on_trial, self.hparams = timings, on_trial, hparams
    self._logged_updates = {u["update"] for u in store.read_updates()}
    best = store.read_best()
    self._best = rank_key(best) if best else None

  @property
  def by_trial(self) -> dict[int, dict[str, Any]]:
    """Each stored child's final record, by trial."""
    return self.index.by_trial

  def store_trial(self, rec: dict[str, Any]) -> None:
    """Appends a record that needed no training (stored or cached) and files it."""
    t0 = time.perf_counter()
    self.store.append_trial(rec)
    self.timings["store"] += time.perf_counter() - t0
    self.after_trial(rec)

  def after_trial(self, rec: dict[str, Any]) -> None:
    """What follows a record's append: TensorBoard, best.json, the log line, progress, on_trial."""
    t0 = time.perf_counter()
    first = self.index.add(rec)
    prefix = "trial" if "budget" not in rec else f"trial_budget{rec['budget']}"
    self.board.scalars(prefix, rec["trial"], {k: rec[k] for k in ("accuracy", "reward", "flops", "params")})
    progress = self.progress
    # A new best only when strictly better: on a tie the trial stored first stays best.
    # A repeat of the same architecture has its original's reward, so it never passes this test;
    # another architecture that trains as the same network has its own deploy cost, so it may.
    if rec["status"] in ("ok", "cached") and (self._best is None or rank_key(rec) > self._best):
      self.store.write_best(best_summary(rec))
      self._best = rank_key(rec)
      self.board.text("best_architecture", rec["trial"], "\n".join(f"    {b}" for b in rec["blocks"]) +
                      f"\n\nreward {rec['reward']:.4f}, accuracy {rec['accuracy']:.4f}, "
                      f"{rec['flops'] / 1e6:.1f}M FLOPs")
      progress.best = rec["reward"]
    logging.info("trial %d%s  %-7s acc %.4f  reward %.4f  %6.1fM FLOPs  %5.2fM params  %.1fs%s",
                 rec["trial"], f" budget {rec['budget']}" if "budget" in rec else "", rec["status"],
                 rec["accuracy"], rec["reward"], rec["flops"] / 1e6, rec["params"] / 1e6,
                 rec["train_seconds"], f"  ({rec['error'].splitlines()[0][:120]})" if rec.get("error") else "")
    if first:
      progress.advance()
    self.timings["store"] += time.perf_counter() - t0
    if self.on_trial:
      self.on_trial(rec)

  def after_update(self, update: int, trials: int, metrics: Mapping[str, float]) -> None:
    """Logs a controller update (updates.jsonl once per update, and TensorBoard)."""
    t0 = time.perf_counter()
    if update not in self._logged_updates:
      self.store.append_update({"update": update, "trials": trials, **metrics,
                                "best_reward": self.progress.best})
      self._logged_updates.add(update)
    self.board.scalars("controller", update, metrics)
    self.timings["store"] += time.perf_counter() - t0

  def after_batch(self, finals: Mapping[int, dict[str, Any]]) -> None:
    """Writes the batch's HParams runs (each child at its highest budget), rewrites pareto.json
    from the stored trials and flushes TensorBoard."""
    t0 = time.perf_counter()
    if self.hparams is not None:
      for t in sorted(finals):
        self.hparams.trial(finals[t])
    pareto_lib.update_pareto_file(self.store.path("pareto.json"), pareto_candidates(self.by_trial))
    self.board.flush()
    self.timings["store"] += time.perf_counter() - t0


def repair_best(store: SearchStore, records) -> None:
  """Rewrites best.json when trials.jsonl holds a better ok trial: a crash (or a full disk)
  between a trial's append and best.json's write would otherwise leave best.json stale."""
  top = best_by_reward(records, ("ok", "cached"))
  best = store.read_best()
  if top is not None and (best is None or rank_key(top) > rank_key(best)):
    logging.warning("best.json was behind trials.jsonl (a crash between the two writes); "
                    "rewriting it with trial %d", top["trial"])
    store.write_best(best_summary(top))
