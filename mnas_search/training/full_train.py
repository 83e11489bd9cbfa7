"""Full training of one architecture, scored on the TEST split; resumable after a crash.

Data. The model trains on every training image except the validation split carved from the
training set (`datasets.load_splits` with the recipe's seed and val_images: with the defaults, the
same split the search scored children on). That validation split is only monitored, once per
epoch; the test split, which the search never sees, gives the reported accuracy.

Recipe (a `ProxyTask` describes it, so that the trainer's builder, optimizer, schedule and loss
are reused): SGD with momentum (or RMSProp) on a linear warmup then cosine decay to 0, label
smoothing, optional decoupled weight decay, random crop (reflect-pad by resolution/8, crop back)
and horizontal flip where it fits the data, and an exponential moving average (EMA) of the
weights, which is what gets evaluated and saved.

The output directory:
  params.json              the architecture and recipe; a resume with other settings is refused
  checkpoint/              after each epoch: epoch-NNNN.weights.h5 (weights and optimizer state,
                           EMA and step counter included; written to a temp name, then renamed),
                           then checkpoint.json (the epoch, the file, the history) written atomically
  tb/                      TensorBoard logs (per-epoch loss, accuracy, validation)
  model.keras              the trained model (EMA weights), written at the end
  metrics.json             test_accuracy, val_accuracy, epochs, train_seconds, params, flops, ...;
                           for a run stopped by a non-finite loss: status "failed", error (naming
                           the step), failed_step, failed_epoch, checkpoint_epoch, history

Re-running on the same directory continues after the last finished epoch, with the optimizer's
state and step counter (so the learning rate) where they were. A finished directory is not
retrained. A failed run (a NaN or Inf loss) keeps its last good checkpoint; running again
restarts from it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Sequence

import numpy as np
from absl import logging

import search_space
from mnas_search.data import datasets
from mnas_search.runs.rundir import RunDir
from mnas_search.training import evaluation, recipe
from mnas_search.training.proxy import ProxyTask
from mnas_search.training.strategy import resolve_strategy
from mnas_search.util import faults, fileio
from nas_common import FieldError
from search_space import Architecture

AUGMENTATIONS = ("crop", "flip")
# Datasets whose classes survive a horizontal mirror; synthetic templates do not.
EMA_MAX_DECAY = 0.9999
CHECKPOINT_DIR = "checkpoint"


def default_augment(dataset: str) -> tuple[str, ...]:
  """crop, plus flip where a mirrored image keeps its class."""
  flip = datasets.parse_dataset(dataset).mirror_keeps_class
  return ("crop", "flip") if flip else ("crop",)


def auto_ema_decay(total_steps: int) -> float:
  """1 − 10/total_steps, within [0, 0.9999]: the average spans about the last 10% of the steps."""
  return round(min(EMA_MAX_DECAY, max(0.0, 1.0 - 10.0 / max(1, total_steps))), 6)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train: the recipe as a ProxyTask, plus EMA and augmentation.

  Attributes:
    task: dataset, resolution, width multiplier (`proxy_width`), epochs, batch size, optimizer,
      learning rate, warmup, weight decay, label smoothing, BN momentum, validation split and
      seed. `train_images=None` trains on every training image but the validation split;
      `timeout_s` must be None.
    ema_decay: decay of the EMA of the weights; 0 disables it; None picks
      `auto_ema_decay(total_steps)`.
    augment: any of "crop" and "flip"; None picks `default_augment(task.dataset)`.
  """

  task: ProxyTask
  ema_decay: float | None = None
  augment: tuple[str, ...] | None = None

  def __post_init__(self):
    if not isinstance(self.task, ProxyTask):
      raise FieldError("task", self.task, "a ProxyTask")
    if self.task.timeout_s is not None or self.task.steps is not None:
      raise ValueError("full training runs whole epochs; allowed: task.timeout_s=None and "
                       "task.steps=None")
    d = self.ema_decay
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or
                          not 0 <= d < 1):
      raise FieldError("ema_decay", d, "a number in [0, 1) (0 disables the EMA) or None (auto)")
    if self.augment is not None:
      bad = [a for a in self.augment if a not in AUGMENTATIONS]
      if isinstance(self.augment, str) or bad:
        shown = self.augment if isinstance(self.augment, str) else ",".join(map(str, self.augment))
        allowed = f"any of {', '.join(AUGMENTATIONS)} (or none)"
        raise FieldError("augment", shown, allowed,
                         message=f"augment={shown} is invalid; allowed: {allowed}")

  def resolved_augment(self) -> tuple[str, ...]:
    return default_augment(self.task.dataset) if self.augment is None else tuple(self.augment)

  def resolved_ema_decay(self, total_steps: int) -> float:
    return auto_ema_decay(total_steps) if self.ema_decay is None else float(self.ema_decay)

  def to_params(self, arch: Architecture) -> dict[str, Any]:
    return {"arch": arch.to_dict(), "task": self.task.to_dict(), "ema_decay": self.ema_decay,
            "augment": None if self.augment is None else list(self.augment)}


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What `train` reports.

  Attributes:
    finished: all epochs ran and metrics.json was written (False when training was stopped early
      or failed; a re-run continues it).
    epochs_done: epochs finished (checkpointed) so far.
    metrics: the content of metrics.json, or None when stopped early.
    out_dir: the output directory.
    resumed_from: the epoch this run started after (0 for a fresh start).
    status: "ok" (finished), "stopped" (a callback stopped it; a re-run continues) or "failed"
      (a non-finite loss; the CLI exits with 1).
    error: why it failed (names the step), else None.
  """

  finished: bool
  epochs_done: int
  metrics: dict[str, Any] | None
  out_dir: str
  resumed_from: int
  status: str = "ok"
  error: str | None = None


# ----------------------------------------------------------------------------- augmentation
def augment_batch(images: Any, kinds: Sequence[str], resolution: int) -> Any:
  """Random crop (reflect-pad by resolution//8 on each side, crop back) and horizontal flip.

  Works on a whole batch at once (NHWC float), each image with its own offset and flip.
  """
  import tensorflow as tf
  x = images
  n = tf.shape(x)[0]
  pad = resolution // 8
  if "crop" in kinds and pad > 0:
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    size = float(resolution + 2 * pad - 1)
    offsets = tf.cast(tf.random.uniform((n, 2), 0, 2 * pad + 1, dtype=tf.int32), tf.float32)
    # Boxes on whole pixels: nearest sampling copies the pixels exactly.
    boxes = tf.concat([offsets / size, (offsets + resolution - 1) / size], axis=1)
    x = tf.image.crop_and_resize(x, boxes, tf.range(n), (resolution, resolution),
                                 method="nearest")
  if "flip" in kinds:
    flip = tf.random.uniform((n, 1, 1, 1)) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
  return x


def training_dataset(task: ProxyTask, splits: datasets.Splits, augment: Sequence[str],
                     seed: int) -> Any:
  """The trainer's training pipeline with the augmentation applied to each batch."""
  import tensorflow as tf
  train, _ = evaluation.proxy_datasets(task, splits, seed)
  if not augment:
    return train
  return train.map(lambda x, y: (augment_batch(x, augment, task.resolution), y),
                   num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- checkpoints
def read_checkpoint(out_dir: str) -> dict[str, Any] | None:
  """checkpoint/checkpoint.json, or None before the first epoch finished."""
  path = os.path.join(out_dir, CHECKPOINT_DIR, "checkpoint.json")
  return fileio.read_json(path) if os.path.isfile(path) else None


def _nan_guard() -> Any:
  """A Keras callback that stops training at the first non-finite loss, naming the step.

  `failure` is then {"step", "epoch", "error"}; the checkpoint callback reads it and keeps the last
  good epoch's file. The loss Keras logs is the epoch's running mean, so it turns non-finite at the
  very step that did. The fault point "train_step" poisons the weights before a step (for the test).
  """
  import keras

  class _NanGuard(keras.callbacks.Callback):
    """See `_nan_guard`."""

    def __init__(self):
      super().__init__()
      self.failure: dict[str, Any] | None = None
      self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
      self._epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
      if faults.poisoned("train_step", int(self.model.optimizer.iterations) + 1):
        for v in self.model.trainable_variables:
          v.assign(np.full(v.shape, np.nan, dtype=v.dtype))

    def on_train_batch_end(self, batch, logs=None):
      loss = (logs or {}).get("loss")
      if loss is not None and not math.isfinite(float(loss)):
        self.fail(f"non-finite loss {float(loss)} at step {int(self.model.optimizer.iterations)} "
                  f"(epoch {self._epoch}, batch {batch + 1})")

    def fail(self, error: str) -> None:
      if self.failure is None:
        self.failure = {"step": int(self.model.optimizer.iterations), "epoch": self._epoch,
                        "error": error}
      self.model.stop_training = True

  return _NanGuard()


def _finite_weights(model: Any) -> bool:
  """Whether every weight of `model` (the EMA swapped in or not) is finite."""
  return all(np.isfinite(np.asarray(v)).all() for v in model.weights)


def _epoch_checkpoint(out_dir: str, state: dict[str, Any], session: int, guard: Any) -> Any:
  """A Keras callback that checkpoints after every good epoch (see the module docstring).

  An epoch whose loss or weights went non-finite is not saved: `guard` records the failure and the
  previous epoch's file stays the checkpoint.
  """
  import keras
  folder = os.path.join(out_dir, CHECKPOINT_DIR)

  class _Checkpoint(keras.callbacks.Callback):
    """See `_epoch_checkpoint`."""

    def on_epoch_begin(self, epoch, logs=None):
      self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
      if guard.failure is None and not _finite_weights(self.model):
        guard.fail(f"non-finite weights after step {int(self.model.optimizer.iterations)} "
                   f"(epoch {epoch + 1})")
      if guard.failure is not None:
        return
      seconds = time.monotonic() - self._t0
      name = f"epoch-{epoch + 1:04d}.weights.h5"
      tmp = os.path.join(folder, f".tmp-{name}")
      os.makedirs(folder, exist_ok=True)
      self.model.save_weights(tmp)
      os.replace(tmp, os.path.join(folder, name))  # a crash leaves the old epoch's file whole
      entry = {"epoch": epoch + 1, "session": session, "seconds": round(seconds, 3),
               "learning_rate": float(self.model.optimizer.learning_rate)}
      entry.update({k: float(v) for k, v in (logs or {}).items()
                    if isinstance(v, (int, float)) or hasattr(v, "__float__")})
      state["history"].append(entry)
      state.update(epoch=epoch + 1, weights=name, steps=int(self.model.optimizer.iterations),
                   train_seconds=round(state["train_seconds"] + seconds, 3))
      fileio.atomic_write_json(os.path.join(folder, "checkpoint.json"), state)
      for old in os.listdir(folder):  # only after checkpoint.json points at the new file
        if old.startswith("epoch-") and old != name:
          os.remove(os.path.join(folder, old))
      faults.kill_point("train_epoch_done", at=epoch + 1)

  return _Checkpoint()


# ----------------------------------------------------------------------------- training
@dataclasses.dataclass
class _Run:
  """One training session: the settings, the data and the resumed state."""

  arch: Architecture
  config: TrainConfig
  store: RunDir
  splits: datasets.Splits
  child: Architecture
  channels: int
  total_steps: int
  ema_decay: float
  state: dict[str, Any]
  start_epoch: int
  session: int

  @property
  def task(self) -> ProxyTask:
    return self.config.task


def _compile(model: Any, task: ProxyTask, num_classes: int, total_steps: int,
             ema_decay: float) -> None:
  """Recompiles the trainer's child with an EMA of the weights in its optimizer."""
  import keras
  optimizer = recipe.make_optimizer(task, total_steps)
  optimizer = type(optimizer).from_config(dict(optimizer.get_config(), use_ema=True,
                                               ema_momentum=ema_decay))
  model.compile(optimizer=optimizer, loss=recipe.make_loss(task, num_classes),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=False)


def _prepare(arch: Architecture, out_dir: str, config: TrainConfig) -> _Run | TrainResult:
  """Checks the arguments, loads the data, writes or checks params.json and reads the checkpoint.

  Returns the stored TrainResult when out_dir already holds the finished run.
  """
  if not isinstance(arch, Architecture):
    raise FieldError("arch", arch, "a search_space.Architecture")
  if not out_dir:
    raise FieldError("out", out_dir, "a folder (created if missing; an unfinished training there "
                     "is continued)", message="out is required; allowed: a folder (created if "
                     "missing; an unfinished training there is continued)")
  task = config.task
  # The data first: a dataset without a test split leaves no half-made directory behind.
  splits = evaluation.load_proxy_splits(task)
  if not len(splits.test[1]):
    raise FieldError("dataset", task.dataset, "a dataset with one (dir:PATH needs PATH/test)",
                     reason="has no test split")
  store = RunDir(out_dir, "train")
  store.acquire()  # one process per directory; held while train() runs
  try:
    run = _read_state(store, arch, config, task, splits)
  except BaseException:
    store.release()
    raise
  if isinstance(run, TrainResult):
    store.release()
  return run


def _read_state(store: RunDir, arch: Architecture, config: TrainConfig, task: ProxyTask,
                splits) -> _Run | TrainResult:
  out_dir = store.directory
  store.write_or_check_params(config.to_params(arch), may_change=())
  metrics_path = store.path("metrics.json")
  old = fileio.read_json(metrics_path) if os.path.isfile(metrics_path) else None
  state = read_checkpoint(out_dir)
  if state and state["epoch"] >= task.epochs and old and old.get("status") != "failed":
    logging.info("%s: already trained for %d epochs", out_dir, task.epochs)
    return TrainResult(True, state["epoch"], old, out_dir, state["epoch"])
  if old and old.get("status") == "failed":
    # The failed run's record goes; training restarts from its last good checkpoint.
    logging.info("%s: the last run failed (%s); restarting after epoch %d", out_dir, old["error"],
                 state["epoch"] if state else 0)
    os.remove(metrics_path)
  session = 1 + max((h["session"] for h in state["history"]), default=-1) if state else 0
  state = state or {"epoch": 0, "weights": None, "steps": 0, "train_seconds": 0.0, "history": []}
  total_steps = task.epochs * (len(splits.train[1]) // task.batch_size)
  return _Run(arch=arch, config=config, store=store, splits=splits,
              child=evaluation.proxy_child(arch, task), channels=evaluation.proxy_channels(task, splits),
              total_steps=total_steps, ema_decay=config.resolved_ema_decay(total_steps),
              state=state, start_epoch=state["epoch"], session=session)


def _build_model(run: _Run, strategy: Any) -> Any:
  """The child, compiled with the recipe, with the checkpoint's weights and optimizer state loaded."""
  task, state = run.task, run.state
  with strategy.scope():
    model = evaluation.build_child(run.child, task, run.splits, run.total_steps)
    if run.ema_decay > 0:
      _compile(model, task, run.splits.num_classes, run.total_steps, run.ema_decay)
    if run.start_epoch:
      model.optimizer.build(model.trainable_variables)  # so that its state can be loaded
      model.load_weights(os.path.join(run.store.directory, CHECKPOINT_DIR, state["weights"]))
      if int(model.optimizer.iterations) != state["steps"]:
        raise ValueError(f"{run.store.directory}/{CHECKPOINT_DIR}: {state['weights']} holds step "
                         f"{int(model.optimizer.iterations)}, checkpoint.json says {state['steps']}")
      logging.info("%s: continuing after epoch %d of %d (step %d)", run.store.directory,
                   run.start_epoch, task.epochs, state["steps"])
  return model


def _val_dataset(run: _Run, split: tuple[Any, Any]) -> Any:
  return datasets.make_dataset(*split, datasets.Pipeline(run.task.resolution, run.task.batch_size,
                                                         channels=run.channels))


def _fit(run: _Run, model: Any, verbose: int, callbacks: Sequence[Any]) -> dict[str, Any] | None:
  """Trains the remaining epochs, checkpointing each good one; returns the failure, if any."""
  import keras
  task = run.task
  if run.start_epoch >= task.epochs:  # killed between the last checkpoint and metrics.json
    model.optimizer.finalize_variable_values(model.trainable_variables)
    return None
  train_ds = training_dataset(task, run.splits, run.config.resolved_augment(),
                              task.seed + run.start_epoch)
  guard = _nan_guard()
  cbs = [guard, _epoch_checkpoint(run.store.directory, run.state, run.session, guard),
         keras.callbacks.TensorBoard(run.store.path("tb"), write_graph=False)]
  if run.ema_decay > 0:
    cbs.insert(1, keras.callbacks.SwapEMAWeights())  # validate the averaged weights
  model.fit(train_ds, epochs=task.epochs, initial_epoch=run.start_epoch,
            validation_data=_val_dataset(run, run.splits.val), callbacks=cbs + list(callbacks),
            verbose=verbose, shuffle=False)
  return guard.failure


def _failed(run: _Run, failure: dict[str, Any]) -> TrainResult:
  """Writes metrics.json for a run stopped by a non-finite loss; the checkpoint stays the last good one."""
  state = run.state
  metrics = {
      "name": run.arch.name, "dataset": run.task.dataset, "status": "failed",
      "error": failure["error"], "failed_step": failure["step"], "failed_epoch": failure["epoch"],
      "epochs": run.task.epochs, "checkpoint_epoch": state["epoch"],
      "checkpoint_weights": state["weights"], "steps": state["steps"],
      "train_seconds": state["train_seconds"], "history": state["history"],
      "arch": run.arch.to_dict()}
  fileio.atomic_write_json(run.store.path("metrics.json"), metrics)
  logging.error("%s: training failed: %s; the checkpoint stays at epoch %d (run again to restart "
                "from it)", run.store.directory, failure["error"], state["epoch"])
  return TrainResult(False, state["epoch"], metrics, run.store.directory, run.start_epoch,
                     status="failed", error=failure["error"])


def _metrics(run: _Run, val: dict[str, float], test: dict[str, float]) -> dict[str, Any]:
  """The content of metrics.json for a finished run."""
  task, splits, state, child, channels = run.task, run.splits, run.state, run.child, run.channels
  return {
      "name": run.arch.name, "dataset": task.dataset,
      "test_accuracy": float(test["accuracy"]), "test_loss": float(test["loss"]),
      "val_accuracy": float(val["accuracy"]), "val_loss": float(val["loss"]),
      "epochs": task.epochs, "steps": state["steps"], "train_seconds": state["train_seconds"],
      "resolution": task.resolution, "width": task.proxy_width,
      "params": search_space.count_params(child, splits.num_classes, channels),
      "flops": evaluation.proxy_child_flops(child, task, splits),
      "num_classes": splits.num_classes, "channels": channels,
      "train_images": len(splits.train[1]), "val_images": len(splits.val[1]),
      "test_images": len(splits.test[1]),
      "val_split": (f"{len(splits.val[1])} images held out from the training set (seed "
                    f"{task.seed}), monitored each epoch and never trained on"),
      "augment": list(run.config.resolved_augment()), "label_smoothing": task.label_smoothing,
      "ema_decay": run.ema_decay, "optimizer": task.optimizer, "learning_rate": task.learning_rate,
      "batch_size": task.batch_size, "sessions": 1 + max(h["session"] for h in state["history"]),
      "history": state["history"], "arch": run.arch.to_dict(), "trained_arch": child.to_dict(),
      "flops_note": "multiply-adds per image of the trained model at its resolution, channels "
                    "and classes"}


def _finish(run: _Run, model: Any) -> TrainResult:
  """Scores the trained model (EMA weights, which fit() has put in) and saves it and metrics.json."""
  val = model.evaluate(_val_dataset(run, run.splits.val), verbose=0, return_dict=True)
  test = model.evaluate(_val_dataset(run, run.splits.test), verbose=0, return_dict=True)
  tmp = run.store.path(".tmp-model.keras")
  model.save(tmp)
  os.replace(tmp, run.store.path("model.keras"))
  metrics = _metrics(run, val, test)
  fileio.atomic_write_json(run.store.path("metrics.json"), metrics)
  logging.info("%s: test accuracy %.4f after %d epochs", run.store.directory,
               metrics["test_accuracy"], run.task.epochs)
  return TrainResult(True, run.state["epoch"], metrics, run.store.directory, run.start_epoch)


def train(arch: Architecture, out_dir: str, config: TrainConfig, strategy: Any = None,
          verbose: int = 2, callbacks: Sequence[Any] = ()) -> TrainResult:
  """Trains `arch` fully (or continues an interrupted run) and scores it on the test split.

  A non-finite loss (or non-finite weights at an epoch's end) stops training: that epoch is not
  checkpointed, metrics.json says status "failed" with the step, and the result's status is
  "failed". Running again restarts from the last good checkpoint.

  Args:
    arch: the architecture (the task's width multiplier and resolution are applied to it).
    out_dir: the output directory (created if missing; an unfinished run there is continued).
    config: the recipe.
    strategy: None, a strategy name (see `strategy.make_strategy`) or a tf.distribute.Strategy.
    verbose: Keras's progress output: 0 silent, 1 a progress bar, 2 one line per epoch.
    callbacks: extra Keras callbacks (after the checkpoint one).

  Returns:
    The TrainResult.

  Raises:
    ValueError, FileNotFoundError: bad arguments, a dataset without a test split, or out_dir
      holding a run with other settings.
  """
  run = _prepare(arch, out_dir, config)
  if isinstance(run, TrainResult):
    return run
  try:
    return _train(run, strategy, verbose, callbacks)
  finally:
    run.store.release()  # the directory's lock, taken by _prepare


def _train(run: _Run, strategy: Any, verbose: int, callbacks: Sequence[Any]) -> TrainResult:
  out_dir = run.store.directory
  import keras
  # A new seed per session: a resumed run does not replay the first epochs' shuffles.
  keras.utils.set_random_seed(run.task.seed + run.start_epoch)
  model = _build_model(run, resolve_strategy(strategy))
  failure = _fit(run, model, verbose, callbacks)
  if failure is not None:
    return _failed(run, failure)
  if run.state["epoch"] < run.task.epochs:
    logging.info("%s: stopped after epoch %d of %d; run again to continue", out_dir,
                 run.state["epoch"], run.task.epochs)
    return TrainResult(False, run.state["epoch"], None, out_dir, run.start_epoch, status="stopped")
  return _finish(run, model)
