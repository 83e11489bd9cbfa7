"""The command line, one module per command: `python launch.py COMMAND --flag=value ...`.

Each command module defines the flags it takes (`define_flags(fv)`) and its body (`run(fv)`);
the flag groups that several commands share (proxy task, backend, cost, ...) and the table from
library fields to flags live in `common`. `launch.py` only dispatches. Importing a command module
imports no TensorFlow: a command imports what it needs when it runs, after its flags parsed.
"""

import importlib
from types import ModuleType

COMMANDS = ("describe", "evaluate", "search", "export", "scale", "report", "latency", "grid",
            "train", "fidelity")


def command_module(name: str) -> ModuleType:
  """The module of command `name` (one of COMMANDS)."""
  if name not in COMMANDS:
    raise ValueError(f"unknown command {name!r}; allowed: {', '.join(COMMANDS)}")
  return importlib.import_module(f"mnas_search.cli.{name}")
