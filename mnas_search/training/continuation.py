"""Training a child in stretches, so that a multi-fidelity schedule can continue it.

A successive-halving search trains a child to budget b, scores it, and may later train it on to a
larger budget. It continues; it does not restart. What carries over between stretches:
- every model variable: weights, batch-norm statistics and the dropout / drop-connect seed
  generators' state;
- the optimizer's state: its slots (momentum, RMSProp's mean squares) and its step count, which is
  also the learning-rate schedule's position. The schedule runs over the child's final budget
  (`Span.total`), so a stretch sees the same rates as the same steps of an uninterrupted run;
- the data order: the training stream is one repeated, seeded shuffle, and a continued stretch
  skips the batches already seen, so the order is a function of (seed, step).

Continuing to 3b from a checkpoint at b thus gives the weights that training to 3b in one go
gives (tests/test_continuation.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
from absl import logging

from nas_common import FieldError


@dataclasses.dataclass(frozen=True)
class Span:
  """One stretch of a child's training, in budget units (epochs, or steps when the task has steps).

  Attributes:
    start: units trained before this stretch (0: from scratch).
    stop: train up to this many units.
    total: the child's final budget; the learning-rate schedule runs over it.
    resume_from: the checkpoint written at `start` (by the stretch before). When it is missing
      (deleted, or a fresh machine) the child trains from scratch up to `stop`: slower, same kind
      of score.
    save_to: where to write the checkpoint at `stop`; None writes none.
  """

  start: int
  stop: int
  total: int
  resume_from: str | None = None
  save_to: str | None = None

  def __post_init__(self):
    for name in ("start", "stop", "total"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int):
        raise FieldError(f"span.{name}", v, "an integer")
    if not 0 <= self.start < self.stop <= self.total:
      raise FieldError("span", (self.start, self.stop, self.total), "0 <= start < stop <= total")


@dataclasses.dataclass(frozen=True)
class Stretch:
  """A span in optimizer steps, as the training loop runs it."""

  start: int
  stop: int
  total: int
  resume_from: str | None = None
  save_to: str | None = None
  whole: bool = False  # the task's own run (no span): its epochs or steps, nothing restored or saved


def stretch_of(span: Span | None, total_steps: int, unit_steps: int) -> Stretch:
  """The steps a span covers (`unit_steps` per budget unit); the whole run when `span` is None."""
  if span is None:
    return Stretch(0, total_steps, total_steps, whole=True)
  start = span.start * unit_steps
  if start and not (span.resume_from and os.path.isfile(span.resume_from)):
    # A cached repeat that was promoted, or a resume on another machine: slower, the same kind of score.
    logging.info("no checkpoint at %r: training from scratch to budget %d", span.resume_from, span.stop)
    start = 0
  return Stretch(start, span.stop * unit_steps, span.total * unit_steps,
                 span.resume_from if start else None, span.save_to)


def save_state(path: str, variables: Sequence[Any]) -> None:
  """Writes the variables' values to `path` (.npz), atomically: a crash leaves the old file or none."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez(f, *[np.asarray(v.numpy()) for v in variables])
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def load_state(path: str, variables: Sequence[Any]) -> None:
  """Assigns the values `save_state` wrote to `path` to `variables` (same order and shapes).

  Raises:
    ValueError: the checkpoint holds another network's state.
  """
  with np.load(path) as data:
    values = [data[f"arr_{i}"] for i in range(len(data.files))]
  shapes = [tuple(v.shape) for v in variables]
  if len(values) != len(variables) or any(a.shape != s for a, s in zip(values, shapes)):
    raise ValueError(f"{path!r} holds the state of another network ({len(values)} variables, "
                     f"{len(variables)} expected); delete it to train from scratch")
  for var, value in zip(variables, values):
    var.assign(value)


def discard(paths: Sequence[str]) -> None:
  """Deletes checkpoints that no stretch will continue from (missing ones are fine)."""
  for path in paths:
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
