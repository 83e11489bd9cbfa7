"""Crash-safe file writes: atomic replace for snapshots, append-and-flush for logs.

Every file in a search directory is written through here, so that a search
killed at any instant leaves each file either in its old or its new state.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterator


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically: a temp file in the same folder, fsync, rename.

  Raises:
    OSError: with `filename` set to `path` (ENOSPC, EACCES, ...); `path` is then as it was and
      the temp file is gone.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  try:
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
  except OSError as e:
    raise _naming(e, path) from e
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):
      raise _naming(e, path) from e
    raise


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str) -> Any:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path!r} does not exist")
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path!r} is not valid JSON: {e}") from None


def append_jsonl(path: str, record: dict[str, Any]) -> None:
  """Appends one JSON line and flushes it to disk before returning.

  A write that fails part-way (a full disk) is taken back: the file is cut to its old length, so
  that no torn line is left for the next append to run into.

  Raises:
    OSError: with `filename` set to `path` (ENOSPC, EACCES, ...).
  """
  data = (json.dumps(record, sort_keys=False) + "\n").encode()
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
  except OSError as e:
    raise _naming(e, path) from e
  try:
    start = os.fstat(fd).st_size
    try:
      view = memoryview(data)
      while view:  # os.write may write less than asked, e.g. up to the last free byte
        view = view[os.write(fd, view):]
      os.fsync(fd)
    except OSError as e:
      os.ftruncate(fd, start)
      raise _naming(e, path) from e
  finally:
    os.close(fd)


def _naming(e: OSError, path: str) -> OSError:
  """`e` with `path` as its filename (a failed write or flush names no file)."""
  if e.filename == path:
    return e
  return OSError(e.errno, e.strerror, path)  # PermissionError for EACCES, ... as OSError picks


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """Reads a JSON-lines file; a torn last line (a crash mid-append) is ignored."""
  return list(iter_jsonl(path))


def iter_jsonl(path: str) -> Iterator[dict[str, Any]]:
  if not os.path.isfile(path):
    return
  with open(path) as f:
    lines = f.read().split("\n")
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      yield json.loads(line)
    except json.JSONDecodeError:
      if i >= len(lines) - 2:  # only the last line can be torn by a crash
        return
      raise ValueError(f"{path!r} line {i + 1} is not valid JSON: {line[:200]!r}") from None


def repair_jsonl(path: str) -> int:
  """Truncates a torn last line left by a crash mid-append; returns the bytes removed.

  Called before appending to a log that may have been cut short, so that the
  next record starts on a line of its own.
  """
  if not os.path.isfile(path):
    return 0
  with open(path, "rb+") as f:
    data = f.read()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
      return 0
    f.truncate(keep)
    f.flush()
    os.fsync(f.fileno())
    return len(data) - keep
