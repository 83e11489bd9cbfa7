"""The child trainer: builds one architecture, trains it on the proxy task and scores it.

`evaluate` never raises for a bad child: an exception, a NaN/Inf loss or an out-of-memory error
gives status "failed" (accuracy 0), and the per-child wall-clock limit gives status "timeout".
Bad INPUT (an unknown dataset, a missing folder, too few images) still raises ValueError or
FileNotFoundError, because no child could do better.

On one replica (the CPU, one GPU) a child trains with `lean_train_step`, a hand-written step with
the Keras optimizer's semantics whose graph traces in a fraction of model.fit's time; a child's
fixed cost (build, tracing, evaluation, clean-up: `TrialResult.fixed_seconds`) fell from ~13.5 s to
~5 s for B0 at width 0.25 and 32 px on 2 cores (~3 s where the fused batch norm trains exactly).
Several replicas or a TPU train with model.fit.

It is a plain module-level function of frozen dataclasses, so worker processes and Ray tasks can
call it; TF and Keras are imported on first use, so importing this module (e.g. for TrialResult)
stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import operator
import threading
import time
from typing import Any, Callable

from absl import logging

import search_space
from mnas_search import datasets
from mnas_search.proxy import ProxyTask
from mnas_search.strategy import resolve_strategy
from nas_common import FieldError
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
  train = datasets.make_dataset(*splits.train, resolution=task.resolution, batch_size=task.batch_size,
                                shuffle=True, seed=seed, channels=channels, drop_remainder=True,
                                repeat=task.steps is not None)
  val = datasets.make_dataset(*splits.val, resolution=task.resolution, batch_size=task.batch_size,
                              channels=channels)
  return train, val


def build_proxy_model(child: Architecture, task: ProxyTask, splits: datasets.Splits) -> Any:
  """The uncompiled Keras model of a proxy child, BN momentum set (call it under the strategy's scope)."""
  model = search_space.build_model(
      child, (task.resolution, task.resolution, proxy_channels(task, splits)), splits.num_classes,
      stem_stride=task.stem_stride)
  set_bn_momentum(model, task.bn_momentum)
  return model


def build_child(child: Architecture, task: ProxyTask, splits: datasets.Splits,
                total_steps: int) -> Any:
  """The compiled Keras model of a proxy child (call it under the strategy's scope)."""
  import keras
  model = build_proxy_model(child, task, splits)
  model.compile(optimizer=make_optimizer(task, total_steps), loss=make_loss(task, splits.num_classes),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=False)  # XLA made MBConv children ~6x slower on CPU
  return model


def evaluate(arch: Architecture, task: ProxyTask | None = None, strategy: Any = None,
             seed: int | None = None, deterministic: bool = False) -> TrialResult:
  """Trains `arch` briefly on the proxy task and returns its validation accuracy.

  It trains with `lean_train_step` on one replica (CPU, one GPU), else (TPU, GPUs) with model.fit.

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
  started = time.monotonic()
  task, run_seed = _checked_arguments(arch, task, seed)
  deadline = None if task.timeout_s is None else started + task.timeout_s
  splits = load_proxy_splits(task)
  channels = proxy_channels(task, splits)
  child = proxy_child(arch, task)
  steps_per_epoch = len(splits.train[1]) // task.batch_size
  total_steps = task.steps or task.epochs * steps_per_epoch

  import tensorflow as tf
  strategy = resolve_strategy(strategy)
  seed_child(run_seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  clock = StepClock(deadline, task.batch_size)
  status, error, accuracy = "ok", None, 0.0
  gradients_before = registered_gradients()
  train = _train_lean if lean_supported(strategy) else _train_keras
  try:
    accuracy = train(child, task, splits, total_steps, strategy, run_seed, clock)
    status, error = clock.verdict(task.timeout_s, total_steps)
  except tf.errors.ResourceExhaustedError as e:
    status, error = "failed", _error_text("out of memory", e)
  except Exception as e:  # a bad child must not end the search; its error is recorded instead
    logging.debug("child %s failed", arch.name, exc_info=True)
    status, error = "failed", _error_text(type(e).__name__, e)
  finally:
    # Free the graph, the optimizer slots and the pipelines: a worker trains thousands of children.
    forget_custom_gradients(gradients_before)
    release_keras_state()
  result = clock.result(started, status, accuracy, error, proxy_child_flops(child, task, splits),
                        search_space.count_params(child, splits.num_classes, channels),
                        steps_per_epoch, run_seed)
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

  def result(self, started: float, status: str, accuracy: float, error: str | None,
             proxy_flops: int, proxy_params: int, steps_per_epoch: int, seed: int) -> TrialResult:
    """The child's TrialResult; its fixed seconds run from `started` to now."""
    steady = self.steady_seconds()
    return TrialResult(
        status=status, accuracy=0.0 if status == "failed" else accuracy,
        train_seconds=round(self.train_seconds(started), 3),
        images_per_sec=round(self.images_per_sec(), 1), proxy_flops=proxy_flops,
        proxy_params=proxy_params, error=error, epochs_completed=self.steps // steps_per_epoch,
        steps=self.steps, loss=self.last_loss, seed=seed,
        fixed_seconds=round(time.monotonic() - started - steady, 3), steady_seconds=round(steady, 3))


def lean_supported(strategy: Any) -> bool:
  """Whether `strategy` can run the lean step: one replica, not a TPU (those train with model.fit)."""
  return strategy.num_replicas_in_sync == 1 and "TPU" not in type(strategy).__name__


def _train_keras(child: Architecture, task: ProxyTask, splits: datasets.Splits, total_steps: int,
                 strategy: Any, seed: int, clock: StepClock) -> float:
  """Trains with model.fit and returns the validation accuracy (0 after a non-finite loss)."""
  train_ds, val_ds = proxy_datasets(task, splits, seed)
  with strategy.scope():
    model = build_child(child, task, splits, total_steps)
  clock.start()
  # With `steps`, one long "epoch" over the repeating pipeline.
  model.fit(train_ds, epochs=1 if task.steps else task.epochs, steps_per_epoch=task.steps,
            verbose=0, callbacks=[_keras_guard(clock)], shuffle=False)
  if clock.bad_loss is not None:
    return 0.0
  return float(model.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])


