"""Scaled families of a baseline: the paper's B0–B7 table or the compound rule, with their costs.

The scaling math lives in `search_space.scaling` (`paper_family`,
`compound_family`); this module adds the costs, the FLOPs ratio to the
baseline, and the files: one architecture JSON per member plus `family.json`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Sequence

import search_space
from mnas_search.util import fileio
from nas_common import FieldError, FieldNotFoundError
from search_space import Architecture

FAMILIES = ("paper", "compound")
DEFAULT_PHIS = (1, 2, 3, 4, 5, 6, 7)
RESOLUTION_ROUNDING = ("round(base_resolution * gamma**phi / 8) * 8: the nearest multiple of 8, "
                       "at least 8")
METRICS_KEYS = ("test_accuracy", "accuracy", "val_accuracy")


@dataclasses.dataclass(frozen=True)
class Member:
  """One scaled network and its costs.

  Attributes:
    arch: the scaled architecture.
    phi: the compound coefficient (the paper's Bφ index for the paper family; 0 is the baseline).
    params: all parameters, BN moving statistics included.
    trainable_params: parameters without the BN moving statistics.
    flops: multiply-adds at the member's resolution.
    flops_ratio: flops over the baseline's flops at its own resolution.
  """

  arch: Architecture
  phi: float
  params: int
  trainable_params: int
  flops: int
  flops_ratio: float

  def row(self) -> dict[str, Any]:
    a = self.arch
    return {"name": a.name, "file": f"{a.name}.json", "phi": self.phi,
            "width": a.width_coefficient, "depth": a.depth_coefficient,
            "resolution": a.resolution, "dropout": a.dropout_rate, "params": self.params,
            "trainable_params": self.trainable_params, "flops": self.flops,
            "flops_ratio": self.flops_ratio}


def parse_phis(values: Sequence[Any]) -> tuple[float, ...]:
  """φ values from numbers or strings ("1", "1.5"); each must be > 0."""
  out = []
  for v in values:
    try:
      phi = float(v)
    except (TypeError, ValueError):
      phi = math.nan
    if isinstance(v, bool) or not math.isfinite(phi) or phi <= 0:
      raise FieldError("phi", v, "numbers > 0, e.g. 1,2,3")
    out.append(int(phi) if phi.is_integer() else phi)
  if not out:
    raise FieldError("phi", [], "one or more numbers > 0, e.g. 1,2,3", reason="is empty",
                     message="phi is empty; allowed: one or more numbers > 0, e.g. 1,2,3")
  return tuple(out)


def load_coefficients(path: str) -> tuple[float, float, float]:
  """(alpha, beta, gamma) from a JSON object with those keys (at the top or under "best").

  Raises:
    FieldError: naming `coefficients`, the path: it is missing, not JSON, or lacks valid
      coefficients (FieldNotFoundError for a missing file).
  """
  allowed = "a JSON object with alpha, beta and gamma (e.g. the coefficients.json of grid)"
  try:
    data = fileio.read_json(path)
  except FileNotFoundError:
    raise FieldNotFoundError("coefficients", path, allowed, reason="does not exist") from None
  except ValueError as e:
    raise FieldError("coefficients", path, allowed, reason=f": {e}") from None
  if isinstance(data, dict) and "alpha" not in data and isinstance(data.get("best"), dict):
    data = data["best"]
  if not isinstance(data, dict) or any(k not in data for k in ("alpha", "beta", "gamma")):
    raise FieldError("coefficients", path, "", reason="must hold an object with keys alpha, beta "
                     f"and gamma, got {str(data)[:200]!r}")
  coefficients = tuple(data[k] for k in ("alpha", "beta", "gamma"))
  try:
    search_space.check_coefficients(*coefficients)
  except ValueError as e:
    raise FieldError("coefficients", path, "", reason=f": {e}") from None
  return coefficients


def _member(arch: Architecture, phi: float, base_flops: int, num_classes: int) -> Member:
  flops = search_space.count_flops(arch, arch.resolution, num_classes)
  return Member(arch=arch, phi=phi, params=search_space.count_params(arch, num_classes),
                trainable_params=search_space.count_trainable_params(arch, num_classes),
                flops=flops, flops_ratio=round(flops / base_flops, 4))


def scale_family(baseline: Architecture, family: str = "paper",
                 phis: Sequence[float] | None = None, alpha: float = search_space.PAPER_ALPHA,
                 beta: float = search_space.PAPER_BETA, gamma: float = search_space.PAPER_GAMMA,
                 num_classes: int = 1000) -> list[Member]:
  """The members of a family, each with its costs.

  Args:
    baseline: the network to scale.
    family: "paper" (the published B0–B7 multipliers; b0 is φ=0) or "compound"
      (d=α^φ, w=β^φ, r=round8(res₀·γ^φ) for each φ, after the baseline itself as φ=0).
    phis: the φ values of the compound family (default 1–7); not allowed with "paper".
    alpha, beta, gamma: the compound coefficients, each >= 1.
    num_classes: classifier outputs counted in params and FLOPs.

  Returns:
    The members, smallest φ first.
  """
  if family not in FAMILIES:
    raise FieldError("family", family, str(list(FAMILIES)))
  base_flops = search_space.count_flops(baseline, baseline.resolution, num_classes)
  if family == "paper":
    if phis is not None:
      raise FieldError("phi", list(phis), "None (the paper family is the fixed B0–B7 table)",
                       reason="applies to family='compound' only")
    return [_member(a, i, base_flops, num_classes)
            for i, a in enumerate(search_space.paper_family(baseline))]
  phis = parse_phis(DEFAULT_PHIS if phis is None else phis)
  search_space.check_coefficients(alpha, beta, gamma)
  scaled = search_space.compound_family(baseline, phis, alpha, beta, gamma)
  return [_member(baseline, 0, base_flops, num_classes)] + [
      _member(a, phi, base_flops, num_classes) for a, phi in zip(scaled, phis)]


def family_record(baseline: Architecture, members: Sequence[Member], family: str,
                  coefficients: tuple[float, float, float] | None, num_classes: int,
                  coefficients_source: str | None = None) -> dict[str, Any]:
  """The content of family.json."""
  record: dict[str, Any] = {"family": family, "baseline": baseline.to_dict(),
                            "num_classes": num_classes,
                            "flops": "multiply-adds at each member's resolution"}
  if family == "compound":
    alpha, beta, gamma = coefficients
    record.update({"alpha": alpha, "beta": beta, "gamma": gamma,
                   "coefficients_source": coefficients_source or "flags",
                   "rule": "depth = alpha**phi, width = beta**phi, resolution = base * gamma**phi",
                   "resolution_rounding": RESOLUTION_ROUNDING})
  else:
    record["rule"] = "the EfficientNet paper's B0-B7 (width, depth, resolution, dropout) table"
  record["metrics"] = "NAME/metrics.json (written by `launch.py train --out=DIR/NAME`)"
  record["members"] = [m.row() for m in members]
  return record


def write_family(out_dir: str, record: dict[str, Any], members: Sequence[Member]) -> None:
  """Writes one architecture JSON per member and family.json into `out_dir`."""
  for m in members:
    fileio.atomic_write_json(os.path.join(out_dir, f"{m.arch.name}.json"), m.arch.to_dict())
  fileio.atomic_write_json(os.path.join(out_dir, "family.json"), record)


def read_family(family_dir: str) -> dict[str, Any]:
  """family.json of a folder written by `scale`, each member with `accuracy` from NAME/metrics.json.

  A member without metrics.json gets accuracy None.

  Raises:
    FieldNotFoundError: (naming `family_dir`) the folder has no family.json.
  """
  path = os.path.join(family_dir, "family.json")
  if not os.path.isfile(path):
    raise FieldNotFoundError("family_dir", family_dir, "a folder written by `launch.py scale`",
                             reason="has no family.json")
  record = fileio.read_json(path)
  members = record.get("members") if isinstance(record, dict) else None
  if not isinstance(members, list) or not members or not all(
      isinstance(m, dict) and {"name", "phi", "flops", "flops_ratio"} <= set(m) for m in members):
    raise ValueError(f"{path!r} is malformed: expected an object with a 'members' list of objects "
                     "with name, phi, flops and flops_ratio")
  for m in members:
    m["accuracy"] = _member_accuracy(os.path.join(family_dir, m["name"], "metrics.json"))
  return record


def _member_accuracy(path: str) -> float | None:
  if not os.path.isfile(path):
    return None
  metrics = fileio.read_json(path)
  for key in METRICS_KEYS:
    v = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
      return float(v)
  raise ValueError(f"{path!r} has none of the keys {list(METRICS_KEYS)} with a number")


def format_family(record: dict[str, Any]) -> str:
  """The printed table: member, φ, width, depth, resolution, dropout, params, FLOPs, ratio, 2^φ."""
  lines = [f"{record['family']} family of {record['baseline']['name']}"
           + (f" (alpha={record['alpha']:g}, beta={record['beta']:g}, gamma={record['gamma']:g}; "
              "resolution rounded to a multiple of 8)" if record["family"] == "compound" else ""),
           f"{'member':<22} {'phi':>4} {'width':>7} {'depth':>7} {'res':>5} {'dropout':>7} "
           f"{'params':>12} {'FLOPs':>16} {'ratio':>8} {'2^phi':>7}"]
  for m in record["members"]:
    lines.append(f"{m['name']:<22} {m['phi']:>4g} {m['width']:>7.4g} {m['depth']:>7.4g} "
                 f"{m['resolution']:>5} {m['dropout']:>7.2f} {m['params']:>12,} {m['flops']:>16,} "
                 f"{m['flops_ratio']:>8.3f} {2 ** m['phi']:>7.3f}")
  return "\n".join(lines)
