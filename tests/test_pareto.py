"""Tests of mnas_search.search.pareto on a hand-made trial set with ties, duplicates and failures."""

import json
import os

import pytest

from mnas_search.search import pareto


def _t(trial, accuracy, flops, params, status="ok", **extra):
  return {"trial": trial, "accuracy": accuracy, "flops": flops, "params": params,
          "reward": accuracy, "status": status, **extra}


# Front by hand (accuracy up, flops down, params down):
#  10: lowest FLOPs.                        0: best at 300 FLOPs.
#   1 (= 2 cached, = 12 listed first): one point, represented by trial 1.
#   9: between 1 and 3.                     3 (= 5, listed before it): represented by 3.
# Dominated: 4 (same accuracy as 0, more FLOPs and params), 8 (same accuracy and FLOPs as 0,
# more params), 11 (same accuracy and FLOPs as 3, more params).
# Excluded by status: 6 (failed) and 7 (timeout), which would otherwise dominate.
TRIALS = [
    _t(0, 0.80, 300, 10), _t(12, 0.85, 400, 12), _t(1, 0.85, 400, 12),
    _t(2, 0.85, 400, 12, status="cached"), _t(5, 0.90, 500, 20), _t(3, 0.90, 500, 20),
    _t(4, 0.80, 350, 11), _t(6, 0.99, 100, 5, status="failed"),
    _t(7, 0.99, 100, 5, status="timeout"), _t(8, 0.80, 300, 11), _t(9, 0.88, 450, 12),
    _t(10, 0.70, 200, 30), _t(11, 0.90, 500, 21),
]


def _trials(front):
  return [r["trial"] for r in front]


def test_front_with_ties_and_duplicates():
  front = pareto.pareto_front(TRIALS)
  assert _trials(front) == [10, 0, 1, 9, 3]
  # The original records come back, not copies.
  assert front[2] is TRIALS[2]


def test_front_does_not_depend_on_record_order():
  assert _trials(pareto.pareto_front(list(reversed(TRIALS)))) == [10, 0, 1, 9, 3]


def test_equal_point_is_not_dominated():
  a = (0.8, -300.0, -10.0)
  assert not pareto.dominates(a, a)
  assert pareto.dominates((0.8, -300.0, -9.0), a)
  assert not pareto.dominates((0.9, -400.0, -10.0), a)


def test_two_objectives_merge_points_equal_on_them():
  # On (accuracy, flops) alone, 8 equals 0 (lower trial kept) and 11 equals 3.
  front = pareto.pareto_front(TRIALS, objectives=[("accuracy", "max"), ("flops", "min")])
  assert _trials(front) == [10, 0, 1, 9, 3]
  only_acc = pareto.pareto_front(TRIALS, objectives=[("accuracy", "max")])
  assert _trials(only_acc) == [3]


def test_latency_joins_when_every_eligible_record_has_it():
  recs = [_t(0, 0.8, 300, 10, latency_ms=5.0), _t(1, 0.8, 300, 11, latency_ms=4.0),
          _t(2, 0.5, 100, 1, status="failed")]
  assert pareto.default_objectives(recs) == pareto.DEFAULT_OBJECTIVES + (("latency_ms", "min"),)
  assert _trials(pareto.pareto_front(recs)) == [0, 1]
  recs[1] = _t(1, 0.8, 300, 11)  # no latency on one record: ignored, and 1 is dominated by 0
  assert pareto.default_objectives(recs) == pareto.DEFAULT_OBJECTIVES
  assert _trials(pareto.pareto_front(recs)) == [0]


def test_empty_and_all_failed():
  assert pareto.pareto_front([]) == []
  assert pareto.pareto_front([_t(0, 0.0, 10, 1, status="failed")]) == []


def test_malformed_records_are_refused():
  with pytest.raises(ValueError, match=r"trial 3 \(status 'ok'\): accuracy=None is invalid"):
    pareto.pareto_front([_t(3, None, 10, 1)])
  with pytest.raises(ValueError, match="flops='10' is invalid"):
    pareto.pareto_front([_t(3, 0.5, "10", 1)])
  with pytest.raises(ValueError, match="trial='a' is invalid"):
    pareto.pareto_front([_t("a", 0.5, 10, 1)])


def test_bad_objectives_are_refused():
  with pytest.raises(ValueError, match=r"objective \('flops', 'down'\) is invalid; allowed"):
    pareto.pareto_front(TRIALS, objectives=[("flops", "down")])
  with pytest.raises(ValueError, match="repeat a key"):
    pareto.pareto_front(TRIALS, objectives=[("flops", "min"), ("flops", "max")])
  with pytest.raises(ValueError, match="non-empty list"):
    pareto.pareto_front(TRIALS, objectives=[])


def test_update_and_read_pareto_file(tmp_path):
  path = str(tmp_path / "pareto.json")
  assert pareto.read_pareto_file(path) is None
  front = pareto.update_pareto_file(path, TRIALS)
  assert _trials(front) == [10, 0, 1, 9, 3]
  with open(path) as f:
    data = json.load(f)
  assert data["objectives"] == [["accuracy", "max"], ["flops", "min"], ["params", "min"]]
  assert data["considered"] == 11
  assert _trials(pareto.read_pareto_file(path)) == [10, 0, 1, 9, 3]
  assert [p for p in os.listdir(tmp_path)] == ["pareto.json"]  # no temp file left behind


def test_malformed_pareto_file_is_refused(tmp_path):
  path = tmp_path / "pareto.json"
  path.write_text('{"front": 3}')
  with pytest.raises(ValueError, match="is malformed: expected an object with a 'front' list"):
    pareto.read_pareto_file(str(path))
  path.write_text('[{"trial": 1}')
  with pytest.raises(ValueError, match="is not valid JSON"):
    pareto.read_pareto_file(str(path))


def test_pareto_math_does_not_import_tensorflow():
  import subprocess
  import sys
  code = ("import sys, mnas_search.search.pareto; "
          "sys.exit(1 if {'tensorflow', 'keras', 'matplotlib'} & set(sys.modules) else 0)")
  assert subprocess.run([sys.executable, "-c", code]).returncode == 0
