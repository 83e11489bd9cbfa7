"""Evaluating one child: build an architecture, train it on the proxy task and score it.

`evaluate` never raises for a bad child: an exception, a NaN/Inf loss or an out-of-memory error
gives status "failed" (accuracy 0), and the per-child wall-clock limit gives status "timeout".
Bad INPUT (an unknown dataset, a missing folder, too few images) still raises ValueError or
FileNotFoundError, because no child could do better.

On one replica (the CPU, one GPU) a child trains with `lean_step.lean_train_step`, whose graph
traces in a fraction of model.fit's time; several replicas or a TPU train with model.fit.

`evaluate` is a plain module-level function of frozen dataclasses, so worker processes and Ray
tasks can call it; TF and Keras are imported on first use, so importing this module (e.g. for
TrialResult) stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from absl import logging

import search_space
from mnas_search.data import datasets
from mnas_search.runs.records import RESULT_STATUSES
from mnas_search.training import lean_step, recipe, tf_state
from mnas_search.training.continuation import Span, Stretch, load_state, save_state, stretch_of
from mnas_search.training.proxy import ProxyTask
from mnas_search.training.strategy import resolve_strategy
from nas_common import FieldError
from search_space import Architecture

MAX_ERROR_CHARS = 2000


@dataclasses.dataclass(frozen=True)
class TrialResult:
  """What training one child on the proxy task gave.

  Attributes:
    status: "ok", "failed" (an exception, a NaN/Inf loss or out of memory) or "timeout" (the
      wall-clock limit stopped training early; the accuracy is still measured on validation).
    accuracy: validation accuracy in [0, 1]; 0.0 when failed.
    train_seconds: wall time of the training loop (the first step's graph tracing included).
    images_per_sec: training throughput after the first step (which traces the graph).
    proxy_flops: multiply-adds per image of the child actually trained (proxy width,
      resolution, channels and classes).
    proxy_params: parameters of that child.
    error: what went wrong, or None.
    epochs_completed: whole passes over the training images finished.
    steps: optimizer steps run.
    loss: the training loss over the last epoch (running mean); None when there was none or it
      was not finite.
    seed: the init and shuffle seed used.
    fixed_seconds: the child's wall time (from `evaluate`'s entry to its return) minus
      `steady_seconds`: data, build, tracing, evaluation and clean-up. 0 in records older than it.
    steady_seconds: the optimizer steps run times the steady per-step time (that of the steps
      after the first); 0 with fewer than 2 steps.
  """

  status: str
  accuracy: float
  train_seconds: float
  images_per_sec: float
  proxy_flops: int
  proxy_params: int
  error: str | None = None
  epochs_completed: int = 0
  steps: int = 0
  loss: float | None = None
  seed: int = 0
  fixed_seconds: float = 0.0
  steady_seconds: float = 0.0

  def __post_init__(self):
    if self.status not in RESULT_STATUSES:
      raise ValueError(f"status={self.status!r} is invalid; allowed: {', '.join(RESULT_STATUSES)}")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TrialResult":
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
      raise ValueError(f"TrialResult dict has unknown key(s) {unknown}; allowed: {names}")
    return cls(**d)


def proxy_child(arch: Architecture, task: ProxyTask) -> Architecture:
  """The child as trained on the proxy: the proxy width and resolution applied."""
  return search_space.scale(arch, width=task.proxy_width, resolution=task.resolution)


def proxy_child_flops(child: Architecture, task: ProxyTask, splits: datasets.Splits) -> int:
  """Multiply-adds per image of the child as the proxy trains it (resolution, stem, classes)."""
  return search_space.count_flops(child, task.resolution, splits.num_classes,
                                  proxy_channels(task, splits), task.stem_stride)


def load_proxy_splits(task: ProxyTask) -> datasets.Splits:
  """The task's train/validation split (fixed by task.seed), checked against its batch size."""
  splits = datasets.load_splits(task.dataset, task.val_images, task.train_images, task.seed,
                                task.data_dir, image_size=task.resolution)
  n_train = len(splits.train[1])
  if task.batch_size > n_train:
    raise FieldError("batch_size", task.batch_size, f"an integer in [1, {n_train}]",
                     detail=f" for {n_train} training images")
  return splits


def proxy_channels(task: ProxyTask, splits: datasets.Splits) -> int:
  """Input channels of the child: 3 for grayscale data when task.grayscale_to_rgb."""
  return 3 if task.grayscale_to_rgb else splits.channels


