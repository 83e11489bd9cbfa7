"""A small progress bar for long runs: done/total, rate, ETA and the best reward so far."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
  """`3h05m`, `4m12s` or `9s`."""
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  if h:
    return f"{h}h{m:02d}m"
  if m:
    return f"{m}m{s:02d}s"
  return f"{s}s"


class Progress:
  """Redraws one line on stderr when it is a terminal; prints a line every `every` steps otherwise.

  Args:
    total: steps to reach.
    done: steps already done (a resume starts there; the rate counts only new steps).
    enabled: False draws nothing.
    label: what a step is.
    every: on a non-terminal, print one line per this many steps.
  """

  def __init__(self, total: int, done: int = 0, enabled: bool = True, label: str = "trials",
               every: int = 10, stream=None):
    self.total, self.done, self.label = total, done, label
    self.best: float | None = None
    self._start_done = done
    self._t0 = time.monotonic()
    self._stream = stream or sys.stderr
    self._tty = hasattr(self._stream, "isatty") and self._stream.isatty()
    self._enabled = enabled
    self._every = every

  def line(self) -> str:
    new = self.done - self._start_done
    elapsed = time.monotonic() - self._t0
    eta = "?" if new <= 0 else format_seconds(elapsed / new * (self.total - self.done))
    width = 24
    filled = int(width * self.done / self.total) if self.total else width
    best = "-" if self.best is None else f"{self.best:.4f}"
    return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.label}  "
            f"elapsed {format_seconds(elapsed)}  ETA {eta}  best reward {best}")

  def advance(self, n: int = 1) -> None:
    self.done += n
    if not self._enabled:
      return
    if self._tty:
      self._stream.write("\r" + self.line())
      self._stream.flush()
    elif self.done % self._every == 0 or self.done == self.total:
      self._stream.write(self.line() + "\n")
      self._stream.flush()

  def close(self) -> None:
    if self._enabled and self._tty:
      self._stream.write("\n")
      self._stream.flush()
