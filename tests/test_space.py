"""Tests for search_space.space: decisions, decode/encode and the default space."""

import math

import numpy as np
import pytest

from search_space import default_space, get_space, named


def test_default_space_size_and_decisions():
  space = default_space()
  assert space.num_decisions == 42
  assert space.size == 1444408272617472  # about 1.44e15
  assert space.size == math.prod(space.arities)
  assert space.decisions[0].name == "s1/kernel"
  assert space.decisions[4].options == (1, 2)          # repeats of a base-1 stage: min 1
  assert space.decisions[10].options == (1, 2, 3)      # s2/repeats around base 2
  assert space.decisions[17].options == (24, 32, 40, 48)
  assert [st.stride for st in space.stages] == [1, 2, 2, 2, 1, 2, 1]


@pytest.mark.parametrize("name", ["efficientnet-b0", "mnasnet-a1", "mobilenet-v2"])
def test_references_are_points_of_the_space(name):
  space = default_space()
  arch = named(name)
  idx = space.encode(arch)
  assert space.decode(idx).block_strings == arch.block_strings
  assert space.contains(arch)


def test_b0_indices_exact():
  assert default_space().encode(named("efficientnet-b0")) == (
      0, 0, 1, 0, 0, 0,   0, 2, 1, 0, 1, 1,   1, 2, 1, 0, 0, 2,   0, 2, 1, 0, 0, 1,
      1, 2, 1, 0, 1, 1,   1, 2, 1, 0, 2, 1,   0, 2, 1, 0, 0, 0)


def test_encode_decode_random_round_trip():
  space = default_space()
  rng = np.random.default_rng(7)
  for _ in range(1000):
    idx = space.sample_indices(rng)
    assert space.encode(space.decode(idx)) == idx


def test_decode_errors():
  space = default_space()
  with pytest.raises(ValueError, match="got 3 indices; this space has 42 decisions"):
    space.decode([0, 0, 0])
  bad = [0] * 42
  bad[1] = 3
  with pytest.raises(ValueError, match=r"index 3 for decision 's1/expansion' is out of range; allowed: 0..2"):
    space.decode(bad)


def test_encode_refuses_points_outside():
  b7 = named("efficientnet-b0").replace(blocks=tuple(
      b if i != 1 else b.__class__(repeats=5, kernel_size=3, stride=2, expand_ratio=6,
                                   input_filters=16, output_filters=24, se_ratio=0.25)
      for i, b in enumerate(named("efficientnet-b0").blocks)))
  with pytest.raises(ValueError, match=r"stage 2: repeats=5 is not in this space; allowed: \[1, 2, 3\]"):
    default_space().encode(b7)


def test_get_space_unknown():
  with pytest.raises(ValueError, match="unknown search space 'tiny'; allowed: \\['default', 'micro'\\]"):
    get_space("tiny")


def test_micro_space():
  space = get_space("micro")
  assert space.arities == (2, 3, 2, 2, 2, 1) + (2, 3, 2, 2, 2, 2) * 2
  assert space.size == 48 * 96 * 96
  arch = space.decode([0] * 18)
  assert arch.block_strings == ["r1_k3_s11_e1_i8_o8", "r1_k3_s22_e1_i8_o8", "r1_k3_s22_e1_i8_o16"]
  assert (arch.stem_filters, arch.head_filters, arch.resolution) == (8, 64, 32)