def proxy_datasets(task: ProxyTask, splits: datasets.Splits, seed: int) -> tuple[Any, Any]:
  """The training pipeline (shuffled with `seed`, whole batches only) and the validation one."""
  channels = proxy_channels(task, splits)
  val_pipeline = datasets.Pipeline(task.resolution, task.batch_size, channels=channels)
  train = datasets.make_dataset(*splits.train, dataclasses.replace(
      val_pipeline, shuffle=True, seed=seed, drop_remainder=True, repeat=task.steps is not None))
  val = datasets.make_dataset(*splits.val, val_pipeline)
  return train, val


def build_proxy_model(child: Architecture, task: ProxyTask, splits: datasets.Splits) -> Any:
  """The uncompiled Keras model of a proxy child, BN momentum set (call it under the strategy's scope)."""
  model = search_space.build_model(
      child, (task.resolution, task.resolution, proxy_channels(task, splits)), splits.num_classes,
      stem_stride=task.stem_stride)
  recipe.set_bn_momentum(model, task.bn_momentum)
  return model


def build_child(child: Architecture, task: ProxyTask, splits: datasets.Splits,
                total_steps: int) -> Any:
  """The compiled Keras model of a proxy child (call it under the strategy's scope)."""
  import keras
  model = build_proxy_model(child, task, splits)
  model.compile(optimizer=recipe.make_optimizer(task, total_steps), loss=recipe.make_loss(task, splits.num_classes),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=False)  # XLA is slower for these small MBConv children on CPU
  return model


