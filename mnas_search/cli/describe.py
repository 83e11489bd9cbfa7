"""`launch.py describe`: an architecture's blocks, parameters and multiply-adds."""

from __future__ import annotations

from absl import flags

import search_space
from mnas_search.cli import common
from search_space import Architecture


def define_flags(fv: flags.FlagValues) -> None:
  common.define_arch(fv)
  flags.DEFINE_integer("resolution", None, "Input resolution (the architecture's own by default).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_enum("stem_stride", "2", ["1", "2"], "The stem's stride: 2 as in the reference, 1 "
                    "in the small-image geometry that --proxy_stem_stride=1 trains with.",
                    flag_values=fv)
  common.define_num_classes(fv)
  common.define_json(fv)


def describe_dict(arch: Architecture, resolution: int, num_classes: int, stem_stride: int = 2) -> dict:
  """describe's JSON; "stem_stride" appears only for the small-image geometry (1), so that the
  reference geometry's output is what it always was."""
  d = {"name": arch.name, "blocks": arch.block_strings,
       "width_coefficient": arch.width_coefficient, "depth_coefficient": arch.depth_coefficient,
       "resolution": resolution, "params": search_space.count_params(arch, num_classes),
       "trainable_params": search_space.count_trainable_params(arch, num_classes),
       "flops": search_space.count_flops(arch, resolution, num_classes, stem_stride=stem_stride)}
  if stem_stride != 2:
    d["stem_stride"] = stem_stride
  return d


def run(fv: flags.FlagValues) -> None:
  """Prints an architecture's blocks, parameters and multiply-adds."""
  arch = common.arch_from_flags(fv)
  res = fv.resolution or arch.resolution
  d = describe_dict(arch, res, fv.num_classes, int(fv.stem_stride))
  if fv.json:
    common.print_json(d)
    return
  print(f"{d['name']}  (width {d['width_coefficient']:g}, depth {d['depth_coefficient']:g}, "
        f"resolution {res}, activation {arch.activation}"
        + (", stem stride 1: the small-image geometry)" if d.get("stem_stride") == 1 else ")"))
  print(f"{'stage':>5}  {'block':<34} {'repeats':>7}")
  for i, b in enumerate(arch.blocks):
    print(f"{i + 1:>5}  {b.to_string():<34} "
          f"{search_space.round_repeats(b.repeats, arch.depth_coefficient):>7}")
  print(f"params           {d['params']:>14,}")
  print(f"trainable params {d['trainable_params']:>14,}")
  print(f"FLOPs (mult-add) {d['flops']:>14,}  ({d['flops'] / 1e9:.3f}B at {res}x{res}, "
        f"{fv.num_classes} classes)")
