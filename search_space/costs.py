"""Analytic cost counters: multiply-adds and parameters from the description alone.

No TF graph is built. The counts follow the builder in `search_space.model`
layer for layer, so `count_params(arch)` equals the built Keras model's
`count_params()` (BN moving statistics included), and `count_flops` counts the
multiply-adds of every conv, depthwise conv, SE conv and the classifier, which
is how the MnasNet and EfficientNet papers count "FLOPS".
"""

from __future__ import annotations

import dataclasses

from nas_common import check_int
from search_space.blocks import Architecture, ConcreteBlock


def _check_positive_int(name: str, value: int) -> None:
  check_int(name, value, 1)


def conv_output_size(size: int, stride: int) -> int:
  """Spatial size after a 'same'-padded conv: ceil(size / stride)."""
  return -(-size // stride)


@dataclasses.dataclass(frozen=True)
class BlockCost:
  """Cost of one concrete MBConv block at a given input size."""

  block: ConcreteBlock
  input_size: int
  output_size: int
  flops: int
  params: int


def block_cost(block: ConcreteBlock, input_size: int) -> BlockCost:
  """Multiply-adds and parameters of one MBConv block whose input is `input_size`²."""
  cin, cout, cexp = block.input_filters, block.output_filters, block.expanded_filters
  out = conv_output_size(input_size, block.stride)
  flops = params = 0
  if block.expand_ratio != 1:
    flops += input_size * input_size * cin * cexp
    params += cin * cexp + 4 * cexp                      # conv (no bias) + BN (4 per channel)
  k2 = block.kernel_size * block.kernel_size
  flops += out * out * k2 * cexp
  params += k2 * cexp + 4 * cexp
  if block.se_ratio > 0:
    se = block.se_filters
    flops += cexp * se + se * cexp                        # two 1x1 convs on the pooled vector
    params += cexp * se + se + se * cexp + cexp           # both with bias
  flops += out * out * cexp * cout
  params += cexp * cout + 4 * cout
  return BlockCost(block, input_size, out, flops, params)


def block_costs(arch: Architecture, resolution: int | None = None,
                stem_stride: int = 2) -> list[BlockCost]:
  """Per-block costs in network order, for a square input of `resolution`."""
  resolution = arch.resolution if resolution is None else resolution
  _check_positive_int("resolution", resolution)
  size = conv_output_size(resolution, stem_stride)        # after the stem
  costs = []
  for block in arch.expand_blocks():
    c = block_cost(block, size)
    costs.append(c)
    size = c.output_size
  return costs


def stem_flops(arch: Architecture, resolution: int, input_channels: int = 3,
               stem_stride: int = 2) -> int:
  s = conv_output_size(resolution, stem_stride)
  return s * s * 9 * input_channels * arch.stem_channels


def count_flops(arch: Architecture, resolution: int | None = None, num_classes: int = 1000,
                input_channels: int = 3, stem_stride: int = 2) -> int:
  """Multiply-adds of one forward pass of one image.

  Args:
    arch: the architecture.
    resolution: square input size; the architecture's own when None.
    num_classes: classifier outputs.
    input_channels: channels of the input image.
    stem_stride: the stem's stride (2 as in the reference; 1 in the small-image geometry).

  Returns:
    Multiply-adds of every conv, depthwise conv, SE conv and the classifier.
  """
  resolution = arch.resolution if resolution is None else resolution
  _check_positive_int("resolution", resolution)
  _check_positive_int("num_classes", num_classes)
  _check_positive_int("input_channels", input_channels)
  if stem_stride not in (1, 2):
    raise ValueError(f"stem_stride={stem_stride!r} is invalid; allowed: 1 or 2")
  costs = block_costs(arch, resolution, stem_stride)
  total = stem_flops(arch, resolution, input_channels, stem_stride) + sum(c.flops for c in costs)
  final = costs[-1].output_size
  total += final * final * costs[-1].block.output_filters * arch.head_channels
  total += arch.head_channels * num_classes
  return total


def count_params(arch: Architecture, num_classes: int = 1000, input_channels: int = 3) -> int:
  """All parameters of the built model, BN moving statistics included."""
  _check_positive_int("num_classes", num_classes)
  _check_positive_int("input_channels", input_channels)
  stem = arch.stem_channels
  total = 9 * input_channels * stem + 4 * stem
  blocks = arch.expand_blocks()
  total += sum(block_cost(b, 1).params for b in blocks)  # params do not depend on the size
  head = arch.head_channels
  total += blocks[-1].output_filters * head + 4 * head
  total += head * num_classes + num_classes
  return total


def count_trainable_params(arch: Architecture, num_classes: int = 1000,
                           input_channels: int = 3) -> int:
  """Parameters minus BN moving mean and variance (2 per BN channel)."""
  bn_channels = arch.stem_channels + arch.head_channels
  for b in arch.expand_blocks():
    bn_channels += (b.expanded_filters if b.expand_ratio != 1 else 0) + b.expanded_filters
    bn_channels += b.output_filters
  return count_params(arch, num_classes, input_channels) - 2 * bn_channels
