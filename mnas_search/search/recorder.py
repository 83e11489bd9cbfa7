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

from mnas_search.runs.records import best_by_reward
from mnas_search.runs.store import SearchStore
from mnas_search.search import pareto as pareto_lib
from mnas_search.util.progress import Progress

# best.json: the best ok trial's summary.
BEST_KEYS = ("trial", "reward", "accuracy", "flops", "params", "blocks", "arch")


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
               "params": rec["params"], "budget": self.budget}
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
    by_trial: the stored trials by number, filled as trials are stored (shared with the caller).
    board: the TensorBoard writer.
    progress: the progress bar; its `best` is the best reward so far.
    timings: seconds by phase; "store" grows by the time spent here.
    on_trial: optional callback(record) after each trial is stored (tests, UIs).
    hparams: the HParams view, given a run per trial when set.
  """

  def __init__(self, store: SearchStore, by_trial: dict[int, dict[str, Any]], board: Board,
               progress: Progress, timings: dict[str, float],
               on_trial: Callable[[dict[str, Any]], None] | None = None,
               hparams: HParamsBoard | None = None):
    self.store, self.by_trial, self.board, self.progress = store, by_trial, board, progress
    self.timings, self.on_trial, self.hparams = timings, on_trial, hparams
    self._logged_updates = {u["update"] for u in store.read_updates()}

  def store_trial(self, rec: dict[str, Any]) -> None:
    """Appends a record that needed no training (stored or cached) and files it."""
    t0 = time.perf_counter()
    self.store.append_trial(rec)
    self.timings["store"] += time.perf_counter() - t0
    self.after_trial(rec)

  def after_trial(self, rec: dict[str, Any]) -> None:
    """What follows a record's append: TensorBoard, best.json, the log line, progress, on_trial."""
    t0 = time.perf_counter()
    self.by_trial[rec["trial"]] = rec
    self.board.scalars("trial", rec["trial"], {k: rec[k] for k in ("accuracy", "reward", "flops", "params")})
    progress = self.progress
    # A new best only when strictly better: on a tie the trial stored first stays best.
    # A repeat of the same architecture has its original's reward, so it never passes this test;
    # another architecture that trains as the same network has its own deploy cost, so it may.
    if rec["status"] in ("ok", "cached") and (progress.best is None or rec["reward"] > progress.best):
      self.store.write_best({k: rec[k] for k in BEST_KEYS})
      self.board.text("best_architecture", rec["trial"], "\n".join(f"    {b}" for b in rec["blocks"]) +
                      f"\n\nreward {rec['reward']:.4f}, accuracy {rec['accuracy']:.4f}, "
                      f"{rec['flops'] / 1e6:.1f}M FLOPs")
      progress.best = rec["reward"]
    logging.info("trial %d  %-7s acc %.4f  reward %.4f  %6.1fM FLOPs  %5.2fM params  %.1fs%s",
                 rec["trial"], rec["status"], rec["accuracy"], rec["reward"], rec["flops"] / 1e6,
                 rec["params"] / 1e6, rec["train_seconds"],
                 f"  ({rec['error'].splitlines()[0][:120]})" if rec.get("error") else "")
    if self.hparams is not None:
      self.hparams.trial(rec)
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

  def after_batch(self) -> None:
    """Rewrites pareto.json from the stored trials and flushes TensorBoard."""
    t0 = time.perf_counter()
    pareto_lib.update_pareto_file(self.store.path("pareto.json"), scored_trials(self.by_trial))
    self.board.flush()
    self.timings["store"] += time.perf_counter() - t0


def repair_best(store: SearchStore, records) -> None:
  """Rewrites best.json when trials.jsonl holds a better ok trial: a crash (or a full disk)
  between a trial's append and best.json's write would otherwise leave best.json stale."""
  top = best_by_reward(records, ("ok", "cached"))
  best = store.read_best()
  if top is not None and (best is None or top["reward"] > best["reward"]):
    logging.warning("best.json was behind trials.jsonl (a crash between the two writes); "
                    "rewriting it with trial %d", top["trial"])
    store.write_best({k: top[k] for k in BEST_KEYS})
