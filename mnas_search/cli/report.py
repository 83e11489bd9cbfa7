"""`launch.py report`: the plots and summary.md of a search directory."""

from __future__ import annotations

from absl import flags

from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_search_dir(fv)
  common.define_out(fv)
  flags.DEFINE_string("family_dir", None, "A folder written by `scale` to plot as well.",
                      flag_values=fv)


def run(fv: flags.FlagValues) -> None:
  """Writes the plots and summary.md of a search directory."""
  from mnas_search.analysis import report
  search_dir = common.require(fv, "search_dir",
                              "--search_dir=DIR is required: the search to report on")
  written = report.write_report(search_dir, fv.out, fv.family_dir)
  for kind, path in written.items():
    print(f"{kind:<15} {path}")
