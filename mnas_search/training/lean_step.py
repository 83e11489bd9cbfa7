"""The lean training step: a hand-written step with the Keras optimizer's semantics.

It walks the functional graph itself (convolutions, fused batch norm, activations) so that its
graph traces in a fraction of model.fit's time. It relies on private Keras APIs, which is why it
is kept apart and tested against model.fit for equal weights.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

from mnas_search.training import recipe
from mnas_search.training.proxy import ProxyTask


def lean_supported(strategy: Any) -> bool:
  """Whether `strategy` can run the lean step: one replica, not a TPU (those train with model.fit)."""
  return strategy.num_replicas_in_sync == 1 and "TPU" not in type(strategy).__name__


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

  Same loss (`recipe.make_loss`), schedule (`recipe.make_lr_schedule`) and update rule as `recipe.make_optimizer`'s
  Keras optimizer, applied with one TF op per variable: SGD momentum (ResourceApplyKerasMomentum:
  m = momentum * m - lr * g; w += m) or RMSProp (ResourceApplyRMSProp: v = rho * v + (1 - rho) g²;
  m = momentum * m + lr * g / sqrt(v + eps); w -= m). Weight decay is Keras's decoupled one:
  w -= lr * weight_decay * w on every trainable variable, before the update.

  The returned function's `optimizer_variables` are the step count and the slots: with the model's
  variables, the whole state a continued child restores (`continuation`).
  """
  import tensorflow as tf
  variables = [v.value for v in model.trainable_variables]
  update = _lean_update(task, variables, total_steps)
  loss_fn = recipe.make_loss(task, num_classes)

  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, lean_forward(model, x, training=True))
    update(tape.gradient(loss, variables))
    return loss

  fn = tf.function(lambda x, y: strategy.run(step, args=(x, y)), autograph=False,
                   jit_compile=False)  # XLA is slower for these small MBConv children on CPU
  fn.optimizer_variables = update.variables  # what a continued child restores (continuation.py)
  return fn


def _lean_update(task: ProxyTask, variables: list, total_steps: int) -> Callable[[list], None]:
  """The optimizer update `grads -> None` of `lean_train_step`; it creates the slot variables."""
  import tensorflow as tf
  iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
  schedule = recipe.make_lr_schedule(task, total_steps)
  slots = lambda: [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
  momenta = slots() if task.optimizer == "rmsprop" or task.momentum else None
  mean_squares = slots() if task.optimizer == "rmsprop" else None

  def update(grads):
    if task.clip_norm is not None:  # Keras's global_clipnorm, applied before weight decay
      grads, _ = tf.clip_by_global_norm(grads, task.clip_norm)
    lr = tf.cast(schedule(iterations), tf.float32)  # the rate of this step, as Keras reads it
    momentum = tf.constant(task.momentum, tf.float32)
    rho, epsilon = tf.constant(recipe.RMSPROP_RHO, tf.float32), tf.constant(recipe.RMSPROP_EPSILON, tf.float32)
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

  update.variables = [iterations] + (momenta or []) + (mean_squares or [])
  return update
