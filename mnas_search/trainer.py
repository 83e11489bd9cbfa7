"""The child trainer: builds one architecture, trains it on the proxy task and scores it.

`evaluate` never raises for a bad child: an exception, a NaN/Inf loss or an out-of-memory error
gives status "failed" (accuracy 0), and the per-child wall-clock limit gives status "timeout".
Bad INPUT (an unknown dataset, a missing folder, too few images) still raises ValueError or
FileNotFoundError, because no child could do better.

It is a plain module-level function of frozen dataclasses, so worker processes and Ray tasks can
call it; TF and Keras are imported on first use, so importing this module (e.g. for TrialResult)
stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

from absl import logging

import search_space
from mnas_search import datasets
from mnas_search.proxy import ProxyTask
from mnas_search.strategy import resolve_strategy
from search_space import Architecture

STATUSES = ("ok", "failed", "timeout")
MAX_ERROR_CHARS = 2000
# RMSProp as in the MnasNet/EfficientNet reference (decay 0.9, epsilon 1e-3).
RMSPROP_RHO = 0.9
RMSPROP_EPSILON = 1e-3


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

  def __post_init__(self):
    if self.status not in STATUSES:
      raise ValueError(f"status={self.status!r} is invalid; allowed: {', '.join(STATUSES)}")

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


def load_proxy_splits(task: ProxyTask) -> datasets.Splits:
  """The task's train/validation split (fixed by task.seed), checked against its batch size."""
  splits = datasets.load_splits(task.dataset, task.val_images, task.train_images, task.seed,
                                task.data_dir, image_size=task.resolution)
  n_train = len(splits.train[1])
  if task.batch_size > n_train:
    raise ValueError(f"batch_size={task.batch_size} is invalid for {n_train} training images; "
                     f"allowed: an integer in [1, {n_train}]")
  return splits


def proxy_channels(task: ProxyTask, splits: datasets.Splits) -> int:
  """Input channels of the child: 3 for grayscale data when task.grayscale_to_rgb."""
  return 3 if task.grayscale_to_rgb else splits.channels


def proxy_datasets(task: ProxyTask, splits: datasets.Splits, seed: int) -> tuple[Any, Any]:
  """The training pipeline (shuffled with `seed`, whole batches only) and the validation one."""
  channels = proxy_channels(task, splits)
  train = datasets.make_dataset(*splits.train, resolution=task.resolution, batch_size=task.batch_size,
                                shuffle=True, seed=seed, channels=channels, drop_remainder=True,
                                repeat=task.steps is not None)
  val = datasets.make_dataset(*splits.val, resolution=task.resolution, batch_size=task.batch_size,
                              channels=channels)
  return train, val


def build_child(child: Architecture, task: ProxyTask, splits: datasets.Splits,
                total_steps: int) -> Any:
  """The compiled Keras model of a proxy child (call it under the strategy's scope)."""
  import keras
  model = search_space.build_model(
      child, (task.resolution, task.resolution, proxy_channels(task, splits)), splits.num_classes)
  set_bn_momentum(model, task.bn_momentum)
  model.compile(optimizer=make_optimizer(task, total_steps), loss=make_loss(task, splits.num_classes),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=False)  # XLA made MBConv children ~6x slower on CPU
  return model