def _keras_guard(clock: StepClock) -> Any:
  """A Keras callback that feeds `clock` and stops model.fit when it says so."""
  import keras

  class _Guard(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      if clock.end_step(float((logs or {}).get("loss", 0.0))):
        self.model.stop_training = True

  return _Guard()


def _train_lean(child: Architecture, task: ProxyTask, splits: datasets.Splits, total_steps: int,
                strategy: Any, seed: int, clock: StepClock) -> float:
  """Trains with `lean_train_step` and returns the validation accuracy (0 after a non-finite loss)."""
  train_ds, val_ds = proxy_datasets(task, splits, seed)
  with strategy.scope():
    model = build_proxy_model(child, task, splits)
    step = lean_train_step(model, task, splits.num_classes, total_steps, strategy)
  clock.start()
  with graph_optimizer_off_on_cpu():
    for _ in range(1 if task.steps else task.epochs):
      loss_sum, n = 0.0, 0  # the epoch's running mean, as model.fit reports it
      for x, y in train_ds.take(task.steps) if task.steps else train_ds:
        loss_sum += float(step(x, y))
        n += 1
        if clock.end_step(loss_sum / n):
          break
      if clock.bad_loss is not None or clock.timed_out:
        break
    if clock.bad_loss is not None:
      return 0.0
    return lean_accuracy(model, val_ds, strategy)


@contextlib.contextmanager
def graph_optimizer_off_on_cpu():
  """Turns TF's graph optimizer (Grappler) off for the functions first run inside, on a CPU-only machine.

  On the CPU it made the lean step's first call 3x slower (B0 child: 1.1 s -> 0.4 s of CPU) and
  the steps no faster (same loss to the bit). On a GPU it stays on: its layout optimizer matters
  there. The setting is process-wide, so it is restored on exit; functions instantiated before
  (e.g. the controller's) keep their own optimized graphs.
  """
  import tensorflow as tf
  if tf.config.list_logical_devices("GPU"):
    yield
    return
  was = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
  try:
    yield
  finally:
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": was})


def lean_accuracy(model: Any, val_ds: Any, strategy: Any) -> float:
  """Top-1 accuracy of `model` (inference mode, fused BN) over the dataset `val_ds`."""
  import tensorflow as tf

  def correct(x, y):
    logits = lean_forward(model, x, training=False)
    hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(tf.reshape(y, [-1]), tf.int32))
    return tf.reduce_sum(tf.cast(hits, tf.int32))

  # One signature with an unknown batch size, so that the last, smaller batch does not retrace.
  count = tf.function(lambda x, y: strategy.run(correct, args=(x, y)), autograph=False,
                      input_signature=list(val_ds.element_spec), jit_compile=False)
  hits, total = 0, 0
  for x, y in val_ds:
    hits += int(count(x, y))
    total += int(x.shape[0])
  return hits / total if total else 0.0


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
    return keras.optimizers.SGD(lr, momentum=task.momentum, weight_decay=weight_decay,
                                global_clipnorm=task.clip_norm)
  return keras.optimizers.RMSprop(lr, rho=RMSPROP_RHO, momentum=task.momentum,
                                  epsilon=RMSPROP_EPSILON, weight_decay=weight_decay,
                                  global_clipnorm=task.clip_norm)


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


