"""Compound scaling and the named reference networks.

`scale` applies width, depth and resolution to any baseline. `PAPER_FAMILY`
is the published B0–B7 table; `compound_coefficients` is the formula mode
d=α^φ, w=β^φ, r=γ^φ of the EfficientNet paper.
"""

from __future__ import annotations

import dataclasses
import math

from nas_common import FieldError
from search_space.blocks import Architecture, parse_blocks

EFFICIENTNET_B0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25", "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25")
MNASNET_A1_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_noskip", "r2_k3_s22_e6_i16_o24", "r3_k5_s22_e3_i24_o40_se0.25",
    "r4_k3_s22_e6_i40_o80", "r2_k3_s11_e6_i80_o112_se0.25", "r3_k5_s22_e6_i112_o160_se0.25",
    "r1_k3_s11_e6_i160_o320")
MOBILENET_V2_BLOCKS = (
    "r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r3_k3_s22_e6_i24_o32",
    "r4_k3_s22_e6_i32_o64", "r3_k3_s11_e6_i64_o96", "r3_k3_s22_e6_i96_o160",
    "r1_k3_s11_e6_i160_o320")


@dataclasses.dataclass(frozen=True)
class FamilyMember:
  """One row of a scaled family: multipliers relative to the baseline."""

  name: str
  width: float
  depth: float
  resolution: int
  dropout: float


# The EfficientNet paper's table (width, depth, resolution, dropout).
PAPER_FAMILY = (
    FamilyMember("b0", 1.0, 1.0, 224, 0.2), FamilyMember("b1", 1.0, 1.1, 240, 0.2),
    FamilyMember("b2", 1.1, 1.2, 260, 0.3), FamilyMember("b3", 1.2, 1.4, 300, 0.3),
    FamilyMember("b4", 1.4, 1.8, 380, 0.4), FamilyMember("b5", 1.6, 2.2, 456, 0.4),
    FamilyMember("b6", 1.8, 2.6, 528, 0.5), FamilyMember("b7", 2.0, 3.1, 600, 0.5))

PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15


def scale(arch: Architecture, width: float = 1.0, depth: float = 1.0,
          resolution: int | None = None, dropout: float | None = None,
          name: str | None = None) -> Architecture:
  """Scales a baseline.

  Args:
    arch: the baseline.
    width: multiplies the baseline's width coefficient.
    depth: multiplies the baseline's depth coefficient.
    resolution: the new input resolution; the baseline's when None.
    dropout: the new dropout rate; the baseline's when None.
    name: the new name; the baseline's when None.

  Returns:
    The scaled architecture (same base blocks, new global parameters).
  """
  for field, v in (("width", width), ("depth", depth)):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
      raise ValueError(f"{field}={v!r} is invalid; allowed: a number > 0")
  if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
    raise ValueError(f"resolution={resolution!r} is invalid; allowed: an integer >= 1")
  return arch.replace(
      width_coefficient=round(arch.width_coefficient * width, 6),
      depth_coefficient=round(arch.depth_coefficient * depth, 6),
      resolution=arch.resolution if resolution is None else resolution,
      dropout_rate=arch.dropout_rate if dropout is None else dropout,
      name=arch.name if name is None else name)


def paper_family(baseline: Architecture) -> list[Architecture]:
  """The published B0–B7 multipliers applied to any baseline (b0 is the baseline)."""
  stem = baseline.name.rsplit("-b0", 1)[0] if baseline.name.endswith("-b0") else baseline.name
  return [scale(baseline, m.width, m.depth, m.resolution, m.dropout, name=f"{stem}-{m.name}")
          for m in PAPER_FAMILY]


def round_resolution(resolution: float, multiple: int = 8) -> int:
  """Rounds a resolution to the nearest multiple of `multiple` (at least one multiple)."""
  # Half-up, not Python's banker's rounding: 260 -> 264, as a person would round.
  return max(multiple, int(math.floor(resolution / multiple + 0.5)) * multiple)


def check_coefficients(alpha: float, beta: float, gamma: float) -> None:
  for field, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 1.0:
      raise FieldError(field, v, "a number >= 1.0")


def compound_member(phi: float, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
                    gamma: float = PAPER_GAMMA, base_resolution: int = 224) -> FamilyMember:
  """d=α^φ, w=β^φ, r=round8(res₀·γ^φ); dropout 0.2 + 0.1·floor(φ/2), capped at 0.5.

  The dropout rule reproduces the paper's B1–B7 dropout column exactly at integer φ.
  """
  if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not phi > 0:
    raise FieldError("phi", phi, "a number > 0")
  check_coefficients(alpha, beta, gamma)
  return FamilyMember(name=f"phi{phi:g}", width=round(beta ** phi, 6), depth=round(alpha ** phi, 6),
                      resolution=round_resolution(base_resolution * gamma ** phi),
                      dropout=round(min(0.5, 0.2 + 0.1 * math.floor(phi / 2)), 6))


def compound_family(baseline: Architecture, phis=(1, 2, 3, 4, 5, 6, 7),
                    alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
                    gamma: float = PAPER_GAMMA) -> list[Architecture]:
  """The baseline scaled at each φ by the compound rule."""
  out = []
  for phi in phis:
    m = compound_member(phi, alpha, beta, gamma, baseline.resolution)
    out.append(scale(baseline, m.width, m.depth, m.resolution, m.dropout,
                     name=f"{baseline.name}-phi{phi:g}"))
  return out


def _efficientnet(member: FamilyMember) -> Architecture:
  return Architecture(blocks=parse_blocks(EFFICIENTNET_B0_BLOCKS), name=f"efficientnet-{member.name}",
                      width_coefficient=member.width, depth_coefficient=member.depth,
                      resolution=member.resolution, dropout_rate=member.dropout,
                      drop_connect_rate=0.2, activation="swish")


NAMED = {f"efficientnet-{m.name}": (lambda m=m: _efficientnet(m)) for m in PAPER_FAMILY}
NAMED["mnasnet-a1"] = lambda: Architecture(blocks=parse_blocks(MNASNET_A1_BLOCKS), name="mnasnet-a1",
                                           activation="relu", dropout_rate=0.2,
                                           drop_connect_rate=0.0)
NAMED["mobilenet-v2"] = lambda: Architecture(blocks=parse_blocks(MOBILENET_V2_BLOCKS),
                                             name="mobilenet-v2", activation="relu6",
                                             dropout_rate=0.2, drop_connect_rate=0.0)


def named(name: str) -> Architecture:
  """A reference network by name: `efficientnet-b0` … `efficientnet-b7`, `mnasnet-a1`, `mobilenet-v2`."""
  if name not in NAMED:
    raise ValueError(f"unknown architecture name {name!r}; allowed: {sorted(NAMED)}")
  return NAMED[name]()
