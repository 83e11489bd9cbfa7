"""The command line: `python launch.py COMMAND --flag=value ...`.

Commands: describe, evaluate, search, export, scale, grid, train, report.
This file only parses and validates flags and prints results; the logic lives
in the packages, where a library user can call it directly.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf-agents (the PPO controller) needs legacy Keras as tf.keras; this must precede any TF import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app, flags, logging  # noqa: E402

import search_space  # noqa: E402
from search_space import Architecture  # noqa: E402

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- shared flags
flags.DEFINE_string("arch", None, "Architecture: a name (efficientnet-b0 … b7, mnasnet-a1, "
                    "mobilenet-v2) or the path of an architecture JSON.")
flags.DEFINE_list("blocks", None, "Comma-separated TF reference block strings (instead of --arch).")
flags.DEFINE_enum("activation", "swish", list(search_space.ACTIVATIONS), "Activation with --blocks.")
flags.DEFINE_float("width_coefficient", 1.0, "Width coefficient with --blocks.")
flags.DEFINE_float("depth_coefficient", 1.0, "Depth coefficient with --blocks.")
flags.DEFINE_integer("resolution", None, "Input resolution (the architecture's own by default).")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs used for params and FLOPs.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")


def arch_from_flags() -> Architecture:
  """The architecture named by --arch or given by --blocks."""
  if FLAGS.blocks and FLAGS.arch:
    raise ValueError("give either --arch or --blocks, not both")
  if FLAGS.blocks:
    return Architecture(blocks=search_space.parse_blocks(FLAGS.blocks), name="custom",
                        activation=FLAGS.activation, width_coefficient=FLAGS.width_coefficient,
                        depth_coefficient=FLAGS.depth_coefficient)
  if not FLAGS.arch:
    raise ValueError("--arch (a name or a JSON path) or --blocks is required; names: "
                         + ", ".join(sorted(search_space.NAMED)))
  try:
    return search_space.resolve_arch(FLAGS.arch)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"--arch={FLAGS.arch}: {e}") from None


def check_positive(flag: str, value, allow_none: bool = True) -> None:
  if value is None and allow_none:
    return
  if value is None or value <= 0:
    raise ValueError(f"--{flag}={value} is invalid; allowed: a number > 0")


def print_json(obj) -> None:
  print(json.dumps(obj, indent=None, sort_keys=False))


# ----------------------------------------------------------------------------- describe
def describe_dict(arch: Architecture, resolution: int, num_classes: int) -> dict:
  return {"name": arch.name, "blocks": arch.block_strings,
          "width_coefficient": arch.width_coefficient, "depth_coefficient": arch.depth_coefficient,
          "resolution": resolution,
          "params": search_space.count_params(arch, num_classes),
          "trainable_params": search_space.count_trainable_params(arch, num_classes),
          "flops": search_space.count_flops(arch, resolution, num_classes)}


def cmd_describe(argv) -> None:
  """Prints an architecture's blocks, parameters and multiply-adds."""
  del argv
  arch = arch_from_flags()
  check_positive("resolution", FLAGS.resolution)
  check_positive("num_classes", FLAGS.num_classes, allow_none=False)
  res = FLAGS.resolution or arch.resolution
  d = describe_dict(arch, res, FLAGS.num_classes)
  if FLAGS.json:
    print_json(d)
    return
  print(f"{d['name']}  (width {d['width_coefficient']:g}, depth {d['depth_coefficient']:g}, "
        f"resolution {res}, activation {arch.activation})")
  print(f"{'stage':>5}  {'block':<34} {'repeats':>7}")
  for i, b in enumerate(arch.blocks):
    print(f"{i + 1:>5}  {b.to_string():<34} "
          f"{search_space.round_repeats(b.repeats, arch.depth_coefficient):>7}")
  print(f"params           {d['params']:>14,}")
  print(f"trainable params {d['trainable_params']:>14,}")
  print(f"FLOPs (mult-add) {d['flops']:>14,}  ({d['flops'] / 1e9:.3f}B at {res}x{res}, "
        f"{FLAGS.num_classes} classes)")


# ----------------------------------------------------------------------------- commands
COMMANDS = {
    "describe": cmd_describe,
}


def main(argv) -> None:
  if len(argv) < 2 or argv[1] not in COMMANDS:
    given = argv[1] if len(argv) > 1 else "(none)"
    print(f"error: unknown command {given!r}; allowed: {', '.join(COMMANDS)}\n"
          f"usage: python launch.py COMMAND --flag=value ... (--helpfull lists the flags)",
          file=sys.stderr)
    sys.exit(2)
  try:
    COMMANDS[argv[1]](argv[2:])
  except (ValueError, FileNotFoundError) as e:
    # Library errors name the bad value and what is allowed; show them without a traceback.
    logging.debug("error", exc_info=True)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def run_main() -> None:
  app.run(main)


if __name__ == "__main__":
  run_main()
