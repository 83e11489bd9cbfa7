"""The records of a run directory, typed: one line of trials.jsonl, grid.jsonl or fidelity.jsonl.

Each record is a frozen dataclass whose fields are the JSON keys in the order the files have
always held them. `to_json()` gives that dict (a field never set, such as `latency_ms` of a
search without a latency cost, is left out, as the writers always did), so a record read with
`from_json()` and written again is byte-identical. `from_json()` is the one place a record read
from disk is checked: unknown keys and malformed values raise ValueError naming the file, the
record, the field and the value.

The statuses and "best by reward" live here too, once.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any, Callable, ClassVar, Iterable, Mapping, NamedTuple, Sequence

from mnas_search.runs import rundir
from mnas_search.util import fileio
from nas_common import FieldError, FieldNotFoundError

# A trial's status; training gives the first three, a search adds "cached" for a repeat.
STATUSES = ("ok", "failed", "timeout", "cached")
RESULT_STATUSES = STATUSES[:3]
# Only these carry a measured accuracy (the Pareto front, the best trial, exports).
SCORED_STATUSES = ("ok", "cached")


class _Missing:
  """The value of a field a record does not have (left out of its JSON)."""

  def __repr__(self) -> str:
    return "MISSING"


MISSING: Any = _Missing()


def is_finite_number(v: Any) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def finite_accuracy(value: Any) -> float:
  """A child's accuracy as a float; None, NaN and Inf become 0.0 (NaN is not JSON, and not a score)."""
  accuracy = float(value) if value is not None else 0.0
  return accuracy if math.isfinite(accuracy) else 0.0


def require_number(where: str, record: Mapping[str, Any], key: str, optional: bool = False) -> None:
  """A ValueError naming `where`, the key and the value unless record[key] is a finite number."""
  v = record.get(key)
  if optional and v is None:
    return
  if not is_finite_number(v):
    raise FieldError(key, v, "a finite number or null" if optional else "a finite number",
                     where=where)