def evaluate(arch: Architecture, task: ProxyTask | None = None, strategy: Any = None,
             seed: int | None = None, deterministic: bool = False) -> TrialResult:
  """Trains `arch` briefly on the proxy task and returns its validation accuracy.

  Args:
    arch: the architecture (the task's proxy width and resolution are applied to it).
    task: the proxy task; `ProxyTask()` when None.
    strategy: None (the current default strategy), a name for `strategy.make_strategy`
      ("auto", "cpu", "mirrored", "tpu") or a `tf.distribute.Strategy`.
    seed: the init and shuffle seed; `task.seed` when None. The train/validation split stays
      fixed by `task.seed`. It seeds Python, numpy and Keras globally (`seed_child`).
    deterministic: also enable TF op determinism (for the rest of the process), so that two
      runs with the same seed give bit-identical results.

  Returns:
    The TrialResult.

  Raises:
    ValueError, FileNotFoundError: bad arguments or dataset (not a bad child).
  """
  if not isinstance(arch, Architecture):
    raise ValueError(f"arch={arch!r} is invalid; allowed: a search_space.Architecture")
  task = ProxyTask() if task is None else task
  if not isinstance(task, ProxyTask):
    raise ValueError(f"task={task!r} is invalid; allowed: a ProxyTask")
  run_seed = task.seed if seed is None else seed
  if isinstance(run_seed, bool) or not isinstance(run_seed, int) or run_seed < 0:
    raise ValueError(f"seed={seed!r} is invalid; allowed: None or an integer >= 0")
  started = time.monotonic()
  deadline = None if task.timeout_s is None else started + task.timeout_s
  splits = load_proxy_splits(task)
  channels = proxy_channels(task, splits)
  child = proxy_child(arch, task)
  proxy_flops = search_space.count_flops(child, task.resolution, splits.num_classes, channels)
  proxy_params = search_space.count_params(child, splits.num_classes, channels)
  steps_per_epoch = len(splits.train[1]) // task.batch_size
  total_steps = task.steps or task.epochs * steps_per_epoch

  import keras
  import tensorflow as tf
  strategy = resolve_strategy(strategy)
  seed_child(run_seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  train_ds, val_ds = proxy_datasets(task, splits, run_seed)
  guard = training_guard(deadline, task.batch_size)
  status, error, accuracy, train_seconds = "ok", None, 0.0, 0.0
  model, fit_started = None, None
  gradients_before = registered_gradients()
  try:
    with strategy.scope():
      model = build_child(child, task, splits, total_steps)
    fit_started = time.monotonic()
    # With `steps`, one long "epoch" over the repeating pipeline.
    model.fit(train_ds, epochs=1 if task.steps else task.epochs, steps_per_epoch=task.steps,
              verbose=0, callbacks=[guard], shuffle=False)
    train_seconds = time.monotonic() - fit_started
    if guard.bad_loss is not None:
      status, error = "failed", (f"training loss became {guard.bad_loss} at step {guard.steps}; "
                                 "training stopped")
    else:
      if guard.timed_out:
        status, error = "timeout", (f"timeout_s={task.timeout_s} reached after {guard.steps} of "
                                    f"{total_steps} steps; accuracy measured on validation anyway")
      accuracy = float(model.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])
  except tf.errors.ResourceExhaustedError as e:
    status, error = "failed", _error_text("out of memory", e)
  except Exception as e:  # a bad child must not end the search; its error is recorded instead
    logging.debug("child %s failed", arch.name, exc_info=True)
    status, error = "failed", _error_text(type(e).__name__, e)
  finally:
    # Free the graph, the optimizer slots and the pipelines: a worker trains thousands of children.
    forget_custom_gradients(gradients_before)
    guard.set_model(None)
    del model, train_ds, val_ds
    release_keras_state()
  if status == "failed":
    accuracy = 0.0
    train_seconds = train_seconds or time.monotonic() - (fit_started or started)
  result = TrialResult(
      status=status, accuracy=accuracy, train_seconds=round(train_seconds, 3),
      images_per_sec=round(guard.images_per_sec(), 1), proxy_flops=proxy_flops,
      proxy_params=proxy_params, error=error, epochs_completed=guard.steps // steps_per_epoch,
      steps=guard.steps, loss=guard.last_loss, seed=run_seed)
  logging.info("child %s: %s accuracy %.4f in %.1fs (%.0f img/s)%s", arch.name, status, accuracy,
               result.train_seconds, result.images_per_sec, f": {error}" if error else "")
  return result


def set_bn_momentum(model: Any, momentum: float | None) -> None:
  """Sets the moving-average momentum of every BatchNormalization layer (None keeps it)."""
  if momentum is None:
    return
  import keras
  for layer in model.layers:  # a functional model: every layer is at the top level
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = momentum


def _gradient_registry() -> dict | None:
  try:
    from tensorflow.python.framework import ops
    return ops._gradient_registry._registry
  except (ImportError, AttributeError):  # another TF layout: nothing to clean
    return None


def registered_gradients() -> frozenset:
  """The names in TF's global gradient registry now (see `forget_custom_gradients`)."""
  registry = _gradient_registry()
  return frozenset(registry) if registry is not None else frozenset()


def seed_child(seed: int) -> None:
  """`keras.utils.set_random_seed(seed)` minus `tf.random.set_seed`.

  Keras seeds its initializers and dropout from its own global seed and Python's `random`, and
  the input pipeline passes explicit op seeds, so a child is reproducible without TF's global
  seed. Changing that seed makes every tf.function in the process retrace on its next call: the
  PPO controller's update, which shares the process with inline children, went from 0.16 s to 6 s.
  """
  import random
  import numpy as np
  from keras.src.backend.common import global_state
  from keras.src.random import seed_generator
  from keras.src.utils import rng_utils
  global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
  global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
  random.seed(seed)
  np.random.seed(seed)


