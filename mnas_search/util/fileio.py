"""Crash-safe file I/O: atomic replace for snapshots, append-and-flush for logs.

Every file of a run directory is written through here (snapshots through the project's one
atomic writer, `nas_common.atomic`), so that a run killed at any instant leaves each file either
in its old or its new state.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

from nas_common.atomic import atomic_write_json, atomic_write_text, naming  # noqa: F401  (re-exported)


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
    raise naming(e, path) from e
  try:
    start = os.fstat(fd).st_size
    try:
      view = memoryview(data)
      while view:  # os.write may write less than asked, e.g. up to the last free byte
        view = view[os.write(fd, view):]
      os.fsync(fd)
    except OSError as e:
      os.ftruncate(fd, start)
      raise naming(e, path) from e
  finally:
    os.close(fd)


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
