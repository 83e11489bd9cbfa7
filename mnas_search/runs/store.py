"""The search directory: a `RunDir` of kind "search", with its files by name.

Layout (the whole contract is in docs/ARCHITECTURE.md, "Run directories"):
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

from typing import Any, Mapping

from mnas_search.runs import records
from mnas_search.runs.records import STATUSES
from mnas_search.runs.rundir import PARAMS_VERSION, RunDir  # noqa: F401  (PARAMS_VERSION re-exported)

TRIALS, UPDATES = "trials.jsonl", "updates.jsonl"


class SearchStore(RunDir):
  """Reads and writes one search directory.

  Args:
    directory: the search directory (created if missing).
  """

  def __init__(self, directory: str):
    super().__init__(directory, "search")

  @property
  def controller_dir(self) -> str:
    return self.path("controller")

  @property
  def tb_dir(self) -> str:
    return self.path("tb")

  def repair(self, *logs: str) -> None:
    """Drops a torn last line of the logs (trials.jsonl and updates.jsonl by default)."""
    super().repair(*(logs or (TRIALS, UPDATES)))

  def read_trials(self, rungs: bool = False) -> list[dict[str, Any]]:
    """The stored trials (`records.read_trials`): each child's final record, or with `rungs` all."""
    return records.read_trials(self.directory, missing_ok=True, rungs=rungs)

  def append_trial(self, record: Mapping[str, Any]) -> None:
    if record.get("status") not in STATUSES:
      raise ValueError(f"trial status {record.get('status')!r} is invalid; allowed: {STATUSES}")
    self.append(TRIALS, record)

  def read_updates(self) -> list[dict[str, Any]]:
    return self.read_log(UPDATES)

  def append_update(self, record: Mapping[str, Any]) -> None:
    self.append(UPDATES, record)

  def read_best(self) -> dict[str, Any] | None:
    return self.read_json("best.json")

  def write_best(self, record: Mapping[str, Any]) -> None:
    self.write_json("best.json", dict(record))

  def read_references(self) -> dict[str, Any]:
    return self.read_json("references.json", {})

  def write_references(self, references: Mapping[str, Any]) -> None:
    self.write_json("references.json", dict(references))
