"""The search directory: every file a search writes, and the only code that writes them.

Layout (DESIGN.md §3):
  params.json      every setting, written once; a resume with conflicting settings is refused
  trials.jsonl     one JSON object per finished trial, appended and flushed
  updates.jsonl    one JSON object per controller update, appended and flushed
  controller/      controller checkpoint after every update (the controller writes it atomically)
  tb/              TensorBoard events
  best.json        the best trial so far, written atomically
  references.json  reference networks scored on the same proxy, written atomically
  pareto.json      the non-dominated trials, written atomically
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from absl import logging

from mnas_search import fileio

TRIAL_STATUSES = ("ok", "failed", "timeout", "cached")
PARAMS_VERSION = 1


class SearchStore:
  """Reads and writes one search directory.

  Args:
    directory: the search directory (created if missing).
  """

  def __init__(self, directory: str):
    if not directory:
      raise ValueError("--search_dir is required; allowed: a folder path (created if missing)")
    if os.path.exists(directory) and not os.path.isdir(directory):
      raise ValueError(f"--search_dir={directory!r} exists and is not a folder")
    self.directory = directory
    os.makedirs(directory, exist_ok=True)

  def path(self, *parts: str) -> str:
    return os.path.join(self.directory, *parts)

  @property
  def controller_dir(self) -> str:
    return self.path("controller")

  @property
  def tb_dir(self) -> str:
    return self.path("tb")

  # --------------------------------------------------------------------------- params
  def read_params(self) -> dict[str, Any] | None:
    path = self.path("params.json")
    return fileio.read_json(path) if os.path.isfile(path) else None

  def write_or_check_params(self, params: Mapping[str, Any], may_change: Iterable[str]) -> bool:
    """Writes params.json on the first run; on a resume, refuses conflicting settings.

    Args:
      params: every setting of the search (JSON-able).
      may_change: settings a resume may change (e.g. trials, workers); they are
        updated in params.json.

    Returns:
      True when this is a resume (params.json already existed).

    Raises:
      ValueError: naming each conflicting setting with its stored and given values.
    """
    params = dict(params, params_version=PARAMS_VERSION)
    old = self.read_params()
    if old is None:
      fileio.atomic_write_json(self.path("params.json"), params)
      return False
    may_change = set(may_change)
    conflicts = [f"--{k}: stored {old.get(k)!r}, given {params.get(k)!r}"
                 for k in sorted(set(old) | set(params))
                 if k not in may_change and old.get(k) != params.get(k)]
    if conflicts:
      raise ValueError(
          f"{self.directory!r} holds a run with other settings; a resume must use the same ones "
          "(or write to a new folder). Conflicts: " + "; ".join(conflicts))
    if any(old.get(k) != params.get(k) for k in may_change):
      fileio.atomic_write_json(self.path("params.json"), params)
    return True

  # --------------------------------------------------------------------------- trials
  def read_trials(self) -> list[dict[str, Any]]:
    return fileio.read_jsonl(self.path("trials.jsonl"))

  def repair(self) -> None:
    """Drops a torn last line of the logs left by a crash mid-append."""
    for name in ("trials.jsonl", "updates.jsonl"):
      removed = fileio.repair_jsonl(self.path(name))
      if removed:
        logging.warning("%s: dropped a torn last line (%d bytes) left by a crash", name, removed)

  def append_trial(self, record: Mapping[str, Any]) -> None:
    if record.get("status") not in TRIAL_STATUSES:
      raise ValueError(f"trial status {record.get('status')!r} is invalid; allowed: {TRIAL_STATUSES}")
    fileio.append_jsonl(self.path("trials.jsonl"), dict(record))

  def read_updates(self) -> list[dict[str, Any]]:
    return fileio.read_jsonl(self.path("updates.jsonl"))

  def append_update(self, record: Mapping[str, Any]) -> None:
    fileio.append_jsonl(self.path("updates.jsonl"), dict(record))

  # --------------------------------------------------------------------------- snapshots
  def read_best(self) -> dict[str, Any] | None:
    path = self.path("best.json")
    return fileio.read_json(path) if os.path.isfile(path) else None

  def write_best(self, record: Mapping[str, Any]) -> None:
    fileio.atomic_write_json(self.path("best.json"), dict(record))

  def read_references(self) -> dict[str, Any]:
    path = self.path("references.json")
    return fileio.read_json(path) if os.path.isfile(path) else {}

  def write_references(self, references: Mapping[str, Any]) -> None:
    fileio.atomic_write_json(self.path("references.json"), dict(references))


def resolve_arch(spec: str):
  """An architecture from a name, an architecture JSON, or a search directory (its best trial).

  Args:
    spec: `efficientnet-b0` (any `search_space.NAMED`), `path/arch.json`, or a search
      directory holding best.json.

  Returns:
    The `search_space.Architecture`.
  """
  import search_space
  if spec and os.path.isdir(spec):
    best = SearchStore(spec).read_best()
    if best is None:
      raise FileNotFoundError(f"{spec!r} is a folder without best.json; allowed: a search directory "
                              "with at least one finished trial, an architecture JSON or a name")
    return search_space.Architecture.from_dict(best["arch"]).replace(
        name=f"{os.path.basename(os.path.normpath(spec))}-best")
  return search_space.resolve_arch(spec)
