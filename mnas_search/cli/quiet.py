"""A quiet start-up: TensorFlow's C++ start-up lines obey TF_CPP_MIN_LOG_LEVEL.

TensorFlow's libraries log through C++ absl before anything has read
TF_CPP_MIN_LOG_LEVEL: importing TF prints "All log messages before
absl::InitializeLog() ..." and the oneDNN and CUDA-stub lines, once per library
that carries absl. `install()` runs the first `import tensorflow` with file
descriptor 2 sent to a temporary file, then writes back every captured line
except those start-up log lines whose severity the level hides. Python warnings
and anything else printed during the import pass through. The level is chosen by
`set_log_level` from --verbosity unless the user set TF_CPP_MIN_LOG_LEVEL.

This module imports nothing heavy: it must run before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Iterator

import controller

LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"
# Hides TF's C++ INFO, WARNING and ERROR lines (start-up noise such as "failed call to cuInit" on a
# machine without a GPU driver); errors that matter reach Python as exceptions.
QUIET_LEVEL = "3"
_USER_LEVEL = os.environ.get(LEVEL_VAR)  # the user's own choice wins
_PRE_INIT_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# An absl/glog line: severity letter, MMDD, time, thread id, file:line].
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def set_log_level(verbosity: int) -> None:
  """Sets TF_CPP_MIN_LOG_LEVEL for --verbosity (unless the user set it): all of TF's lines at
  debug (>= 1), none otherwise. Call it before TensorFlow is imported; worker processes inherit it."""
  if _USER_LEVEL is None:
    os.environ[LEVEL_VAR] = "0" if verbosity >= 1 else QUIET_LEVEL


def is_hidden(line: str, level: int) -> bool:
  """Whether `line`, printed by TF's C++ logging, is below `level` (TF_CPP_MIN_LOG_LEVEL's scale)."""
  if line.startswith(_PRE_INIT_BANNER):
    return level >= 1
  m = _LOG_LINE.match(line)
  return bool(m) and _SEVERITY[m.group(1)] < level


def _level() -> int:
  try:
    return int(os.environ.get(LEVEL_VAR, "0"))
  except ValueError:
    return 0


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
  """Sends file descriptor 2 to a temporary file; on exit writes back the lines not hidden."""
  level = _level()
  if level <= 0:
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):  # no usable fd 2 (e.g. closed): nothing to filter
    yield
    return
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode(errors="replace")
      kept = "".join(line for line in text.splitlines(keepends=True) if not is_hidden(line, level))
      if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
  """Runs the first import of `tensorflow` inside `filtered_stderr`."""

  def find_spec(self, fullname, path, target=None):
    del path, target
    if fullname != "tensorflow":
      return None
    sys.meta_path.remove(self)  # once; the finders after it find the real module
    spec = importlib.util.find_spec(fullname)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
      return spec
    exec_module = spec.loader.exec_module

    def quiet_exec_module(module):
      with filtered_stderr():
        exec_module(module)

    spec.loader.exec_module = quiet_exec_module
    return spec


def install() -> None:
  """Makes the first `import tensorflow` quiet; a no-op once TensorFlow is imported."""
  controller.use_legacy_keras()  # tf-agents needs it before tf.keras is first touched
  os.environ.setdefault(LEVEL_VAR, _USER_LEVEL or QUIET_LEVEL)
  if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietImport())
