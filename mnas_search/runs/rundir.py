"""A run directory (search, grid, fidelity or train): lock, params, logs and snapshots.

`RunDir` owns what every run directory shares (see docs/ARCHITECTURE.md, "Run directories"):
  params.json   every setting, written once; a resume with conflicting settings is refused
  *.jsonl       logs, one JSON object per line, appended and flushed; a torn last line (a crash
                mid-append) is dropped by `repair`
  *.json        snapshots, written atomically
  .lock         held (fcntl.flock) by the process that runs in the directory, see `lock`
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from typing import Any, Iterable, Iterator, Mapping

from absl import logging

from mnas_search.util import fileio
from nas_common import FieldError

PARAMS_VERSION = 1
LOCK_FILE = ".lock"
# The argument that names each kind of directory (in messages; the CLI maps it to its flag).
DIR_FIELDS = {"search": "search_dir", "grid": "out", "fidelity": "out", "train": "out",
              "experiment": "out"}  # experiment: a benchmark's own folder of logs


# What a message about a corrupted file tells the user to do (the file is never overwritten).
CORRUPT_HINT = ("nothing was overwritten; restore the file (e.g. from a backup), or start a new "
                "directory (a search: with --warm_start_from=THIS_DIR)")


def corrupted(path: str, e: Exception) -> ValueError:
  """The error for a run directory's file that cannot be read back: the file, where, what to do."""
  text = str(e)
  return ValueError(f"{text if path in text else f'{path!r}: {text}'}; {CORRUPT_HINT}")


class DirectoryLockedError(RuntimeError):
  """Another process holds the run directory's lock; `holder` is what it wrote (pid, host)."""

  def __init__(self, directory: str, holder: str):
    super().__init__(f"{directory!r} is in use by another process ({holder or 'holder unknown'}); "
                     "allowed: one process per run directory (wait for it, or stop it)")
    self.directory = directory
    self.holder = holder


def read_params(directory: str) -> dict[str, Any]:
  """directory/params.json as a dict; {} when the file is absent."""
  path = os.path.join(directory, "params.json")
  if not os.path.isfile(path):
    return {}
  try:
    params = fileio.read_json(path)
  except ValueError as e:
    raise corrupted(path, e) from None
  if not isinstance(params, dict):
    raise corrupted(path, ValueError(f"must hold a JSON object, got {type(params).__name__}"))
  return params


class RunDir:
  """One run directory: params check, JSON-lines logs, atomic snapshots and the lock.

  Args:
    directory: the folder (created if missing).
    kind: search, grid, fidelity or train; messages name the directory by its argument
      (`DIR_FIELDS`).
  """

  def __init__(self, directory: str, kind: str = "search"):
    if kind not in DIR_FIELDS:
      raise FieldError("kind", kind, ", ".join(DIR_FIELDS))
    field = DIR_FIELDS[kind]
    if not directory:
      raise FieldError(field, directory, "a folder path (created if missing)",
                       reason=f"is required for a {kind}",
                       message=f"{field} is required for a {kind}; allowed: a folder path "
                       "(created if missing)")
    if os.path.exists(directory) and not os.path.isdir(directory):
      raise FieldError(field, directory, "a folder path (created if missing)",
                       reason="exists and is not a folder")
    self.directory = directory
    self.kind = kind
    self._lock_fd: int | None = None
    os.makedirs(directory, exist_ok=True)

  def path(self, *parts: str) -> str:
    return os.path.join(self.directory, *parts)

  # --------------------------------------------------------------------------- params
  def read_params(self) -> dict[str, Any] | None:
    return read_params(self.directory) if os.path.isfile(self.path("params.json")) else None

  def write_or_check_params(self, params: Mapping[str, Any], may_change: Iterable[str]) -> bool:
    """Writes params.json on the first run; on a resume, refuses conflicting settings.

    Args:
      params: every setting of the run.
      may_change: settings a resume may change (params.json is rewritten with the new values).

    Returns:
      True when the directory already held a run (a resume).

    Raises:
      FieldError: (naming the directory's field, `DIR_FIELDS`) a setting outside `may_change`
        differs; every conflict is listed.
    """
    params, may_change = dict(params, params_version=PARAMS_VERSION), tuple(may_change)
    old = self.check_params(params, may_change)
    if old is None:
      fileio.atomic_write_json(self.path("params.json"), params)
      return False
    if any(old.get(k) != params.get(k) for k in may_change):
      fileio.atomic_write_json(self.path("params.json"), params)
    return True

  def check_params(self, params: Mapping[str, Any], may_change: Iterable[str]) -> dict | None:
    """The stored params.json (None when absent), writing nothing; raises as
    `write_or_check_params` does on a conflict."""
    params = dict(params, params_version=PARAMS_VERSION)
    old = self.read_params()
    if old is None:
      return None
    may_change = set(may_change)
    conflicts = [f"--{k}: stored {old.get(k)!r}, given {params.get(k)!r}"
                 for k in sorted(set(old) | set(params))
                 if k not in may_change and old.get(k) != params.get(k)]
    if conflicts:
      raise FieldError(
          DIR_FIELDS[self.kind], self.directory, "",
          reason=f"holds a {self.kind} with other settings; a resume must use the same ones (or "
          "write to a new folder). Conflicts: " + "; ".join(conflicts))
    return old

  # --------------------------------------------------------------------------- logs and snapshots
  def repair(self, *logs: str) -> None:
    """Drops a torn last line of each log (a crash mid-append)."""
    for name in logs:
      removed = fileio.repair_jsonl(self.path(name))
      if removed:
        logging.warning("%s: dropped a torn last line (%d bytes) left by a crash",
                        self.path(name), removed)

  def read_log(self, name: str) -> list[dict[str, Any]]:
    try:
      return fileio.read_jsonl(self.path(name))
    except ValueError as e:
      raise corrupted(self.path(name), e) from None

  def append(self, name: str, record: Mapping[str, Any]) -> None:
    fileio.append_jsonl(self.path(name), dict(record))

  def read_json(self, name: str, default: Any = None) -> Any:
    path = self.path(name)
    return fileio.read_json(path) if os.path.isfile(path) else default

  def write_json(self, name: str, obj: Any) -> str:
    path = self.path(name)
    fileio.atomic_write_json(path, obj)
    return path

  # --------------------------------------------------------------------------- the lock
  def acquire(self) -> None:
    """Takes the directory's exclusive lock (DIR/.lock) or raises DirectoryLockedError.

    The lock is an fcntl.flock, so the kernel releases it when the process dies (a SIGKILL
    included); the file keeps the holder's PID and host for the message.
    """
    if self._lock_fd is not None:
      return
    fd = os.open(self.path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
      os.close(fd)
      raise DirectoryLockedError(self.directory, holder) from None
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    except OSError as e:  # a full disk: the lock holds all the same; the message lacks the holder
      logging.debug("%s: cannot write the holder (%s)", self.path(LOCK_FILE), e)
    self._lock_fd = fd

  def release(self) -> None:
    if self._lock_fd is not None:
      fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
      os.close(self._lock_fd)
      self._lock_fd = None

  @contextlib.contextmanager
  def lock(self) -> Iterator["RunDir"]:
    """`with rundir.lock():` holds the directory's lock for the block."""
    self.acquire()
    try:
      yield self
    finally:
      self.release()