def evaluate(arch: Architecture, task: ProxyTask | None = None, strategy: Any = None,
             seed: int | None = None, deterministic: bool = False,
             span: Span | None = None) -> TrialResult:
  """Trains `arch` briefly on the proxy task and returns its validation accuracy.

  On one replica (CPU, one GPU) it trains with `lean_step.lean_train_step`, else with model.fit.

  Args:
    arch: the architecture (the task's proxy width and resolution are applied to it).
    task: the proxy task; `ProxyTask()` when None.
    strategy: None (the current default strategy), a name for `strategy.make_strategy`
      ("auto", "cpu", "mirrored", "tpu") or a `tf.distribute.Strategy`.
    seed: the init and shuffle seed; `task.seed` when None. The train/validation split stays
      fixed by `task.seed`. It seeds Python, numpy and Keras globally (`tf_state.seed_child`).
    deterministic: also enable TF op determinism (for the rest of the process), so that two
      runs with the same seed give bit-identical results.
    span: train only this stretch of the child's schedule, continuing from its checkpoint and
      saving one at its end (multi-fidelity search); None trains the whole task.

  Returns:
    The TrialResult.

  Raises:
    ValueError, FileNotFoundError: bad arguments or dataset (not a bad child).
  """
  started = time.monotonic()
  task, run_seed = _checked_arguments(arch, task, seed)
  splits = load_proxy_splits(task)
  channels = proxy_channels(task, splits)
  child = proxy_child(arch, task)
  steps_per_epoch = len(splits.train[1]) // task.batch_size
  stretch = stretch_of(span, task.steps or task.epochs * steps_per_epoch, 1 if task.steps else steps_per_epoch)

  import tensorflow as tf
  strategy = resolve_strategy(strategy)
  tf_state.seed_child(run_seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  clock = StepClock(None if task.timeout_s is None else started + task.timeout_s, task.batch_size)
  status, error, accuracy = "ok", None, 0.0
  gradients_before = tf_state.registered_gradients()
  train = _train_lean if lean_step.lean_supported(strategy) else _train_keras
  try:
    accuracy = train(child, task, splits, stretch, strategy, run_seed, clock)
    status, error = clock.verdict(task.timeout_s, stretch.stop - stretch.start)
  except tf.errors.ResourceExhaustedError as e:
    status, error = "failed", _error_text("out of memory", e)
  except Exception as e:  # a bad child must not end the search; its error is recorded instead
    logging.debug("child %s failed", arch.name, exc_info=True)
    status, error = "failed", _error_text(type(e).__name__, e)
  finally:
    # Free the graph, the optimizer slots and the pipelines: a worker trains thousands of children.
    tf_state.forget_custom_gradients(gradients_before)
    tf_state.release_keras_state()
  costs = (proxy_child_flops(child, task, splits), search_space.count_params(child, splits.num_classes, channels))
  result = clock.result(started, (status, accuracy, error), costs, (steps_per_epoch, stretch.start), run_seed)
  logging.info("child %s: %s accuracy %.4f in %.1fs (%.0f img/s, fixed %.1fs)%s", arch.name, status,
               result.accuracy, result.train_seconds, result.images_per_sec, result.fixed_seconds,
               f": {error}" if error else "")
  return result


def _checked_arguments(arch: Any, task: Any, seed: Any) -> tuple[ProxyTask, int]:
  """(task, seed) with their defaults, or ValueError for a bad argument."""
  if not isinstance(arch, Architecture):
    raise ValueError(f"arch={arch!r} is invalid; allowed: a search_space.Architecture")
  task = ProxyTask() if task is None else task
  if not isinstance(task, ProxyTask):
    raise ValueError(f"task={task!r} is invalid; allowed: a ProxyTask")
  run_seed = task.seed if seed is None else seed
  if isinstance(run_seed, bool) or not isinstance(run_seed, int) or run_seed < 0:
    raise ValueError(f"seed={seed!r} is invalid; allowed: None or an integer >= 0")
  return task, run_seed


class StepClock:
  """Counts and times the training steps of one child, and says when to stop.

  Training stops at once on a non-finite loss or past the deadline. The first step traces and
  optimizes the graph; the steps after it give the steady per-step time.
  """

  def __init__(self, deadline: float | None, batch_size: int):
    self.deadline = deadline
    self.batch_size = batch_size
    self.steps = 0
    self.bad_loss: float | None = None
    self.timed_out = False
    self.last_loss: float | None = None
    self.started: float | None = None
    self._first_end: float | None = None
    self._last_end: float | None = None

  def start(self) -> None:
    """Marks the start of the training loop (after the model is built)."""
    self.started = time.monotonic()

  def end_step(self, epoch_loss: float) -> bool:
    """Records a finished step and the epoch's running-mean loss; True when training must stop."""
    now = time.monotonic()
    self.steps += 1
    if self._first_end is None:
      self._first_end = now
    self._last_end = now
    if not math.isfinite(epoch_loss):
      self.bad_loss = epoch_loss
      return True
    self.last_loss = epoch_loss
    if self.deadline is not None and now >= self.deadline:
      self.timed_out = True
      return True
    return False

  def verdict(self, timeout_s: float | None, total_steps: int) -> tuple[str, str | None]:
    """(status, error) of a training loop that ended normally."""
    if self.bad_loss is not None:
      return "failed", (f"training loss became {self.bad_loss} at step {self.steps}; "
                        "training stopped")
    if self.timed_out:
      return "timeout", (f"timeout_s={timeout_s} reached after {self.steps} of {total_steps} "
                         "steps; accuracy measured on validation anyway")
    return "ok", None

  def train_seconds(self, started: float) -> float:
    """Wall time of the training loop (first step's tracing included); since `started` if it never ran."""
    if self.started is None:
      return time.monotonic() - started
    return (self._last_end or time.monotonic()) - self.started

  def steady_step_seconds(self) -> float:
    """Mean time of the steps after the first (0 with fewer than 2 steps)."""
    if self.steps < 2 or self._last_end <= self._first_end:
      return 0.0
    return (self._last_end - self._first_end) / (self.steps - 1)

  def steady_seconds(self) -> float:
    """The time all the steps run would have taken at the steady per-step time."""
    return self.steps * self.steady_step_seconds()

  def images_per_sec(self) -> float:
    """Training throughput after the first step."""
    per_step = self.steady_step_seconds()
    return self.batch_size / per_step if per_step else 0.0

  def result(self, started: float, outcome: tuple[str, float, str | None],
             proxy_costs: tuple[int, int], position: tuple[int, int], seed: int) -> TrialResult:
    """The child's TrialResult; its fixed seconds run from `started` to now.

    Args:
      started: `time.monotonic()` when the child began.
      outcome: (status, accuracy, error).
      proxy_costs: (FLOPs, params) of the network the proxy trained.
      position: (steps per epoch, the step this run started at), to count the epochs completed.
      seed: the child's seed.
    """
    (status, accuracy, error), (proxy_flops, proxy_params) = outcome, proxy_costs
    steps_per_epoch, first_step = position
    steady = self.steady_seconds()
    return TrialResult(
        status=status, accuracy=0.0 if status == "failed" else accuracy,
        train_seconds=round(self.train_seconds(started), 3),
        images_per_sec=round(self.images_per_sec(), 1), proxy_flops=proxy_flops,
        proxy_params=proxy_params, error=error, epochs_completed=(first_step + self.steps) // steps_per_epoch,
        steps=self.steps, loss=self.last_loss, seed=seed,
        fixed_seconds=round(time.monotonic() - started - steady, 3), steady_seconds=round(steady, 3))


def _train_keras(child: Architecture, task: ProxyTask, splits: datasets.Splits, stretch: Stretch,
                 strategy: Any, seed: int, clock: StepClock) -> float:
  """Trains with model.fit and returns the validation accuracy (0 after a non-finite loss)."""
  train_ds, val_ds = proxy_datasets(task, splits, seed)
  with strategy.scope():
    model = build_child(child, task, splits, stretch.total)
    if not stretch.whole:
      model.optimizer.build(model.trainable_variables)
  state = list(model.variables) + (list(model.optimizer.variables) if not stretch.whole else [])
  if stretch.resume_from:
    load_state(stretch.resume_from, state)
  clock.start()
  if stretch.whole:  # With `steps`, one long "epoch" over the repeating pipeline.
    model.fit(train_ds, epochs=1 if task.steps else task.epochs, steps_per_epoch=task.steps,
              verbose=0, callbacks=[_keras_guard(clock)], shuffle=False)
  else:
    model.fit(train_stream(train_ds, task, stretch.start), epochs=1,
              steps_per_epoch=stretch.stop - stretch.start, verbose=0,
              callbacks=[_keras_guard(clock)], shuffle=False)
  if clock.bad_loss is not None:
    return 0.0
  _save_if_complete(stretch, clock, state)
  return float(model.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])


