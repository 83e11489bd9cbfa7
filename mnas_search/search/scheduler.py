"""Schedulers: which candidates of a batch train, and for how long.

`FullBudget` is the plain schedule: every candidate trains once, on the whole proxy task.
"""

from __future__ import annotations

from typing import Any

from mnas_search.search.executor import Executor
from mnas_search.search.proposer import Candidate
from mnas_search.search.recorder import Recorder


class FullBudget:
  """Every candidate of a batch trains once, on the whole proxy task."""

  name = "none"

  def run(self, executor: Executor, backend: Any, candidates: list[Candidate], update: int,
          recorder: Recorder) -> dict[int, dict[str, Any]]:
    """Trains (or reuses, or caches) the batch; returns its records by trial."""
    batch = executor.plan(candidates, update, recorder.by_trial)
    executor.train(backend, batch, recorder)
    return batch.records
