"""The Pareto front of a search: trials that no other trial beats on every objective.

Pure Python (no TF): a trial record is the dict written to trials.jsonl. By
default the objectives are accuracy (higher is better), deploy FLOPs and
parameters (lower is better), plus `latency_ms` (lower is better) when every
eligible record carries it.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from mnas_search.runs.records import SCORED_STATUSES, is_finite_number
from mnas_search.util import fileio

# Only these statuses carry a measured accuracy; failed and timed-out trials never enter the front.
FRONT_STATUSES = SCORED_STATUSES
DIRECTIONS = ("max", "min")
DEFAULT_OBJECTIVES = (("accuracy", "max"), ("flops", "min"), ("params", "min"))
LATENCY_OBJECTIVE = ("latency_ms", "min")

Objectives = Sequence[tuple[str, str]]


def eligible(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
  """The records whose status is ok or cached, in their original order."""
  return [r for r in records if r.get("status") in FRONT_STATUSES]


def default_objectives(records: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
  """Accuracy, FLOPs and params; latency too when every eligible record has a number for it."""
  ok = eligible(records)
  if ok and all(is_finite_number(r.get(LATENCY_OBJECTIVE[0])) for r in ok):
    return DEFAULT_OBJECTIVES + (LATENCY_OBJECTIVE,)
  return DEFAULT_OBJECTIVES


def check_objectives(objectives: Objectives) -> tuple[tuple[str, str], ...]:
  """Validates (key, direction) pairs; returns them as a tuple."""
  out = []
  if isinstance(objectives, (str, bytes)) or not objectives:
    raise ValueError(f"objectives={objectives!r} is invalid; allowed: a non-empty list of "
                     f"(key, direction) pairs with direction in {list(DIRECTIONS)}")
  for item in objectives:
    if (not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str)
        or item[1] not in DIRECTIONS):
      raise ValueError(f"objective {item!r} is invalid; allowed: a (key, direction) pair with "
                       f"direction in {list(DIRECTIONS)}, e.g. ('flops', 'min')")
    out.append((item[0], item[1]))
  keys = [k for k, _ in out]
  if len(set(keys)) != len(keys):
    raise ValueError(f"objectives {keys} repeat a key; give each key once")
  return tuple(out)


def _vector(record: dict[str, Any], objectives: Objectives) -> tuple[float, ...]:
  """The record's objectives, each negated when minimized, so that larger is always better."""
  vec = []
  for key, direction in objectives:
    v = record.get(key)
    if not is_finite_number(v):
      raise ValueError(f"trial {record.get('trial')!r} (status {record.get('status')!r}): "
                       f"{key}={v!r} is invalid; allowed: a finite number")
    vec.append(float(v) if direction == "max" else -float(v))
  return tuple(vec)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
  """True when `a` is at least as good as `b` everywhere and better somewhere (larger is better)."""
  return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def _trial_number(record: dict[str, Any]) -> int:
  t = record.get("trial")
  if isinstance(t, bool) or not isinstance(t, int):
    raise ValueError(f"trial={t!r} is invalid in record {_brief(record)}; allowed: an integer")
  return t


def _brief(record: dict[str, Any]) -> str:
  return "{" + ", ".join(f"{k}: {record[k]!r}" for k in list(record)[:4] if k != "arch") + ", ...}"


def pareto_front(records: Iterable[dict[str, Any]],
                 objectives: Objectives | None = None) -> list[dict[str, Any]]:
  """The non-dominated trials.

  Only records with status ok or cached are considered. Records with identical
  objective vectors (the same architecture trained twice, or a cached repeat)
  are one point, represented by the lowest trial number; since dominance needs
  a strict improvement somewhere, such a point is never dominated by its twin.

  Args:
    records: trial records as written to trials.jsonl.
    objectives: (key, "max"|"min") pairs; `default_objectives(records)` when None.

  Returns:
    The front's records (the original dicts), sorted by FLOPs, then by trial number.

  Raises:
    ValueError: when an eligible record lacks a finite number for an objective,
      or has no integer trial number.
  """
  records = list(records)
  objectives = check_objectives(default_objectives(records) if objectives is None else objectives)
  representatives: dict[tuple[float, ...], dict[str, Any]] = {}
  for r in eligible(records):
    trial, vec = _trial_number(r), _vector(r, objectives)
    held = representatives.get(vec)
    if held is None or trial < _trial_number(held):
      representatives[vec] = r
  points = list(representatives.items())
  front = [r for vec, r in points if not any(dominates(other, vec) for other, _ in points)]
  return sorted(front, key=lambda r: (r.get("flops", 0), _trial_number(r)))


def write_pareto_file(path: str, front: Sequence[dict[str, Any]], objectives: Objectives,
                      considered: int) -> None:
  """Writes pareto.json atomically: the objectives, how many trials were considered, the front."""
  fileio.atomic_write_json(path, {"objectives": [list(o) for o in objectives],
                                  "considered": considered, "front": list(front)})


def update_pareto_file(path: str, records: Iterable[dict[str, Any]],
                       objectives: Objectives | None = None) -> list[dict[str, Any]]:
  """Recomputes the front of `records` and writes it to `path` (pareto.json); returns the front."""
  records = list(records)
  objectives = check_objectives(default_objectives(records) if objectives is None else objectives)
  front = pareto_front(records, objectives)
  write_pareto_file(path, front, objectives, considered=len(eligible(records)))
  return front


def read_pareto_file(path: str) -> list[dict[str, Any]] | None:
  """The front stored in pareto.json, or None when the file does not exist.

  Raises:
    ValueError: when the file exists but is not a pareto.json object with a `front` list of trials.
  """
  try:
    data = fileio.read_json(path)
  except FileNotFoundError:
    return None
  front = data.get("front") if isinstance(data, dict) else None
  if not isinstance(front, list) or not all(isinstance(r, dict) for r in front):
    raise ValueError(f"{path!r} is malformed: expected an object with a 'front' list of trial "
                     f"objects, got {str(data)[:200]!r}")
  for r in front:
    _trial_number(r)
  return front
