"""The one resumable loop: jobs -> backend -> one appended record per finished child.

`run_resumable` appends each record to a log the moment its child finishes, so a run killed at
any instant resumes by skipping what the log holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from mnas_search.execution import backends as backends_lib
from mnas_search.runs.rundir import RunDir
from mnas_search.util import interrupt

# Where and how jobs run: a resume may change these, because they change no score.
EXECUTION_FIELDS = ("backend", "workers", "backend_requested", "threads_per_worker", "ray_address",
                    "ray_allow_insecure", "cpus_per_trial", "gpus_per_trial", "strategy", "tpu")


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """Where and how a run's children train, and who hears of each record; none of it changes a score.

  Attributes:
    backend: where children train (`backends.make_backend`); inline when None.
    strategy, tpu: the tf.distribute strategy of each child (see `strategy.make_strategy`).
    show_progress: draw a progress bar on stderr.
    on_record: called with each record as it is stored.
  """

  backend: Any = None
  strategy: str = "auto"
  tpu: str | None = None
  show_progress: bool = False
  on_record: Callable[[Mapping[str, Any]], None] | None = None


def run_resumable(rundir: RunDir, log: str, jobs: Sequence[Any],
                  to_record: Callable[[Any, Any], Mapping[str, Any]], backend=None,
                  on_record: Callable[[Mapping[str, Any]], None] | None = None,
                  progress=None) -> None:
  """Trains `jobs` on `backend`, appending each record to `log` the moment its child finishes.

  Search, grid and fidelity share this loop; which jobs are left (what the log does not hold yet)
  is the caller's plan.

  Args:
    rundir: the run directory.
    log: the log's file name in it (trials.jsonl, grid.jsonl, fidelity.jsonl).
    jobs: the `backends.Job`s to train.
    to_record: (job, TrialResult) -> the JSON-able record.
    backend: where; inline when None (a backend made here is closed here).
    on_record: called with each record once it is stored.
    progress: advanced once per record, after `on_record`.
  """
  if not jobs:
    return
  owned = backend is None
  backend = backend or backends_lib.make_backend("inline")
  try:
    for job, result in backend.run(jobs):
      with interrupt.deferred():  # a stop signal waits until the record and its effects are stored
        rec = to_record(job, result)
        rundir.append(log, rec)
        if on_record:
          on_record(rec)
        if progress is not None:
          progress.advance()
  except BaseException:
    if owned:
      backend.abort()
    raise
  if owned:
    backend.close()
