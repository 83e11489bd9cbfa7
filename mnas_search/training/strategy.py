"""Which tf.distribute strategy a child is built and trained under.

  auto      a TPU when one is named (the `tpu` argument or the TPU_NAME environment variable),
            else MirroredStrategy over all GPUs when there are at least 2, else the default
            strategy (one GPU if there is one, otherwise the CPU).
  cpu       OneDeviceStrategy on /cpu:0, even when accelerators are present.
  mirrored  MirroredStrategy over every visible GPU; needs at least 1 GPU (MirroredStrategy would
            silently fall back to the CPU, which is never what was asked for).
  tpu       TPUStrategy on `tpu` (a name, grpc://address or "local") or on TPU_NAME.

Devices that are asked for but absent fail fast with a ValueError before any training starts.
TF is imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from nas_common import FieldError

STRATEGIES = ("auto", "cpu", "mirrored", "tpu")
TPU_ENV = "TPU_NAME"


def make_strategy(name: str = "auto", tpu: str | None = None) -> Any:
  """Builds a `tf.distribute.Strategy`.

  Args:
    name: one of `STRATEGIES`.
    tpu: the TPU to connect to (a name, a grpc:// address or "local"); None reads TPU_NAME.

  Returns:
    The strategy; build and compile models under its `scope()`.

  Raises:
    FieldError: (naming `strategy` or `tpu`) an unknown name, or a device that this machine
      does not have.
  """
  if name not in STRATEGIES:
    raise FieldError("strategy", name, ", ".join(STRATEGIES), reason="is unknown")
  import tensorflow as tf
  tpu = tpu or os.environ.get(TPU_ENV) or None
  if name == "cpu":
    return tf.distribute.OneDeviceStrategy("/cpu:0")
  if name == "tpu" or (name == "auto" and tpu):
    return _tpu_strategy(tpu)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "mirrored":
    if not gpus:
      raise FieldError("strategy", name, "auto or cpu",
                       reason="needs at least 1 GPU and this machine has none")
    return tf.distribute.MirroredStrategy([g.name for g in gpus])
  if len(gpus) >= 2:
    logging.info("strategy auto: MirroredStrategy over %d GPUs", len(gpus))
    return tf.distribute.MirroredStrategy([g.name for g in gpus])
  return tf.distribute.get_strategy()


def _tpu_strategy(tpu: str | None) -> Any:
  import tensorflow as tf
  if not tpu:
    raise FieldError("strategy", "tpu", "", reason="needs a TPU: pass tpu= (--tpu=NAME, "
                     f"grpc://ADDRESS or local) or set {TPU_ENV}; none is given")
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except Exception as e:  # the resolver raises several error types; all mean "no such TPU"
    raise FieldError("tpu", tpu, "", reason=f": cannot connect to the TPU: {e}") from None
  return tf.distribute.TPUStrategy(resolver)


def resolve_strategy(strategy: Any = None, tpu: str | None = None) -> Any:
  """A strategy from None (the current/default one), a name (see `make_strategy`) or a strategy."""
  if strategy is None:
    import tensorflow as tf
    return tf.distribute.get_strategy()
  if isinstance(strategy, str):
    return make_strategy(strategy, tpu)
  if not hasattr(strategy, "scope"):
    raise ValueError(f"strategy={strategy!r} is invalid; allowed: None, one of {list(STRATEGIES)} or "
                     "a tf.distribute.Strategy")
  return strategy