@dataclasses.dataclass(frozen=True)
class Record:
  """The JSON mapping shared by every record kind; subclasses declare fields and `check`."""

  KIND: ClassVar[str] = "record"

  def __post_init__(self):
    self.check(self.to_json(), self.KIND)

  @classmethod
  def keys(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def check(cls, d: Mapping[str, Any], where: str) -> None:
    """Raises ValueError naming `where` when `d` is malformed; subclasses add their rules."""

  def to_json(self) -> dict[str, Any]:
    """The JSON object, keys in file order, fields that were never set left out."""
    return {k: getattr(self, k) for k in self.keys() if getattr(self, k) is not MISSING}

  @classmethod
  def from_json(cls, d: Any, where: str | None = None):
    """The record of a JSON object; unknown keys and malformed values are refused, naming them."""
    where = where or cls.KIND
    if not isinstance(d, dict):
      raise ValueError(f"{where}: a {cls.KIND} must be a JSON object, got {d!r}")
    keys = cls.keys()
    for k in d:
      if k not in keys:
        raise FieldError(k, d[k], f"the keys {list(keys)}", where=where,
                         message=f"{where}: unknown key {k!r}; allowed: {list(keys)}")
    cls.check(d, where)
    return cls(**d)

  def replace(self, **changes: Any):
    return dataclasses.replace(self, **changes)


def _field(**kw):
  return dataclasses.field(default=MISSING, **kw)


class Sampled(NamedTuple):
  """A child as the search planned it, before any result: what its records are keyed by."""

  trial: int
  update: int
  arch: Any  # a search_space.Architecture
  indices: Sequence[int] | None  # the controller's decisions; None for a reference network
  seed: int


@dataclasses.dataclass(frozen=True)
class TrialRecord(Record):
  """One line of trials.jsonl (and, without `indices`, one entry of references.json)."""

  KIND: ClassVar[str] = "trial"

  trial: int = _field()
  arch: dict[str, Any] = _field()
  blocks: list[str] = _field()
  indices: list[int] = _field()
  flops: int | None = _field()
  params: int | None = _field()
  accuracy: float | None = _field()
  reward: float = _field()
  status: str = _field()
  error: str | None = _field()
  train_seconds: float = _field()
  images_per_sec: float = _field()
  proxy_flops: int = _field()
  update: int = _field()
  seed: int = _field()
  cached_from: int | None = _field()
  latency_ms: float = _field()
  # Trainer timings (fixed cost and steady-state seconds), when the trainer reports them.
  fixed_seconds: float = _field()
  steady_seconds: float = _field()
  # Multi-fidelity searches: the budget trained so far (epochs, or steps) and its rung; a child
  # has one record per rung it reached, under one trial number.
  budget: int = _field()
  rung: int = _field()

  @classmethod
  def check(cls, d, where):
    trial = d.get("trial")
    if isinstance(trial, bool) or not isinstance(trial, int):
      raise FieldError("trial", trial, "an integer", where=where)
    where = f"{where} (trial {trial})"
    if d.get("status") not in STATUSES:
      raise FieldError("status", d.get("status"), str(list(STATUSES)), where=where)
    require_number(where, d, "reward")
    for key in ("budget", "rung"):
      if key in d and (isinstance(d[key], bool) or not isinstance(d[key], int) or d[key] < 0):
        raise FieldError(key, d[key], "an integer >= 0", where=where)
    if d["status"] in SCORED_STATUSES:
      for key in ("accuracy", "flops", "params"):
        require_number(where, d, key)
      if not isinstance(d.get("arch"), dict):
        raise FieldError("arch", d.get("arch"), "an architecture JSON object", where=where)

  @classmethod
  def from_result(cls, child: Sampled, result, costs: tuple[int, int, float | None],
                  reward: Callable[[str, float], float]) -> "TrialRecord":
    """The record of a trained child.

    Args:
      child: the trial as planned (number, update, architecture, decisions, seed).
      result: the trainer's `TrialResult`.
      costs: (deploy flops, deploy params, latency_ms or None).
      reward: (status, accuracy) -> the reward.
    """
    flops, params, latency_ms = costs
    trial, update, arch, indices, seed = child
    accuracy = finite_accuracy(result.accuracy)
    timings = {k: float(getattr(result, k)) for k in ("fixed_seconds", "steady_seconds")
               if getattr(result, k, None) is not None}
    return cls(trial=trial, arch=arch.to_dict(), blocks=arch.block_strings,
               indices=list(indices) if indices is not None else MISSING, flops=int(flops),
               params=int(params), accuracy=accuracy, reward=reward(result.status, accuracy),
               status=result.status, error=result.error,
               train_seconds=float(result.train_seconds),
               images_per_sec=float(result.images_per_sec), proxy_flops=int(result.proxy_flops),
               update=update, seed=seed, cached_from=None,
               latency_ms=latency_ms if latency_ms is not None else MISSING, **timings)

  def cached_as(self, child: Sampled, costs: tuple[int, int, float | None] | None = None,
                reward: Callable[[str, float], float] | None = None):
    """This (trained) record repeated as trial `child.trial`: status cached, nothing retrained.

    Args:
      child: the repeat as planned (its own number, update, architecture, decisions and seed).
      costs, reward: for another architecture that trains as the same network (e.g. two filter
        choices that round to the same channels at the proxy width): its own deploy costs, and
        its reward recomputed from them with this record's status and accuracy. None keeps this
        record's (the same architecture).
    """
    trial, update, arch, indices, seed = child
    # Nothing trained, so no child time: the split stays only where the original had one.
    timings = {k: 0.0 for k in ("fixed_seconds", "steady_seconds") if getattr(self, k) is not MISSING}
    own = {}
    if costs is not None:
      flops, params, latency_ms = costs
      own = dict(flops=int(flops), params=int(params), reward=reward(self.status, self.accuracy),
                 latency_ms=latency_ms if latency_ms is not None else MISSING)
    return self.replace(trial=trial, arch=arch.to_dict(), blocks=arch.block_strings,
                        indices=list(indices), status="cached", train_seconds=0.0, update=update,
                        seed=seed, cached_from=self.trial, **timings, **own)


@dataclasses.dataclass(frozen=True)
class UpdateRecord(Record):
  """One line of updates.jsonl: the update number and the controller's metrics (any keys)."""

  KIND: ClassVar[str] = "update"

  @classmethod
  def check(cls, d, where):
    u = d.get("update")
    if isinstance(u, bool) or not isinstance(u, int):
      raise ValueError(f"{where}: expected an object with an integer 'update', got {str(d)[:200]}")
    for key in ("entropy", "mean_reward"):
      require_number(where, d, key, optional=True)

  @classmethod
  def from_json(cls, d, where=None):
    # The controller's metrics differ by controller, so the keys are open; only the checked ones
    # are typed. The dict itself is the record.
    where = where or cls.KIND
    if not isinstance(d, dict):
      raise ValueError(f"{where}: expected an object with an integer 'update', got {str(d)[:200]}")
    cls.check(d, where)
    return dict(d)


@dataclasses.dataclass(frozen=True)
class GridRecord(Record):
  """One line of grid.jsonl: a candidate (α, β, γ), its deploy cost and its proxy score."""

  KIND: ClassVar[str] = "candidate"

  candidate: int = _field()
  alpha: float = _field()
  beta: float = _field()
  gamma: float = _field()
  product: float = _field()
  width: float = _field()
  depth: float = _field()
  proxy_resolution: int = _field()
  deploy_resolution: int = _field()
  flops: int = _field()
  flops_ratio: float = _field()
  params: int = _field()
  accuracy: float = _field()
  status: str = _field()
  error: str | None = _field()
  train_seconds: float = _field()
  images_per_sec: float = _field()
  proxy_flops: int = _field()
  proxy_params: int = _field()
  seed: int = _field()

  @classmethod
  def check(cls, d, where):
    c = d.get("candidate")
    if isinstance(c, bool) or not isinstance(c, int):
      raise FieldError("candidate", c, "an integer", where=where)
    if d.get("status") not in RESULT_STATUSES:
      raise FieldError("status", d.get("status"), str(list(RESULT_STATUSES)), where=where)



@dataclasses.dataclass(frozen=True)
class FidelityRecord(Record):
  """One line of fidelity.jsonl: a search trial retrained on the longer schedule."""

  KIND: ClassVar[str] = "retrained trial"

  trial: int = _field()
  group: str = _field()
  proxy_reward: float = _field()
  proxy_accuracy: float = _field()
  accuracy: float = _field()
  status: str = _field()
  error: str | None = _field()
  train_seconds: float = _field()
  seed: int = _field()
  flops: int | None = _field()
  params: int | None = _field()
  blocks: list[str] | None = _field()

  @classmethod
  def check(cls, d, where):
    TrialRecord.check({"trial": d.get("trial"), "status": "failed", "reward": 0.0}, where)
    if d.get("status") not in RESULT_STATUSES:
      raise FieldError("status", d.get("status"), str(list(RESULT_STATUSES)), where=where)

  @classmethod
  def from_result(cls, trial: Mapping[str, Any], group: str, seed: int,
                  result) -> "FidelityRecord":
    """The record of `trial` (a trials.jsonl record) retrained; `seed` is the search's."""
    return cls(trial=trial["trial"], group=group, proxy_reward=trial["reward"],
               proxy_accuracy=trial["accuracy"], accuracy=finite_accuracy(result.accuracy),
               status=result.status, error=result.error,
               train_seconds=float(result.train_seconds), seed=seed, flops=trial.get("flops"),
               params=trial.get("params"), blocks=trial.get("blocks"))


@dataclasses.dataclass(frozen=True)
class TrainRecord(Record):
  """metrics.json of a train directory: open keys (the trainer's), the accuracy checked.

  `launch.py train` (mnas_search/train.py) writes it; a family report reads the accuracy.
  """

  KIND: ClassVar[str] = "metrics"
  ACCURACY_KEYS: ClassVar[tuple[str, ...]] = ("test_accuracy", "accuracy")

  @classmethod
  def accuracy_of(cls, metrics: Mapping[str, Any], where: str) -> float:
    """The test accuracy of metrics.json (its `accuracy` in older files)."""
    for key in cls.ACCURACY_KEYS:
      if key in metrics:
        require_number(where, metrics, key)
        return float(metrics[key])
    raise ValueError(f"{where} has none of the keys {list(cls.ACCURACY_KEYS)}; allowed: a "
                     "metrics.json written by `launch.py train`")


# ----------------------------------------------------------------------------- ranking
def budget_of(record: Mapping[str, Any]) -> int:
  """The budget a record was trained to; 0 for a search without rungs (one record per trial)."""
  return record.get("budget", 0)


def final_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """Each trial's highest-budget record, in file order (a multi-fidelity search stores one
  record per rung a child reached; a search without rungs one per trial)."""
  records = list(records)
  top: dict[int, Mapping[str, Any]] = {}
  for r in records:
    if r["trial"] not in top or budget_of(r) > budget_of(top[r["trial"]]):
      top[r["trial"]] = r
  return [r for r in records if top[r["trial"]] is r]


def rank_by_reward(records: Iterable[Mapping[str, Any]],
                   statuses: Sequence[str] = SCORED_STATUSES) -> list[Mapping[str, Any]]:
  """Records with one of `statuses`, highest reward first, the lower trial number on a tie; a
  higher budget first of all, so that a low-rung score never beats a high-rung one."""
  return sorted((r for r in records if r.get("status") in statuses),
                key=lambda r: (-budget_of(r), -r["reward"], r["trial"]))


def best_by_reward(records: Iterable[Mapping[str, Any]],
                   statuses: Sequence[str] = SCORED_STATUSES) -> Mapping[str, Any] | None:
  """The highest-reward record with one of `statuses` (the lower trial number on a tie), or None."""
  ranked = rank_by_reward(records, statuses)
  return ranked[0] if ranked else None


def distinct_by_reward(records: Iterable[Mapping[str, Any]],
                       statuses: Sequence[str] = SCORED_STATUSES) -> list[Mapping[str, Any]]:
  """`rank_by_reward`, keeping only the best record of each architecture."""
  from search_space import Architecture
  seen, out = set(), []
  for r in rank_by_reward(records, statuses):
    key = Architecture.from_dict(r["arch"]).identity()
    if key not in seen:
      seen.add(key)
      out.append(r)
  return out


# ----------------------------------------------------------------------------- readers
def read_trials(directory: str, missing_ok: bool = False, rungs: bool = False) -> list[dict[str, Any]]:
  """The checked records of directory/trials.jsonl, in file order, as dicts: the one reader.

  Args:
    directory: a search directory.
    missing_ok: no trials.jsonl reads as no records (a search that has not begun).
    rungs: every record of a multi-fidelity search (one per rung a child reached); else only each
      child's highest-budget record (`final_records`), one per trial.

  Raises:
    FileNotFoundError: the directory has no trials.jsonl (unless `missing_ok`).
    ValueError: a record is malformed (naming the file, the record, the field and the value).
  """
  path = os.path.join(directory, "trials.jsonl")
  if missing_ok and not os.path.exists(path):
    return []
  if not os.path.isfile(path):
    raise FieldNotFoundError("search_dir", directory, "a directory written by `launch.py search`",
                             reason="has no trials.jsonl")
  try:
    rows = fileio.read_jsonl(path)
  except ValueError as e:  # not JSON: name the file and what to do, as every run directory does
    raise rundir.corrupted(path, e) from None
  out = [TrialRecord.from_json(r, f"{path} record {i + 1}").to_json() for i, r in enumerate(rows)]
  return out if rungs else final_records(out)


def read_updates(directory: str) -> list[dict[str, Any]]:
  """The checked records of directory/updates.jsonl; [] when the file is absent."""
  path = os.path.join(directory, "updates.jsonl")
  return [UpdateRecord.from_json(u, f"{path} record {i + 1}")
          for i, u in enumerate(fileio.read_jsonl(path))]


def read_references(directory: str) -> dict[str, dict[str, Any]]:
  """directory/references.json (name -> a trial record without indices); {} when absent."""
  path = os.path.join(directory, "references.json")
  if not os.path.isfile(path):
    return {}
  refs = fileio.read_json(path)
  if not isinstance(refs, dict) or not all(isinstance(v, dict) for v in refs.values()):
    raise ValueError(f"{path!r} must map reference names to objects, got {str(refs)[:200]!r}")
  for name, ref in refs.items():
    for key in ("accuracy", "flops", "params", "reward"):
      require_number(f"{path} reference {name!r}", ref, key, optional=True)
  return refs
