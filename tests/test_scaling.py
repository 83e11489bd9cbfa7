"""Tests for search_space.scaling: the B0–B7 table, compound scaling and named networks."""

import pytest

from search_space import (
  PAPER_FAMILY,
  compound_family,
  compound_member,
  named,
  paper_family,
  round_resolution,
  scale,
)

# The named B0-B7 against keras.applications' trainable parameters: one copy, in
# tests/test_family.py (B3-B7 there are marked slow).


def test_paper_table_exact():
  rows = [(m.name, m.width, m.depth, m.resolution, m.dropout) for m in PAPER_FAMILY]
  assert rows == [("b0", 1.0, 1.0, 224, 0.2), ("b1", 1.0, 1.1, 240, 0.2), ("b2", 1.1, 1.2, 260, 0.3),
                  ("b3", 1.2, 1.4, 300, 0.3), ("b4", 1.4, 1.8, 380, 0.4), ("b5", 1.6, 2.2, 456, 0.4),
                  ("b6", 1.8, 2.6, 528, 0.5), ("b7", 2.0, 3.1, 600, 0.5)]


def test_paper_family_of_b0_equals_named():
  fam = paper_family(named("efficientnet-b0"))
  assert [a.name for a in fam] == [f"efficientnet-b{i}" for i in range(8)]
  assert fam == [named(f"efficientnet-b{i}") for i in range(8)]


def test_compound_member_exact():
  m = compound_member(2, 1.2, 1.1, 1.15)
  assert (m.depth, m.width, m.resolution, m.dropout) == (1.44, 1.21, 296, 0.3)
  m1 = compound_member(1)
  assert (m1.depth, m1.width, m1.resolution, m1.dropout) == (1.2, 1.1, 256, 0.2)
  assert [compound_member(p).dropout for p in range(1, 8)] == [0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]


def test_compound_family_flops_grow_about_two_to_the_phi():
  from search_space import count_flops
  b0 = named("efficientnet-b0")
  fam = compound_family(b0, phis=(1, 2, 3))
  ratios = [count_flops(a) / count_flops(b0) for a in fam]
  for phi, r in zip((1, 2, 3), ratios):
    assert 0.75 * 2 ** phi < r < 1.35 * 2 ** phi


def test_round_resolution():
  assert [round_resolution(r) for r in (224 * 1.15, 255.9, 3.0, 260)] == [256, 256, 8, 264]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"phi": 0}, "phi=0 is invalid"), ({"phi": -1}, "phi=-1 is invalid"),
    ({"phi": 1, "alpha": 0.9}, "alpha=0.9 is invalid; allowed: a number >= 1.0"),
    ({"phi": 1, "gamma": 0.5}, "gamma=0.5 is invalid")])
def test_compound_bad_input(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment):
    compound_member(**kwargs)


def test_scale_multiplies_coefficients():
  a = scale(named("efficientnet-b2"), width=1.1, depth=2.0, resolution=128, dropout=0.1, name="x")
  assert (a.width_coefficient, a.depth_coefficient, a.resolution, a.dropout_rate, a.name) == (
      1.21, 2.4, 128, 0.1, "x")
  with pytest.raises(ValueError, match="width=0 is invalid"):
    scale(named("efficientnet-b0"), width=0)


def test_named_unknown():
  with pytest.raises(ValueError, match="unknown architecture name 'efficientnet-b9'"):
    named("efficientnet-b9")
