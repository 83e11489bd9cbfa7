"""The project's one atomic file writer: temp file in the same folder, fsync, rename, fsync folder.

A process killed at any instant leaves the file either in its old or its new state, and the rename
itself survives a power loss (the folder is fsynced). Temp files start with `TMP_PREFIX`, so that a
folder's owner can sweep the leftovers of a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str) -> None:
  """Flushes a folder's entries (a rename or a new file in it) to disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def naming(e: OSError, path: str) -> OSError:
  """`e` with `path` as its filename: a failed write or flush names no file, and the user's
  one-line error must say which file the disk refused."""
  if e.filename == path or e.errno is None:  # no errno: not the system refusing a file
    return e
  return OSError(e.errno, e.strerror, path)  # PermissionError for EACCES, ... as OSError picks


def atomic_write_text(path: str, data: str | bytes) -> None:
  """Writes `data` (text, or bytes written as they are) to `path` atomically.

  Raises:
    OSError: with `filename` set to `path` (ENOSPC, EACCES, ...); `path` is then as it was and
      the temp file is gone.
  """
  folder = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(path)}.", dir=folder)
  except OSError as e:
    raise naming(e, path) from e
  try:
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):
      raise naming(e, path) from e
    raise
  fsync_dir(folder)


def atomic_write_json(path: str, obj: Any, indent: int | None = 2) -> None:
  """JSON of `obj` written atomically; indent=2 plus a newline, or one compact line (indent=None)."""
  text = json.dumps(obj, indent=indent) + "\n" if indent is not None else json.dumps(obj)
  atomic_write_text(path, text)
