"""A clean stop on SIGINT and SIGTERM: the run ends at the next safe point, with its files whole.

`handlers()` (the CLI's run path) turns the first SIGINT or SIGTERM into a `Stopped` exception.
Outside a `deferred()` section it is raised at once (wherever the main thread is: training a child,
waiting for workers); inside one (a record being stored, the controller being updated and
checkpointed) it is raised when the section ends, so a record and what follows from it are
written together. The backends' `__exit__` then kill their workers (`Backend.abort`). A second
signal exits at once; the files stay consistent because every write is atomic or an fsynced
append, and a resume skips what the logs hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
  """The run was stopped by a signal. A BaseException, as KeyboardInterrupt: `except Exception`
  (a child's failure becomes a failed trial) must not swallow it.

  Attributes:
    signum: the signal.
    where: what was done when it stopped (e.g. "trial 12"), set by whoever knows.
  """

  def __init__(self, signum: int):
    super().__init__(f"stopped by signal {signum}")
    self.signum = signum
    self.where: str | None = None

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


_requested: int | None = None  # the first signal, while handlers() is active
_depth = 0  # nesting of deferred() sections


def _handle(signum, frame) -> None:
  global _requested
  if _requested is not None:  # the second signal: exit at once
    os._exit(128 + signum)
  _requested = signum
  if _depth == 0:
    raise Stopped(signum)


@contextlib.contextmanager
def handlers() -> Iterator[None]:
  """Installs the SIGINT/SIGTERM handlers for the block (main thread only), then restores the old."""
  global _requested
  old = {s: signal.signal(s, _handle) for s in SIGNALS}
  _requested = None
  try:
    yield
  finally:
    for s, h in old.items():
      signal.signal(s, h)
    

def requested() -> int | None:
  """The signal that asked for a stop, or None."""
  return _requested


def check() -> None:
  """Raises Stopped when a stop was asked for (a safe point)."""
  if _requested is not None and _depth == 0:
    raise Stopped(_requested)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """A section that a stop does not cut: a signal that arrives inside is raised at its end."""
  global _depth
  _depth += 1
  try:
    yield
  finally:
    _depth -= 1
  check()


def ignore_in_worker() -> None:
  """Worker processes ignore SIGINT: Ctrl-C signals the whole process group, and the parent
  stops them itself (without a traceback from each)."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def exit_with_parent(poll_s: float = 1.0) -> None:
  """Ends this worker process soon after the process that started it dies.

  A search killed with SIGKILL (or by a dying machine's OOM killer) sends its workers nothing;
  they would sit on their task pipe forever, each holding a TF runtime's memory. A daemon thread
  polls the parent pid (a portable stand-in for Linux's PR_SET_PDEATHSIG, which fires on the
  death of the spawning *thread*) and exits when the worker has been re-parented.
  """
  parent = os.getppid()

  def watch() -> None:
    while True:
      time.sleep(poll_s)
      if os.getppid() != parent:
        os._exit(1)

  threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
