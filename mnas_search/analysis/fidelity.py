"""Proxy fidelity: does the proxy task rank architectures as longer training does?

K distinct architectures of a finished search are retrained with a longer schedule: the top,
the middle and the bottom of the search's successful trials by proxy reward. Kendall's τ and
Spearman's ρ between their proxy accuracy and their longer-training accuracy say how much the
search's ranking can be trusted.

The longer schedule is the search's own ProxyTask (params.json "task") with more epochs (and
images, or any other field, as the caller overrides). Its timeout is dropped unless set again:
the proxy's per-child limit would cut the longer runs short. Each trial retrains with its own seed
from the search, so the schedule is the only difference; both accuracies are measured on the
same validation split (carved from the training set; the test split stays unseen).

The output directory (search_dir/fidelity by default):
  params.json      the search, the longer task and K; a resume with other settings is refused
  fidelity.jsonl   one JSON object per retrained trial, appended and flushed (resume skips them)
  fidelity.json    the selection, both accuracies and the correlations (written atomically)
  fidelity.png     proxy accuracy vs longer-training accuracy
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Sequence

from absl import logging

from mnas_search.execution import backends as backends_lib
from mnas_search.execution.resumable import EXECUTION_FIELDS, RunOptions, run_resumable
from mnas_search.runs import records as records_lib
from mnas_search.runs.records import FidelityRecord
from mnas_search.runs.rundir import RunDir, read_params
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import figures, stats
from mnas_search.util.progress import Progress
from nas_common import FieldError
from search_space import Architecture

GROUPS = ("top", "middle", "bottom")
LOG = "fidelity.jsonl"
EPOCHS_FACTOR = 4  # the default longer schedule: this many times the search's epochs (or steps)


# ----------------------------------------------------------------------------- selection (pure)
def distinct_ok_trials(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Trials with status ok, one per architecture (its best reward), best reward first.

  Ties in reward go to the lower trial number. Cached repeats are left out: they are the same
  architecture as a trained trial.
  """
  return records_lib.distinct_by_reward(records, ("ok",))


def group_sizes(k: int) -> tuple[int, int, int]:
  """(top, middle, bottom) counts of a sample of k: as even as can be, extras to top then middle."""
  return (k + 2) // 3, (k + 1) // 3, k // 3