def release_keras_state() -> None:
  """What `keras.backend.clear_session()` does, minus clearing TF's eager kernel cache.

  Resets Keras's global state (layer-name counters, the functional-API bookkeeping) and the TF
  default graph, then collects garbage, so that memory stays flat over many children. The kernel
  cache is kept: clearing it throws away the instantiated kernels of every tf.function in the
  process, which made the PPO controller's update in the same process 40x slower (0.16 s -> 6 s).
  """
  import gc
  import tensorflow as tf
  from keras.src.backend.common import global_state
  global_state.GLOBAL_STATE_TRACKER = threading.local()
  global_state.GLOBAL_SETTINGS_TRACKER = threading.local()
  tf.compat.v1.reset_default_graph()
  gc.collect()


def forget_custom_gradients(before: frozenset) -> None:
  """Unregisters the custom gradients that TF registered since `registered_gradients()` gave `before`.

  In graph mode, every traced `tf.custom_gradient` call registers a new gradient function in TF's
  global registry and never removes it; the function holds its graph. `tf.nn.silu` (swish, the
  EfficientNet activation) is such a call, so without this every child would keep its whole
  training graph alive (measured: ~17 MB and ~27,000 Python objects per tiny child). Children run
  one at a time per process, so what a child registered is dead once it is done.
  """
  registry = _gradient_registry()
  if registry is None:
    return
  for name in set(registry) - before:
    if name.startswith("CustomGradient-"):
      del registry[name]


def _error_text(kind: str, e: BaseException) -> str:
  text = f"{kind}: {str(e).strip() or repr(e)}"
  return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def make_lr_schedule(task: ProxyTask, total_steps: int) -> Any:
  """Linear warmup from 0 over task.warmup_fraction of the steps, then cosine decay to 0 or constant."""
  import keras
  warmup = int(task.warmup_fraction * total_steps)
  # alpha=1 keeps the rate at its peak after warmup: a constant schedule.
  alpha = 0.0 if task.lr_schedule == "cosine" else 1.0
  if warmup:
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, total_steps - warmup), alpha=alpha,
                                                  warmup_target=task.learning_rate,
                                                  warmup_steps=warmup)
  return keras.optimizers.schedules.CosineDecay(task.learning_rate, max(1, total_steps), alpha=alpha)


def make_optimizer(task: ProxyTask, total_steps: int) -> Any:
  """The task's optimizer (SGD with momentum, or RMSProp as in MnasNet) on its schedule."""
  import keras
  lr = make_lr_schedule(task, total_steps)
  weight_decay = task.weight_decay or None
  if task.optimizer == "sgd":
    return keras.optimizers.SGD(lr, momentum=task.momentum, weight_decay=weight_decay)
  return keras.optimizers.RMSprop(lr, rho=RMSPROP_RHO, momentum=task.momentum,
                                  epsilon=RMSPROP_EPSILON, weight_decay=weight_decay)


def make_loss(task: ProxyTask, num_classes: int) -> Any:
  """Cross-entropy on logits and integer labels, with the task's label smoothing."""
  import keras
  if not task.label_smoothing:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  smoothed = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                  label_smoothing=task.label_smoothing)

  def loss(y_true, logits):  # sparse labels -> one-hot, as the sparse loss has no smoothing
    y = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), num_classes)
    return smoothed(y, logits)
  return loss


def training_guard(deadline: float | None, batch_size: int) -> Any:
  """A Keras callback that stops training at once on a NaN/Inf loss or past `deadline`.

  It also counts steps and times them, for the throughput after the first (tracing) step.
  """
  import keras

  class _Guard(keras.callbacks.Callback):
    """See `training_guard`."""

    def __init__(self):
      super().__init__()
      self.steps = 0
      self.bad_loss = None
      self.timed_out = False
      self.last_loss = None
      self._first_end = None
      self._last_end = None

    def on_train_batch_end(self, batch, logs=None):
      now = time.monotonic()
      self.steps += 1
      if self._first_end is None:
        self._first_end = now
      self._last_end = now
      loss = float((logs or {}).get("loss", 0.0))
      if not math.isfinite(loss):
        self.bad_loss = loss
        self.model.stop_training = True
        return
      self.last_loss = loss
      if deadline is not None and now >= deadline:
        self.timed_out = True
        self.model.stop_training = True

    def images_per_sec(self) -> float:
      if self.steps < 2 or self._last_end <= self._first_end:
        return 0.0
      return (self.steps - 1) * batch_size / (self._last_end - self._first_end)

  return _Guard()
