"""Tests for search_space.blocks: the block-string grammar and Architecture JSON."""

import json

import numpy as np
import pytest

from search_space import (
  Architecture,
  BlockArgs,
  default_space,
  named,
  parse_block,
  round_filters,
  round_repeats,
)
from search_space.scaling import EFFICIENTNET_B0_BLOCKS, MNASNET_A1_BLOCKS, MOBILENET_V2_BLOCKS, NAMED


def test_parse_b0_first_block_exact():
  b = parse_block("r1_k3_s11_e1_i32_o16_se0.25")
  assert b == BlockArgs(repeats=1, kernel_size=3, stride=1, expand_ratio=1, input_filters=32,
                        output_filters=16, se_ratio=0.25, id_skip=True)


def test_parse_noskip_and_no_se():
  b = parse_block("r1_k3_s11_e1_i32_o16_noskip")
  assert (b.se_ratio, b.id_skip) == (0.0, False)
  assert b.to_string() == "r1_k3_s11_e1_i32_o16_noskip"


@pytest.mark.parametrize("blocks", [EFFICIENTNET_B0_BLOCKS, MNASNET_A1_BLOCKS, MOBILENET_V2_BLOCKS])
def test_reference_block_strings_round_trip(blocks):
  assert [parse_block(s).to_string() for s in blocks] == list(blocks)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_architectures_round_trip_through_json(name):
  arch = named(name)
  again = Architecture.from_json(arch.to_json())
  assert again == arch
  assert again.block_strings == arch.block_strings


def test_random_samples_round_trip_block_strings_and_json():
  space = default_space()
  rng = np.random.default_rng(123)
  for _ in range(1000):
    arch = space.decode(space.sample_indices(rng))
    strings = arch.block_strings
    assert [parse_block(s).to_string() for s in strings] == strings
    assert Architecture.from_dict(json.loads(arch.to_json())) == arch


@pytest.mark.parametrize("text, fragment", [
    ("r1_k3_s11_e1_i32", "missing field(s) ['o']"),
    ("r1_k3_s11_e1_i32_o16_x7", "field 'x7' is not understood"),
    ("r1_k3_s33_e1_i32_o16", "stride 's33' is invalid; allowed: s11 or s22"),
    ("r1_k3_s12_e1_i32_o16", "stride 's12' is invalid"),
    ("r-1_k3_s11_e1_i32_o16", "field 'r-1' is not understood"),
    ("r0_k3_s11_e1_i32_o16", "repeats=0 is invalid"),
    ("r1_k4_s11_e1_i32_o16", "kernel_size=4 is invalid"),
    ("r1_k3_k5_s11_e1_i32_o16", "field 'k' is given twice"),
    ("r1_k3_s11_e1_i32_o16_se1.5", "se_ratio=1.5 is invalid"),
    ("r1.5_k3_s11_e1_i32_o16", "r1.5 must be an integer"),
    ("", "is empty"),
])
def test_malformed_block_strings_are_refused_with_the_text(text, fragment):
  with pytest.raises(ValueError) as e:
    parse_block(text)
  assert fragment in str(e.value)
  if text:
    assert repr(text) in str(e.value)


def test_negative_repeats_in_blockargs_refused():
  with pytest.raises(ValueError, match=r"repeats=-1 is invalid; allowed: an integer >= 1"):
    BlockArgs(repeats=-1, kernel_size=3, stride=1, expand_ratio=1, input_filters=8, output_filters=8)


def test_unknown_json_key_refused():
  d = named("efficientnet-b0").to_dict()
  d["colour"] = "blue"
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
    Architecture.from_dict(d)


def test_bad_block_in_json_names_text():
  d = named("efficientnet-b0").to_dict()
  d["blocks"][2] = "r2_k5_s22_e6_i24"
  with pytest.raises(ValueError, match="r2_k5_s22_e6_i24"):
    Architecture.from_dict(d)


@pytest.mark.parametrize("field, value", [("resolution", 0), ("resolution", -5),
                                          ("width_coefficient", 0.0), ("dropout_rate", 1.0),
                                          ("activation", "gelu")])
