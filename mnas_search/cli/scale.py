"""`launch.py scale`: a scaled family of a baseline (an arch JSON per member, family.json)."""

from __future__ import annotations

import os

from absl import flags

from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_baseline(fv)
  common.define_out(fv)
  common.define_num_classes(fv)
  flags.DEFINE_string("family", "paper", "paper (the B0–B7 table) or compound (α^φ, β^φ, γ^φ).",
                      flag_values=fv)
  flags.DEFINE_float("alpha", 1.2, "Depth coefficient α of the compound rule.", flag_values=fv)
  flags.DEFINE_float("beta", 1.1, "Width coefficient β of the compound rule.", flag_values=fv)
  flags.DEFINE_float("gamma", 1.15, "Resolution coefficient γ of the compound rule.",
                     flag_values=fv)
  flags.DEFINE_string("coefficients", None,
                      "A JSON file with alpha, beta, gamma (e.g. written by grid).", flag_values=fv)
  flags.DEFINE_list("phi", None, "Compound coefficients φ (default 1,2,3,4,5,6,7).", flag_values=fv)


def run(fv: flags.FlagValues) -> None:
  """Writes a scaled family of a baseline (arch JSON per member, family.json) and prints it."""
  from mnas_search.scaling import family
  baseline = common.arch_flag(fv, "baseline")
  out = common.require(fv, "out", "--out=DIR is required: where the member JSONs and family.json go")
  explicit = [f"--{f}" for f in ("alpha", "beta", "gamma") if fv[f].present]
  if fv.family == "paper" and (explicit or fv.coefficients or fv.phi):
    given = explicit + ["--coefficients"] * bool(fv.coefficients) + ["--phi"] * bool(fv.phi)
    raise ValueError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not taken by "
                     "--family=paper (the fixed B0–B7 table); allowed with --family=compound")
  if fv.coefficients and explicit:
    raise ValueError(f"--coefficients={fv.coefficients} was given with {', '.join(explicit)}; "
                     "allowed: one of them")
  coefficients = (fv.alpha, fv.beta, fv.gamma)
  if fv.coefficients:
    coefficients = family.load_coefficients(fv.coefficients)
  members = family.scale_family(baseline, fv.family, fv.phi, *coefficients,
                                num_classes=fv.num_classes)
  record = family.family_record(baseline, members, fv.family, coefficients, fv.num_classes,
                                coefficients_source=fv.coefficients)
  family.write_family(out, record, members)
  print(family.format_family(record))
  print(f"wrote {len(members)} architecture JSONs and {os.path.join(out, 'family.json')}")
