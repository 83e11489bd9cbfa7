"""Fault injection for the crash tests, in one place.

Production code marks the points where a machine may die (`kill_point`) or a step may go bad
(`poisoned`). Nothing happens unless a test arms one point through `FAULTS_ENV`, which only this
module reads; `env_for` spells the value, so a test can arm a point in a child process it starts.
"""

from __future__ import annotations

import os
import signal

FAULTS_ENV = "MNAS_FAULT"
KILL_POINTS = ("child_trained", "controller_updated", "checkpoint_saved", "oneshot_step",
               "oneshot_checkpoint_saved", "train_epoch_done")
POISON_POINTS = ("train_step",)
_passes: dict[str, int] = {}


def env_for(point: str, n: int = 1) -> dict[str, str]:
  """The environment entry that arms `point` at its n-th pass (or at value n, see `kill_point`)."""
  if point not in KILL_POINTS + POISON_POINTS:
    raise ValueError(f"fault point {point!r} is unknown; allowed: {list(KILL_POINTS + POISON_POINTS)}")
  return {FAULTS_ENV: f"{point}:{n}"}


def _armed(point: str) -> int | None:
  target, _, n = os.environ.get(FAULTS_ENV, "").partition(":")
  return int(n or 1) if target == point else None


def kill_point(point: str, at: int | None = None) -> None:
  """SIGKILLs this process when `point` is armed: at its n-th pass, or when `at` equals n.

  A real SIGKILL, not an exception: nothing gets to clean up, exactly as when a machine dies.
  """
  n = _armed(point)
  if n is None:
    return
  if at is None:
    _passes[point] = at = _passes.get(point, 0) + 1
  if at == n:
    os.kill(os.getpid(), signal.SIGKILL)


def poisoned(point: str, at: int) -> bool:
  """True when `point` is armed for value `at` (e.g. the step whose weights a test turns to NaN)."""
  return _armed(point) == at