# ----------------------------------------------------------------------------- the lean step
# model.fit's first step of a B0-sized child traced for ~10 s on 2 cores, a quarter of a default
# proxy child: its graph had ~9,500 ops (Keras BN as ~20 unfused ops each, the optimizer as several
# ops per variable, the swish custom gradient). The lean step runs the same functional graph with
# one optimizer op per variable, a plain swish and, where exact (`fused_bn_trains_exactly`), one
# fused op per batch norm (~3,300 ops then), at the same steady speed.


def lean_forward(model: Any, x: Any, training: bool) -> Any:
  """The logits of the functional `model` on `x`, with `lean_layer` for each layer."""
  out = model._run_through_graph(
      x, operation_fn=lambda layer: lean_layer(layer, training))
  return out[0] if isinstance(out, (list, tuple)) else out


def lean_layer(layer: Any, training: bool) -> Callable[..., Any]:
  """A function computing `layer` as Keras does, with fewer graph ops where it knows how.

  Batch norm is one FusedBatchNormV3 op in inference, and in training where
  `fused_bn_trains_exactly()` (its running variance then uses the unbiased batch variance, as TF's
  fused batch norm does; Keras's uses the biased one: a factor n/(n-1), at most 1.008 for 128
  images at 1x1); else Keras's own batch norm trains. Convolutions, pooling, dense, add and multiply are the TF ops that
  Keras calls minus its shape bookkeeping; swish is x * sigmoid(x) without a custom gradient.
  Any other layer (or configuration) is the Keras layer itself.
  """
  import keras
  from keras.src.models import functional
  lay = keras.layers
  kind = type(layer)
  if kind is lay.BatchNormalization and _fusable_bn(layer) and (
      not (training and layer.trainable) or fused_bn_trains_exactly()):
    return lambda x, **_: _fused_bn(layer, x, training)
  if kind in (lay.Conv2D, lay.DepthwiseConv2D) and _plain_conv(layer):
    return lambda x, **_: _conv(layer, x)
  if kind is lay.Activation and _lean_activation(layer.activation):
    return lambda x, **_: _activate(layer.activation, x)
  if kind is lay.GlobalAveragePooling2D and layer.data_format == "channels_last":
    import tensorflow as tf
    return lambda x, **_: tf.reduce_mean(x, [1, 2], keepdims=layer.keepdims)
  if kind is lay.Dense and _lean_activation(layer.activation):
    return lambda x, **_: _dense(layer, x)
  if kind in (lay.Add, lay.Multiply):
    return lambda xs, **_: functools.reduce(operator.add if kind is lay.Add else operator.mul, xs)
  return functional.operation_fn(layer, training=training)  # what model.call does


_LEAN_ACTIVATIONS = frozenset({"linear", "silu", "swish", "relu", "sigmoid"})


def _lean_activation(fn: Any) -> bool:
  return getattr(fn, "__name__", None) in _LEAN_ACTIVATIONS


def _activate(fn: Any, x: Any) -> Any:
  import tensorflow as tf
  name = fn.__name__
  if name in ("silu", "swish"):
    return x * tf.sigmoid(x)
  if name == "relu":
    return tf.nn.relu(x)
  if name == "sigmoid":
    return tf.sigmoid(x)
  return x


@functools.lru_cache(maxsize=None)
def fused_bn_trains_exactly() -> bool:
  """Whether the fused batch norm's training gradient matches Keras's to float rounding.

  With oneDNN (TF's default on x86 CPUs) the fused op's gradients for a B0 child differed from
  Keras's by ~1e-3 relative (1e-6 with Keras's unfused ops, 2e-5 with oneDNN off), and B0
  default-proxy children trained with it scored 0.62, 0.62, 0.79 on seeds 0-2 against model.fit's
  0.81, 0.72, 0.71. So on such CPUs the training step keeps Keras's batch norm (exact); inference
  uses the fused op either way.
  """
  import tensorflow as tf
  if tf.config.list_logical_devices("GPU"):
    return True  # cuDNN's fused batch norm
  try:
    from tensorflow.python.util import _pywrap_util_port
    return not _pywrap_util_port.IsMklEnabled()
  except (ImportError, AttributeError):
    return False


def _fusable_bn(layer: Any) -> bool:
  return (layer.axis in (-1, 3) and len(layer.input.shape) == 4 and layer.center and layer.scale
          and not layer.renorm and not layer.synchronized and layer.compute_dtype == "float32")