def select_trials(records: Sequence[dict[str, Any]], k: int) -> list[tuple[str, dict[str, Any]]]:
  """The top, middle and bottom of the distinct successful trials by proxy reward.

  With n distinct trials ranked best first and k split as `group_sizes(k)`: the top group is ranks
  [0, t), the bottom group the last b ranks, and the middle group m consecutive ranks centred on
  the middle of the ranking (shifted, where needed, so that it overlaps neither). When k >= n,
  every trial is selected.

  Args:
    records: trials.jsonl records.
    k: how many to select (>= 2).

  Returns:
    (group, record) pairs, best reward first.

  Raises:
    ValueError: k < 2, or fewer than 2 distinct successful trials.
  """
  if isinstance(k, bool) or not isinstance(k, int) or k < 2:
    raise FieldError("sample", k, "an integer >= 2 (a rank correlation needs at least 2 "
                     "architectures)")
  ranked = distinct_ok_trials(records)
  n = len(ranked)
  if n < 2:
    raise ValueError(f"the search has {n} distinct trial(s) with status ok; allowed: at least 2 "
                     "to compare rankings")
  if k >= n:
    t, m, b = group_sizes(n)
  else:
    t, m, b = group_sizes(k)
  middle_start = max(t, min((n - m) // 2, n - b - m))
  groups = ["top"] * t + ["middle"] * m + ["bottom"] * b
  indices = list(range(t)) + list(range(middle_start, middle_start + m)) + list(range(n - b, n))
  return [(g, ranked[i]) for g, i in zip(groups, indices)]


def longer_task(task: ProxyTask, epochs: int | None = None, train_images: int | None = None,
                **overrides: Any) -> ProxyTask:
  """The search's task with a longer schedule.

  Args:
    task: the search's proxy task.
    epochs: epochs of the longer schedule; None: EPOCHS_FACTOR times the search's (its steps
      times EPOCHS_FACTOR when the search counted steps).
    train_images: training images; None keeps the search's.
    **overrides: any other ProxyTask field. timeout_s is None unless given here.

  Returns:
    The longer task.
  """
  changes: dict[str, Any] = {"timeout_s": None}
  if epochs is not None:
    changes.update(epochs=epochs, steps=None)
  elif task.steps is not None:
    changes["steps"] = task.steps * EPOCHS_FACTOR
  else:
    changes["epochs"] = task.epochs * EPOCHS_FACTOR
  if train_images is not None:
    changes["train_images"] = train_images
  changes.update(overrides)
  return task.replace(**changes)


def correlations(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Kendall's τ-b and Spearman's ρ between proxy and longer accuracy of the ok records."""
  ok = [r for r in records if r["status"] == "ok"]
  out: dict[str, Any] = {"n": len(ok), "kendall_tau": None, "spearman_rho": None}
  if len(ok) >= 2:
    x, y = [r["proxy_accuracy"] for r in ok], [r["accuracy"] for r in ok]
    for key, fn in (("kendall_tau", stats.kendall_tau), ("spearman_rho", stats.spearman)):
      v = fn(x, y)
      out[key] = None if math.isnan(v) else round(v, 6)  # NaN (a constant side) is not JSON
  return out


# ----------------------------------------------------------------------------- the run
@dataclasses.dataclass(frozen=True)
class FidelityConfig:
  """What a fidelity check retrains; written to params.json.

  Attributes:
    sample: K, how many distinct architectures.
    task: the longer schedule (see `longer_task`).
    deterministic: TF op determinism for each child.
  """

  sample: int
  task: ProxyTask
  deterministic: bool = False

  def to_params(self, search_dir: str) -> dict[str, Any]:
    return {"search_dir": os.path.abspath(search_dir), "sample": self.sample,
            "task": self.task.to_dict(), "deterministic": self.deterministic}


def read_search(search_dir: str) -> tuple[list[dict[str, Any]], ProxyTask]:
  """The search's trials and its proxy task (params.json "task").

  Raises:
    FieldError: (naming `search_dir`) no trials.jsonl, no task in params.json, or fewer than 2
      distinct ok trials to rank.
  """
  records = records_lib.read_trials(search_dir)
  params = read_params(search_dir)
  if not isinstance(params.get("task"), dict):
    raise FieldError("search_dir", search_dir, "a search directory written by `launch.py search`",
                     reason=f": {os.path.join(search_dir, 'params.json')!r} has no 'task' object")
  n = len(distinct_ok_trials(records))
  if n < 2:  # as select_trials, but naming the directory
    raise FieldError("search_dir", search_dir, "at least 2 to compare rankings",
                     reason=f"has {n} distinct trial(s) with status ok")
  return records, ProxyTask.from_dict(params["task"])


def run_fidelity(search_dir: str, config: FidelityConfig, out_dir: str | None = None,
                 options: RunOptions | None = None) -> dict[str, Any]:
  """Retrains the selected trials with the longer task (or resumes) and writes the results.

  Args:
    search_dir: a search directory (trials.jsonl, params.json).
    config: K and the longer task.
    out_dir: where to write; search_dir/fidelity when None.
    options: where and how children train (inline when None); `on_record` hears of each
      stored record.

  Returns:
    The content of fidelity.json, plus "files" (what was written) and "trained" (this run).
  """
  started = time.perf_counter()
  records, search_task = read_search(search_dir)
  selected = select_trials(records, config.sample)
  rundir = RunDir(out_dir or os.path.join(search_dir, "fidelity"), "fidelity")
  with rundir.lock():  # one process per directory
    summary = _run_fidelity(search_dir, config, rundir, (records, search_task, selected),
                            options or RunOptions())
  summary["wall_seconds"] = time.perf_counter() - started
  return summary


def _run_fidelity(search_dir: str, config: FidelityConfig, rundir: RunDir, search: tuple,
                  options: RunOptions) -> dict[str, Any]:
  records, search_task, selected = search  # read before the lock: bad input creates no directory
  rundir.write_or_check_params(config.to_params(search_dir), EXECUTION_FIELDS)
  rundir.repair(LOG)
  done = {r["trial"]: FidelityRecord.from_json(r, f"{rundir.path(LOG)} record {i + 1}").to_json()
          for i, r in enumerate(rundir.read_log(LOG))}
  chosen = {r["trial"]: (g, r) for g, r in selected}
  jobs = [backends_lib.Job(trial=r["trial"], arch=Architecture.from_dict(r["arch"]),
                           task=config.task, seed=int(r["seed"]),
                           deterministic=config.deterministic, strategy=options.strategy,
                           tpu=options.tpu)
          for _, r in selected if r["trial"] not in done]
  logging.info("fidelity: %d trials selected, %d already retrained, %d to train", len(selected),
               len(selected) - len(jobs), len(jobs))
  progress = Progress(total=len(selected), done=len(selected) - len(jobs), enabled=options.show_progress,
                      label="retrained trials", every=1)

  def to_record(job, result):
    group, r = chosen[job.trial]
    return FidelityRecord.from_result(r, group, job.seed, result).to_json()

  def stored(rec):
    done[rec["trial"]] = rec
    if options.on_record:
      options.on_record(rec)

  run_resumable(rundir, LOG, jobs, to_record, options.backend, stored, progress)
  progress.close()
  # The group of the current selection (a search extended since may have moved a trial).
  rows = [dict(done[r["trial"]], group=g) for g, r in selected]
  summary = _summary(search_dir, config, records, search_task, rows)
  files = {"params": rundir.path("params.json"), "records": rundir.path(LOG),
           "summary": rundir.path("fidelity.json"),
           "plot": plot_fidelity(rows, summary, rundir.path("fidelity.png"))}
  rundir.write_json("fidelity.json", summary)
  summary.update(files=files, trained=len(jobs))
  return summary


def _summary(search_dir: str, config: FidelityConfig, records: Sequence[dict[str, Any]],
             search_task: ProxyTask, rows: list[dict[str, Any]]) -> dict[str, Any]:
  """The content of fidelity.json."""
  return {"search_dir": os.path.abspath(search_dir), "sample": config.sample,
          "selected": len(rows), "distinct_ok_trials": len(distinct_ok_trials(records)),
          "proxy_task": search_task.to_dict(),
          "long_task": config.task.to_dict(), **correlations(rows),
          "accuracy": "validation accuracy on the split carved from the training set",
          "trials": rows}


def plot_fidelity(rows: Sequence[dict[str, Any]], summary: dict[str, Any], path: str) -> str:
  """Scatter of proxy accuracy (x) against longer-training accuracy (y), one colour per group."""
  plt, fig, ax = figures.figure()
  colors = {"top": "tab:green", "middle": "tab:blue", "bottom": "tab:red"}
  for group in GROUPS:
    rs = [r for r in rows if r["group"] == group and r["status"] == "ok"]
    if rs:
      ax.scatter([100 * r["proxy_accuracy"] for r in rs], [100 * r["accuracy"] for r in rs], s=40,
                 color=colors[group], label=f"{group} by proxy reward ({len(rs)})")
  for r in rows:
    if r["status"] == "ok":
      ax.annotate(str(r["trial"]), (100 * r["proxy_accuracy"], 100 * r["accuracy"]),
                  textcoords="offset points", xytext=(4, 4), fontsize=8)
  failed = sum(r["status"] != "ok" for r in rows)
  fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
  long_task = summary["long_task"]
  schedule = (f"{long_task['steps']} steps" if long_task.get("steps")
              else f"{long_task['epochs']} epochs")
  ax.set_xlabel("Proxy validation accuracy (%), from the search")
  ax.set_ylabel(f"Validation accuracy after longer training (%), {schedule}")
  ax.set_title(f"Proxy fidelity: Kendall τ = {fmt(summary['kendall_tau'])}, Spearman ρ = "
               f"{fmt(summary['spearman_rho'])} (n = {summary['n']}"
               f"{f', {failed} failed' if failed else ''})")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right")
  return figures.save_figure(plt, fig, path)
