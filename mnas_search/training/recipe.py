"""The child's training recipe: optimizer, learning-rate schedule, loss and batch-norm momentum."""

from __future__ import annotations

from typing import Any

from mnas_search.training.proxy import ProxyTask

# RMSProp as in the MnasNet/EfficientNet reference (decay 0.9, epsilon 1e-3).
RMSPROP_RHO = 0.9


RMSPROP_EPSILON = 1e-3


def set_bn_momentum(model: Any, momentum: float | None) -> None:
  """Sets the moving-average momentum of every BatchNormalization layer (None keeps it)."""
  if momentum is None:
    return
  import keras
  for layer in model.layers:  # a functional model: every layer is at the top level
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = momentum


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