def test_bad_architecture_fields_refused(field, value):
  with pytest.raises(ValueError, match=f"{field}={value!r} is invalid"):
    named("efficientnet-b0").replace(**{field: value})


def test_load_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    Architecture.load(str(tmp_path / "nope.json"))


@pytest.mark.parametrize("filters, width, expected", [
    (32, 1.0, 32), (32, 1.1, 32), (32, 1.2, 40), (16, 1.4, 24), (1280, 1.1, 1408),
    (1280, 2.0, 2560), (320, 1.8, 576), (40, 0.25, 16), (24, 0.25, 8), (112, 1.4, 160),
    (192, 1.6, 304)])
def test_round_filters_reference_values(filters, width, expected):
  assert round_filters(filters, width) == expected


@pytest.mark.parametrize("repeats, depth, expected", [(1, 1.0, 1), (2, 1.1, 3), (4, 3.1, 13),
                                                      (3, 1.8, 6), (1, 2.2, 3)])
def test_round_repeats(repeats, depth, expected):
  assert round_repeats(repeats, depth) == expected


def test_expand_blocks_b0():
  blocks = named("efficientnet-b0").expand_blocks()
  assert len(blocks) == 16
  assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
  # Later repeats take the stage's output filters as input and have stride 1.
  assert (blocks[2].input_filters, blocks[2].output_filters) == (24, 24)
  assert [b.has_skip for b in blocks].count(True) == 9
  assert blocks[0].drop_rate == 0.0 and blocks[-1].drop_rate == pytest.approx(0.2 * 15 / 16)
  assert blocks[1].se_filters == 4 and blocks[1].expanded_filters == 96


def test_identity_ignores_only_the_name():
  b0 = named("efficientnet-b0")
  assert b0.replace(name="other").identity() == b0.identity()
  assert b0.replace(resolution=240).identity() != b0.identity()
  assert json.loads(b0.identity())["blocks"] == list(b0.block_strings)


def test_stage_filters_must_chain():
  with pytest.raises(ValueError, match=r"block 1 'r1_k3_s11_e1_i8_o8': input filters i8 do not match "
                                       r"the stem's stem_filters = 32; allowed: i32"):
    Architecture(blocks=("r1_k3_s11_e1_i8_o8",))
  with pytest.raises(ValueError, match=r"block 2 'r1_k3_s22_e6_i24_o40': input filters i24 do not match "
                                       r"block 1's output \(o16\) = 16"):
    Architecture(blocks=("r1_k3_s11_e1_i32_o16", "r1_k3_s22_e6_i24_o40"))


def test_network_identity_is_what_the_builder_builds():
  from search_space import named, scale
  b0 = named("efficientnet-b0")
  wide = b0.replace(blocks=(b0.blocks[0].__class__(**{**b0.blocks[0].__dict__, "output_filters": 20}),
                            b0.blocks[1].__class__(**{**b0.blocks[1].__dict__, "input_filters": 20}),
                            *b0.blocks[2:]))
  assert wide.identity() != b0.identity()
  # 16 and 20 filters both round to 8 at width 0.25, not at width 1.
  assert scale(wide, width=0.25).network_identity() == scale(b0, width=0.25).network_identity()
  assert wide.network_identity() != b0.network_identity()
  assert b0.replace(name="x", resolution=32).network_identity() == b0.network_identity()
  # noskip where no skip is possible (the stride-2 first block of stage 2) builds the same network.
  stage2 = b0.blocks[1]
  assert stage2.stride == 2 and stage2.repeats == 2
  one = b0.replace(blocks=(b0.blocks[0], stage2.__class__(**{**stage2.__dict__, "repeats": 1}),
                           *b0.blocks[2:]))
  noskip = one.replace(blocks=(one.blocks[0], one.blocks[1].__class__(
      **{**one.blocks[1].__dict__, "id_skip": False}), *one.blocks[2:]))
  assert noskip.identity() != one.identity() and noskip.network_identity() == one.network_identity()
  assert b0.replace(activation="relu").network_identity() != b0.network_identity()