def _keras_guard(clock: StepClock) -> Any:
  """A Keras callback that feeds `clock` and stops model.fit when it says so."""
  import keras

  class _Guard(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      if clock.end_step(float((logs or {}).get("loss", 0.0))):
        self.model.stop_training = True

  return _Guard()


def _train_lean(child: Architecture, task: ProxyTask, splits: datasets.Splits, stretch: Stretch,
                strategy: Any, seed: int, clock: StepClock) -> float:
  """Trains with `lean_step.lean_train_step` and returns the validation accuracy (0 after a non-finite loss)."""
  train_ds, val_ds = proxy_datasets(task, splits, seed)
  with strategy.scope():
    model = build_proxy_model(child, task, splits)
    step = lean_step.lean_train_step(model, task, splits.num_classes, stretch.total, strategy)
  state = list(model.variables) + list(step.optimizer_variables)
  if stretch.resume_from:
    load_state(stretch.resume_from, state)
  steps_per_epoch = None if task.steps else len(splits.train[1]) // task.batch_size
  clock.start()
  with tf_state.graph_optimizer_off_on_cpu():
    loss_sum, n = 0.0, 0  # the epoch's running mean, as model.fit reports it
    for i, (x, y) in enumerate(train_stream(train_ds, task, stretch.start).take(stretch.stop - stretch.start)):
      loss_sum += float(step(x, y))
      n += 1
      if clock.end_step(loss_sum / n):
        break
      if steps_per_epoch and (stretch.start + i + 1) % steps_per_epoch == 0:
        loss_sum, n = 0.0, 0
    if clock.bad_loss is not None:
      return 0.0
    _save_if_complete(stretch, clock, state)
    return lean_step.lean_accuracy(model, val_ds, strategy)


def train_stream(train_ds: Any, task: ProxyTask, start_step: int) -> Any:
  """The training batches from step `start_step` on: one repeated seeded shuffle, so that the data
  order is a function of (seed, step) and a continued child sees what an uninterrupted one would."""
  stream = train_ds if task.steps else train_ds.repeat()  # with `steps` the pipeline repeats already
  return stream.skip(start_step) if start_step else stream


def _save_if_complete(stretch: Stretch, clock: StepClock, state: list) -> None:
  """Checkpoints a stretch that ran all its steps (a stopped one cannot be continued exactly)."""
  if stretch.save_to and not clock.timed_out and clock.steps == stretch.stop - stretch.start:
    save_state(stretch.save_to, state)


def _error_text(kind: str, e: BaseException) -> str:
  text = f"{kind}: {str(e).strip() or repr(e)}"
  return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."
