"""Process-wide TF and Keras state: seeding, the custom-gradient registry and clean-up between children."""

from __future__ import annotations

import contextlib
import threading


@contextlib.contextmanager
def graph_optimizer_off_on_cpu():
  """Turns TF's graph optimizer (Grappler) off for the functions first run inside, on a CPU-only machine.

  On the CPU it slows the lean step's first call (its tracing) and makes the steps no faster
  (same loss to the bit). On a GPU it stays on: its layout optimizer matters
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
  seed. Changing that seed would make every tf.function in the process retrace on its next call,
  including the PPO controller's update, which shares the process with inline children.
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
  cache is kept: clearing it would throw away the instantiated kernels of every tf.function in the
  process, so the PPO controller's update in the same process would rebuild them every time.
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
