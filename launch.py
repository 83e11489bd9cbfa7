"""The command line: `python launch.py COMMAND --flag=value ...`.

Commands: describe, evaluate, search, export, scale, report, latency, grid, train, fidelity.
This file only dispatches: each command's flags and body live in `mnas_search/cli/COMMAND.py`,
and the logic in the packages, where a library user can call it directly. A command takes only
its own flags (and absl's, such as --verbosity); `launch.py COMMAND --helpfull` lists them.
"""

from __future__ import annotations

import sys

# Before anything imports TensorFlow: legacy Keras for tf-agents, and TF's C++ start-up lines hidden.
from mnas_search.cli import quiet

quiet.install()

from absl import app, flags, logging

from mnas_search import cli
from mnas_search.cli import common

FLAGS = flags.FLAGS
USAGE = "usage: python launch.py COMMAND --flag=value ... (launch.py COMMAND --helpfull lists its flags)"


def _usage() -> str:
  lines = [USAGE, "commands:"]
  for name in cli.COMMANDS:
    doc = (cli.command_module(name).run.__doc__ or "").strip().splitlines()
    lines.append(f"  {name:<9} {doc[0] if doc else ''}")
  return "\n".join(lines)


def run_command(command: str, argv: list[str], fv: flags.FlagValues = FLAGS) -> None:
  """Defines `command`'s flags in fv, parses argv (argv[0] the program) and runs the command.

  Bad input (an unknown flag or argument, a bad value, a ValueError or FileNotFoundError of the
  library, a run directory locked by another process) ends it with one line on stderr and exit
  status 2. A file the disk refused (ENOSPC, EACCES, ... any OSError with an errno): one line
  naming the file and the errno, exit status 1. SIGINT/SIGTERM stop the run at the next safe
  point: one line, exit status 130/143 (`mnas_search.util.interrupt`).
  """
  module = cli.command_module(command)
  module.define_flags(fv)

  def main(args: list[str]) -> None:
    if len(args) > 1:
      common.fail(f"{command} takes no positional arguments; given: {' '.join(args[1:])}")
    quiet.set_log_level(fv["verbosity"].value if "verbosity" in fv else 0)
    from mnas_search.runs.rundir import DirectoryLockedError
    from mnas_search.util import interrupt
    try:
      with interrupt.handlers():
        module.run(fv)
    except (ValueError, FileNotFoundError, DirectoryLockedError) as e:
      # Library errors name the bad value and what is allowed; show them without a traceback.
      logging.debug("error", exc_info=True)
      common.fail(common.error_line(e, command, fv))
    except OSError as e:
      logging.debug("error", exc_info=True)
      common.fail(common.os_error_line(e), status=1)
    except interrupt.Stopped as e:
      print(f"stopped{' at ' + e.where if e.where else ''}; run the same command to resume",
            file=sys.stderr)
      sys.exit(e.exit_code)

  if fv is FLAGS:
    app.run(main, argv=argv, flags_parser=lambda a: common.parse_flags(command, fv, a))
  else:  # tests: a fresh FlagValues, no absl app
    main(common.parse_flags(command, fv, argv))


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) > 1 and argv[1] in ("-h", "--help", "--helpshort", "--helpfull", "help"):
    print(_usage())
    return
  if len(argv) < 2 or argv[1] not in cli.COMMANDS:
    given = argv[1] if len(argv) > 1 else "(none)"
    print(f"error: unknown command {given!r}; allowed: {', '.join(cli.COMMANDS)}\n{USAGE}",
          file=sys.stderr)
    sys.exit(2)
  run_command(argv[1], [argv[0], *argv[2:]])


def run_main() -> None:
  main()


if __name__ == "__main__":
  run_main()
