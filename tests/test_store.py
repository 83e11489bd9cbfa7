"""Tests for mnas_search.runs.store: the search directory's files."""

import pytest

import search_space
from mnas_search.runs.records import Sampled, TrialRecord
from mnas_search.runs.store import SearchStore
from mnas_search.training.evaluation import TrialResult


def trial(n: int) -> dict:
  """A well-formed trials.jsonl record of trial n."""
  result = TrialResult(status="ok", accuracy=0.5, train_seconds=1.0, images_per_sec=2.0, proxy_flops=3,
                       proxy_params=4)
  child = Sampled(n, 0, search_space.named("mnasnet-a1"), [0], 7)
  return TrialRecord.from_result(child, result, (1, 2, None), lambda status, acc: acc).to_json()


def test_params_written_once_then_checked(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  assert store.write_or_check_params({"a": 1, "trials": 5}, may_change=("trials",)) is False
  assert store.write_or_check_params({"a": 1, "trials": 9}, may_change=("trials",)) is True
  assert store.read_params() == {"a": 1, "trials": 9, "params_version": 1}
  with pytest.raises(ValueError, match=r"Conflicts: --a: stored 1, given 2"):
    store.write_or_check_params({"a": 2, "trials": 9}, may_change=("trials",))


def test_trials_updates_and_snapshots(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  store.append_trial(trial(0))
  with pytest.raises(ValueError, match="trial status 'weird' is invalid"):
    store.append_trial({"trial": 1, "status": "weird"})
  store.append_update({"update": 0})
  store.write_best({"trial": 0})
  store.write_references({"efficientnet-b0": {"reward": 0.5}})
  assert store.read_trials() == [trial(0)]
  assert store.read_updates() == [{"update": 0}]
  assert store.read_best() == {"trial": 0}
  assert store.read_references() == {"efficientnet-b0": {"reward": 0.5}}


def test_repair_drops_torn_tail(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  store.append_trial(trial(0))
  with open(store.path("trials.jsonl"), "a") as f:
    f.write('{"trial": 1')
  store.repair()
  store.append_trial(trial(1))
  assert [r["trial"] for r in store.read_trials()] == [0, 1]


def test_trials_are_read_through_the_one_checked_reader(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  assert store.read_trials() == []  # no trials.jsonl yet: a search that has not begun
  store.append("trials.jsonl", {"trial": 0, "status": "ok"})  # written by hand: no reward, no arch
  with pytest.raises(ValueError, match=r"trials.jsonl record 1 \(trial 0\): reward=None is invalid"):
    store.read_trials()


def test_bad_directory(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  with pytest.raises(ValueError, match="exists and is not a folder"):
    SearchStore(str(f))
  with pytest.raises(ValueError, match="search_dir is required for a search"):
    SearchStore("")
