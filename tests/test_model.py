"""Tests for search_space.model: the Keras 3 builder."""

import keras
import numpy as np
import pytest

from search_space import Architecture, build_model, named


def _layers_of(model, cls):
  return [l for l in model.layers if type(l) is cls]


def test_b0_structure():
  model = build_model(named("efficientnet-b0"), (224, 224, 3), 1000)
  assert model.output_shape == (None, 1000)
  assert len(_layers_of(model, keras.layers.Add)) == 9           # skip only at s1, i == o
  assert len(_layers_of(model, keras.layers.Multiply)) == 16     # SE in every block
  drops = [l for l in model.layers if l.name.endswith("_drop")]
  assert len(drops) == 9 and drops[-1].rate == pytest.approx(0.2 * 14 / 16)  # last skip: block 15
  bns = _layers_of(model, keras.layers.BatchNormalization)
  assert {(bn.momentum, bn.epsilon) for bn in bns} == {(0.99, 1e-3)}
  convs = _layers_of(model, keras.layers.Conv2D) + _layers_of(model, keras.layers.DepthwiseConv2D)
  assert all(not c.use_bias for c in convs if "se_" not in c.name)
  assert model.get_layer("block2a_se_reduce").filters == 4   # max(1, int(16 * 0.25))
  assert model.get_layer("top_conv").filters == 1280
  assert model.get_layer("block1a_activation").activation.__name__ == "silu"


def test_noskip_removes_skip_and_activation_choice():
  arch = Architecture(blocks=("r2_k3_s11_e1_i16_o16_noskip", "r2_k3_s11_e3_i16_o16"),
                      activation="relu6", stem_filters=16, head_filters=64)
  model = build_model(arch, (32, 32, 3), 10)
  assert [l.name for l in _layers_of(model, keras.layers.Add)] == ["block2a_add", "block2b_add"]
  assert "block1a_expand_conv" not in [l.name for l in model.layers]
  assert model.get_layer("block2a_expand_conv").filters == 48


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (28, 28, 3)])
def test_small_inputs_run(shape):
  model = build_model(named("efficientnet-b0").replace(width_coefficient=0.25), shape, 10)
  out = model(np.zeros((2,) + shape, np.float32), training=False)
  assert out.shape == (2, 10)


def test_logits_by_default_and_softmax_on_request():
  arch = named("mobilenet-v2").replace(width_coefficient=0.25)
  x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  probs = build_model(arch, (32, 32, 3), 5, classifier_activation="softmax")(x, training=False)
  np.testing.assert_allclose(np.sum(np.asarray(probs), axis=1), 1.0, rtol=1e-5)
  logits = build_model(arch, (32, 32, 3), 5)
  assert logits.layers[-1].activation.__name__ == "linear"


def test_bad_input_shape_and_classes():
  arch = named("efficientnet-b0")
  with pytest.raises(ValueError, match=r"input_shape=\(32, 32\) is invalid"):
    build_model(arch, (32, 32), 10)
  with pytest.raises(ValueError, match="num_classes=0 is invalid"):
    build_model(arch, (32, 32, 3), 0)


def test_layers_of_the_same_shape_get_different_initial_weights():
  model = build_model(named("efficientnet-b0").replace(width_coefficient=0.25), (32, 32, 3), 10)
  a = model.get_layer("block4b_project_conv").get_weights()[0]
  b = model.get_layer("block4c_project_conv").get_weights()[0]
  assert a.shape == b.shape and not np.allclose(a, b)


def test_build_is_reproducible_under_set_random_seed():
  arch = named("mobilenet-v2").replace(width_coefficient=0.25)
  keras.utils.set_random_seed(11)
  w1 = build_model(arch, (32, 32, 3), 10).get_weights()
  build_model(named("mnasnet-a1"), (32, 32, 3), 10)  # history must not matter
  keras.utils.set_random_seed(11)
  w2 = build_model(arch, (32, 32, 3), 10).get_weights()
  assert all(np.array_equal(x, y) for x, y in zip(w1, w2))


def test_stem_stride_1_keeps_the_weights_and_doubles_every_map():
  b0 = named("efficientnet-b0")
  s1 = build_model(b0, (32, 32, 1), 10, stem_stride=1)
  s2 = build_model(b0, (32, 32, 1), 10)
  assert s1.count_params() == s2.count_params()
  assert s1.get_layer("top_conv").output.shape[1:3] == (2, 2)
  assert s2.get_layer("top_conv").output.shape[1:3] == (1, 1)
  with pytest.raises(ValueError, match="stem_stride=3 is invalid; allowed: 1 or 2"):
    build_model(b0, (32, 32, 1), 10, stem_stride=3)


@pytest.mark.parametrize("num_classes", [10, 1000])
def test_initial_logits_do_not_grow_with_fewer_classes(num_classes):
  # The reference's classifier init scales by fan_out (the number of classes): with 10 classes
  # the initial cross-entropy of B0 was ~4 instead of ln 10 ~ 2.3. It must start near ln(C).
  keras.utils.set_random_seed(0)
  model = build_model(named("efficientnet-b0"), (32, 32, 1), num_classes)
  x = np.random.default_rng(0).standard_normal((64, 32, 32, 1)).astype("float32")
  logits = model(x, training=True)
  loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
      np.zeros(64, dtype="int32"), logits))
  assert abs(loss - np.log(num_classes)) < 0.5, loss
