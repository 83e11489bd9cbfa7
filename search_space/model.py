"""The Keras 3 builder: one functional model per `Architecture`.

Layer for layer this is the TF EfficientNet reference (and
`keras.applications.EfficientNet`): a 3x3 stride-2 stem, MBConv blocks with SE
and drop-connect, a 1x1 head, average pooling, dropout and a dense classifier.
`search_space.costs` counts exactly these layers.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from nas_common import check_int
from search_space.blocks import Architecture, ConcreteBlock

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
STEM_STRIDES = (1, 2)

# The TF reference's initializers (but the classifier's, see dense_init). A fresh instance per
# layer: a shared Keras 3 initializer repeats the same values for every layer of the same shape, and its
# seed would be fixed at import time instead of by keras.utils.set_random_seed.
def conv_init():
  """The convolutions' initializer (a fresh instance per layer)."""
  return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="truncated_normal")


def dense_init():
  """The classifier's initializer (a fresh instance per layer)."""
  # The reference scales by fan_out, i.e. by the number of classes: right for ImageNet's 1000, but
  # with 10 classes the initial logits are ~10x larger in variance (initial loss ~4 instead of
  # ln 10) and the first steps are spent undoing that. fan_in (1280 features for B0) keeps
  # ImageNet's scale and makes it independent of the number of classes.
  return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")

KERAS_ACTIVATIONS = {"swish": "silu", "relu": "relu", "relu6": "relu6", "hard_swish": "hard_silu"}


def _bn(name: str) -> layers.BatchNormalization:
  return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def mbconv(x, block: ConcreteBlock, activation: str, prefix: str):
  """Applies one MBConv block to tensor `x`."""
  act = KERAS_ACTIVATIONS[activation]
  inputs = x
  cexp = block.expanded_filters
  if block.expand_ratio != 1:
    x = layers.Conv2D(cexp, 1, padding="same", use_bias=False, kernel_initializer=conv_init(),
                      name=prefix + "expand_conv")(x)
    x = _bn(prefix + "expand_bn")(x)
    x = layers.Activation(act, name=prefix + "expand_activation")(x)
  x = layers.DepthwiseConv2D(block.kernel_size, strides=block.stride, padding="same", use_bias=False,
                             depthwise_initializer=conv_init(), name=prefix + "dwconv")(x)
  x = _bn(prefix + "bn")(x)
  x = layers.Activation(act, name=prefix + "activation")(x)
  if block.se_ratio > 0:
    se = layers.GlobalAveragePooling2D(keepdims=True, name=prefix + "se_squeeze")(x)
    se = layers.Conv2D(block.se_filters, 1, padding="same", activation=act,
                       kernel_initializer=conv_init(), name=prefix + "se_reduce")(se)
    se = layers.Conv2D(cexp, 1, padding="same", activation="sigmoid",
                       kernel_initializer=conv_init(), name=prefix + "se_expand")(se)
    x = layers.Multiply(name=prefix + "se_excite")([x, se])
  x = layers.Conv2D(block.output_filters, 1, padding="same", use_bias=False,
                    kernel_initializer=conv_init(), name=prefix + "project_conv")(x)
  x = _bn(prefix + "project_bn")(x)
  if block.has_skip:
    if block.drop_rate > 0:
      # Drop-connect: drop the whole residual branch per example.
      x = layers.Dropout(block.drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
    x = layers.Add(name=prefix + "add")([x, inputs])
  return x


def build_model(arch: Architecture, input_shape: Sequence[int] | None = None, num_classes: int = 1000,
                classifier_activation: str | None = None, name: str | None = None,
                stem_stride: int = 2) -> keras.Model:
  """Builds the Keras 3 functional model of an architecture.

  Args:
    arch: the architecture (its width and depth coefficients are applied here).
    input_shape: (height, width, channels); (resolution, resolution, 3) when None.
      Inputs are expected already normalized (the data pipeline does it).
    num_classes: classifier outputs.
    classifier_activation: None for logits (the default), or e.g. "softmax".
    name: model name; the architecture's name when None.
    stem_stride: 2 as in the reference; 1 for small images (28-32 px), so that the last
      stages see 2x2 maps instead of 1x1. It is a property of the training task, not of the
      architecture: the architecture's decisions and its deploy costs stay the same.

  Returns:
    An uncompiled `keras.Model`.
  """
  if input_shape is None:
    input_shape = (arch.resolution, arch.resolution, 3)
  input_shape = tuple(input_shape)
  if len(input_shape) != 3 or any((not isinstance(v, int)) or v < 1 for v in input_shape):
    raise ValueError(f"input_shape={input_shape!r} is invalid; allowed: (height, width, channels), "
                     "each an integer >= 1")
  check_int("num_classes", num_classes, 1)
  if stem_stride not in STEM_STRIDES:
    raise ValueError(f"stem_stride={stem_stride!r} is invalid; allowed: 1 or 2")
  act = KERAS_ACTIVATIONS[arch.activation]
  inputs = keras.Input(shape=input_shape, name="image")
  x = layers.Conv2D(arch.stem_channels, 3, strides=stem_stride, padding="same", use_bias=False,
                    kernel_initializer=conv_init(), name="stem_conv")(inputs)
  x = _bn("stem_bn")(x)
  x = layers.Activation(act, name="stem_activation")(x)
  blocks = arch.expand_blocks()
  stage_seen: dict[int, int] = {}
  for b in blocks:
    j = stage_seen.get(b.stage, 0)
    stage_seen[b.stage] = j + 1
    x = mbconv(x, b, arch.activation, prefix=f"block{b.stage + 1}{block_letter(j)}_")
  x = layers.Conv2D(arch.head_channels, 1, padding="same", use_bias=False,
                    kernel_initializer=conv_init(), name="top_conv")(x)
  x = _bn("top_bn")(x)
  x = layers.Activation(act, name="top_activation")(x)
  x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
  if arch.dropout_rate > 0:
    x = layers.Dropout(arch.dropout_rate, name="top_dropout")(x)
  outputs = layers.Dense(num_classes, activation=classifier_activation, kernel_initializer=dense_init(),
                         name="predictions")(x)
  return keras.Model(inputs, outputs, name=_model_name(name or arch.name))


def block_letter(j: int) -> str:
  """a, b, …, z, aa, ab, … for block names within a stage."""
  s = ""
  j += 1
  while j:
    j, r = divmod(j - 1, 26)
    s = chr(ord("a") + r) + s
  return s


def _model_name(name: str) -> str:
  # Keras names allow letters, digits, '_', '-', '.'.
  return "".join(c if c.isalnum() or c in "_-." else "_" for c in name) or "model"