def _fused_bn(layer: Any, x: Any, training: bool) -> Any:
  import tensorflow as tf
  if not (training and layer.trainable):
    return tf.raw_ops.FusedBatchNormV3(
        x=x, scale=layer.gamma.value, offset=layer.beta.value, mean=layer.moving_mean.value,
        variance=layer.moving_variance.value, epsilon=layer.epsilon, is_training=False)[0]
  # With exponential_avg_factor, the op returns the updated running mean and variance itself.
  y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
      x=x, scale=layer.gamma.value, offset=layer.beta.value, mean=layer.moving_mean.value,
      variance=layer.moving_variance.value, epsilon=layer.epsilon,
      exponential_avg_factor=1.0 - layer.momentum, is_training=True)
  layer.moving_mean.value.assign(mean)
  layer.moving_variance.value.assign(variance)
  return y


def _plain_conv(layer: Any) -> bool:
  return (layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)
          and getattr(layer, "groups", 1) == 1 and layer.compute_dtype == "float32"
          and _lean_activation(layer.activation))


def _conv(layer: Any, x: Any) -> Any:
  import keras
  import tensorflow as tf
  strides, padding = (1, *layer.strides, 1), layer.padding.upper()
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    y = tf.nn.depthwise_conv2d(x, layer.kernel.value, strides, padding)
  else:
    y = tf.nn.conv2d(x, layer.kernel.value, strides, padding)
  if layer.use_bias:
    y = tf.nn.bias_add(y, layer.bias.value)
  return _activate(layer.activation, y)


def _dense(layer: Any, x: Any) -> Any:
  import tensorflow as tf
  y = tf.matmul(x, layer.kernel.value)
  if layer.use_bias:
    y = tf.nn.bias_add(y, layer.bias.value)
  return _activate(layer.activation, y)


def lean_train_step(model: Any, task: ProxyTask, num_classes: int, total_steps: int,
                    strategy: Any) -> Callable[[Any, Any], Any]:
  """The compiled training step `(images, labels) -> loss` of `model` (under `strategy`'s scope).

  Same loss (`make_loss`), schedule (`make_lr_schedule`) and update rule as `make_optimizer`'s
  Keras optimizer, applied with one TF op per variable: SGD momentum (ResourceApplyKerasMomentum:
  m = momentum * m - lr * g; w += m) or RMSProp (ResourceApplyRMSProp: v = rho * v + (1 - rho) g²;
  m = momentum * m + lr * g / sqrt(v + eps); w -= m). Weight decay is Keras's decoupled one:
  w -= lr * weight_decay * w on every trainable variable, before the update.
  """
  import tensorflow as tf
  variables = [v.value for v in model.trainable_variables]
  update = _lean_update(task, variables, total_steps)
  loss_fn = make_loss(task, num_classes)

  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, lean_forward(model, x, training=True))
    update(tape.gradient(loss, variables))
    return loss

  return tf.function(lambda x, y: strategy.run(step, args=(x, y)), autograph=False,
                     jit_compile=False)  # XLA made MBConv children ~6x slower on CPU


def _lean_update(task: ProxyTask, variables: list, total_steps: int) -> Callable[[list], None]:
  """The optimizer update `grads -> None` of `lean_train_step`; it creates the slot variables."""
  import tensorflow as tf
  iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
  schedule = make_lr_schedule(task, total_steps)
  slots = lambda: [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
  momenta = slots() if task.optimizer == "rmsprop" or task.momentum else None
  mean_squares = slots() if task.optimizer == "rmsprop" else None

  def update(grads):
    if task.clip_norm is not None:  # Keras's global_clipnorm, applied before weight decay
      grads, _ = tf.clip_by_global_norm(grads, task.clip_norm)
    lr = tf.cast(schedule(iterations), tf.float32)  # the rate of this step, as Keras reads it
    momentum = tf.constant(task.momentum, tf.float32)
    rho, epsilon = tf.constant(RMSPROP_RHO, tf.float32), tf.constant(RMSPROP_EPSILON, tf.float32)
    decay = lr * task.weight_decay if task.weight_decay else None
    for i, (var, grad) in enumerate(zip(variables, grads)):
      if grad is None:
        continue
      if decay is not None:
        var.assign_sub(var * decay)
      if mean_squares is not None:
        tf.raw_ops.ResourceApplyRMSProp(
            var=var.handle, ms=mean_squares[i].handle, mom=momenta[i].handle, lr=lr, rho=rho,
            momentum=momentum, epsilon=epsilon, grad=grad)
      elif momenta is not None:
        tf.raw_ops.ResourceApplyKerasMomentum(var=var.handle, accum=momenta[i].handle, lr=lr,
                                              grad=grad, momentum=momentum)
      else:
        tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)
    iterations.assign_add(1)

  return update
