"""Tests for search_space.costs: analytic FLOPs and parameter counts."""

import numpy as np
import pytest

import search_space as ss
from search_space import count_flops, count_params, count_trainable_params, default_space, named

# The EfficientNet paper's FLOPs column (multiply-adds).
PAPER_FLOPS = {"b0": 0.39e9, "b1": 0.70e9, "b2": 1.0e9, "b3": 1.8e9, "b4": 4.2e9, "b5": 9.9e9,
               "b6": 19e9, "b7": 37e9}


def test_b0_exact_counts():
  b0 = named("efficientnet-b0")
  assert count_params(b0) == 5330564
  assert count_trainable_params(b0) == 5288548
  assert count_flops(b0, 224) == 385814752


def test_b0_flops_within_3_percent_of_paper():
  assert abs(count_flops(named("efficientnet-b0"), 224) / 0.39e9 - 1) < 0.03


@pytest.mark.parametrize("member", ["b1", "b2", "b3", "b4", "b5", "b6", "b7"])
def test_family_flops_within_8_percent_of_paper(member):
  arch = named(f"efficientnet-{member}")
  assert abs(count_flops(arch) / PAPER_FLOPS[member] - 1) < 0.08


def test_hand_counted_one_block_network():
  arch = ss.Architecture(blocks=("r1_k3_s11_e6_i8_o8_se0.25",), stem_filters=8, head_filters=16)
  # 8x8 input -> 4x4 after the stem. Stem 4*4*9*3*8; expand 4*4*8*48; depthwise 4*4*9*48;
  # SE 48*2 + 2*48; project 4*4*48*8; head 4*4*8*16; classifier 16*10.
  assert count_flops(arch, 8, num_classes=10) == 3456 + 6144 + 6912 + 192 + 6144 + 2048 + 160
  # stem 216+32 BN; expand 384+192; dw 432+192; SE 96+2+96+48; project 384+32; head 128+64; dense 170
  assert count_params(arch, 10) == 248 + 576 + 624 + 242 + 416 + 192 + 170
  assert count_params(arch, 10) == ss.build_model(arch, (8, 8, 3), 10).count_params()


def test_classifier_flops_scale_with_classes():
  b0 = named("efficientnet-b0")
  assert count_flops(b0, 32, num_classes=1000) - count_flops(b0, 32, num_classes=10) == 1280 * 990


def _built_params(arch, num_classes=1000):
  return ss.build_model(arch, (32, 32, 3), num_classes).count_params()


# B1-B6 lie between B0 and B7 (the same blocks, scaled); the slow set builds them too.
@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-b7", "mnasnet-a1", "mobilenet-v2"] + [
    pytest.param(f"efficientnet-b{i}", marks=pytest.mark.slow) for i in range(1, 7)])
def test_count_params_equals_built_model(name):
  arch = named(name)
  model = ss.build_model(arch, (32, 32, 3), 1000)
  assert count_params(arch) == model.count_params()
  assert count_trainable_params(arch) == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("count", [pytest.param(10), pytest.param(50, marks=pytest.mark.slow)])
def test_count_params_equals_built_model_for_random_architectures(count):
  space = default_space()
  rng = np.random.default_rng(2024)
  for _ in range(count):
    arch = space.decode(space.sample_indices(rng))
    num_classes = int(rng.integers(2, 1001))
    assert count_params(arch, num_classes) == _built_params(arch, num_classes), arch.block_strings


def _profiler_flops(arch, resolution, num_classes=1000, channels=3, stem_stride=2):
  import tensorflow as tf
  from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
  model = ss.build_model(arch, (resolution, resolution, channels), num_classes,
                         stem_stride=stem_stride)
  fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
      tf.TensorSpec([1, resolution, resolution, channels], tf.float32))
  graph = convert_variables_to_constants_v2(fn).graph
  opts = (tf.compat.v1.profiler.ProfileOptionBuilder(
      tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build())
  return tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops / 2


def test_flops_agree_with_tensorflow_profiler():
  space = default_space()
  rng = np.random.default_rng(5)
  archs = [named("efficientnet-b0")] + [space.decode(space.sample_indices(rng)) for _ in range(2)]
  for arch in archs:
    # The profiler also counts BN, activations and adds, so it reads a few percent higher.
    ratio = _profiler_flops(arch, 224) / count_flops(arch, 224)
    assert 1.0 <= ratio < 1.05, (arch.block_strings, ratio)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"resolution": 0}, "resolution=0 is invalid"),
    ({"resolution": -32}, "resolution=-32 is invalid"),
    ({"num_classes": 0}, "num_classes=0 is invalid"),
])
def test_bad_cost_arguments(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    count_flops(named("efficientnet-b0"), **kwargs)


def test_block_costs_sum_to_total_minus_stem_and_head():
  b0 = named("efficientnet-b0")
  costs = ss.block_costs(b0, 224)
  stem = 112 * 112 * 9 * 3 * 32
  head = 7 * 7 * 320 * 1280 + 1280 * 1000
  assert sum(c.flops for c in costs) + stem + head == count_flops(b0, 224)
  assert [c.output_size for c in costs][-1] == 7


def test_stem_stride_1_counts_the_small_image_geometry_as_the_profiler_does():
  # Stride 1 at the stem: every map is twice as wide, so the convs cost about 4x; the parameters
  # do not change, and neither do the deploy costs (stem stride 2 by default).
  b0 = named("efficientnet-b0")
  s1, s2 = count_flops(b0, 32, 10, 1, stem_stride=1), count_flops(b0, 32, 10, 1)
  assert s2 == count_flops(b0, 32, 10, 1, stem_stride=2)
  assert 3.0 < s1 / s2 < 4.1
  sizes = [c.output_size for c in ss.block_costs(b0, 32, stem_stride=1)]
  assert sizes[-1] == 2 and [c.output_size for c in ss.block_costs(b0, 32)][-1] == 1
  profiled = _profiler_flops(b0, 32, 10, 1, stem_stride=1)
  assert 1.0 <= profiled / s1 < 1.1
  with pytest.raises(ValueError, match="stem_stride=3 is invalid; allowed: 1 or 2"):
    count_flops(b0, 32, stem_stride=3)
