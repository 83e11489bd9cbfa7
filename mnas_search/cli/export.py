"""`launch.py export`: the top-k (or Pareto) trials of a search, or one architecture, as model files."""

from __future__ import annotations

import os

from absl import flags

from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_search_dir(fv)
  common.define_out(fv)
  common.define_arch(fv)
  flags.DEFINE_integer("top_k", 1, "How many distinct architectures, best reward first.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_bool("pareto", False, "The whole Pareto front instead of the top k.", flag_values=fv)
  flags.DEFINE_list("formats", ["json", "keras", "savedmodel", "tflite"],
                    "Any of json, keras, savedmodel, tflite.", flag_values=fv)
  flags.DEFINE_string("weights", None, "A trained .keras model of the same architecture.",
                      flag_values=fv)
  flags.DEFINE_integer("export_resolution", None,
                       "Input resolution (default: the weights', else the arch's own).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("export_num_classes", None, "Classifier outputs (default: the weights', "
                       "else the search's params.json num_classes, else 1000).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("export_channels", None, "Input channels (default: the weights', else 3).",
                       lower_bound=1, flag_values=fv)


def run(fv: flags.FlagValues) -> None:
  """Exports the top-k (or Pareto) trials of a search, or one architecture, to model files."""
  from mnas_search.analysis import export
  out = common.require(fv, "out", "--out=DIR is required: where the exported models go")
  options = export.ExportOptions(fv.formats, fv.export_resolution, fv.export_num_classes,
                                 fv.export_channels, fv.weights)
  if fv.search_dir:
    if fv.arch or fv.blocks:
      other = "arch" if fv.arch else "blocks"
      raise ValueError(f"--search_dir={fv.search_dir} was given with --{other}; allowed: one of them "
                       "(a search's trials, or one architecture)")
    entries = export.export_search(fv.search_dir, out, top_k=fv.top_k, use_pareto=fv.pareto,
                                   options=options)
  else:
    if fv.pareto or fv["top_k"].present:
      raise ValueError("--top_k and --pareto select trials of a search; give --search_dir=DIR")
    entries = export.export_architecture(common.arch_from_flags(fv), out, options,
                                         source=fv.arch or "--blocks")
  print(export.format_index(entries))
  print(f"wrote {os.path.join(out, 'index.json')}")
