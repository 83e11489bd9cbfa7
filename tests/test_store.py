"""Tests for mnas_search.runs.store: the search directory's files."""

import pytest

from mnas_search.runs.store import SearchStore


def test_params_written_once_then_checked(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  assert store.write_or_check_params({"a": 1, "trials": 5}, may_change=("trials",)) is False
  assert store.write_or_check_params({"a": 1, "trials": 9}, may_change=("trials",)) is True
  assert store.read_params() == {"a": 1, "trials": 9, "params_version": 1}
  with pytest.raises(ValueError, match=r"Conflicts: --a: stored 1, given 2"):
    store.write_or_check_params({"a": 2, "trials": 9}, may_change=("trials",))


def test_trials_updates_and_snapshots(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  store.append_trial({"trial": 0, "status": "ok"})
  with pytest.raises(ValueError, match="trial status 'weird' is invalid"):
    store.append_trial({"trial": 1, "status": "weird"})
  store.append_update({"update": 0})
  store.write_best({"trial": 0})
  store.write_references({"efficientnet-b0": {"reward": 0.5}})
  assert store.read_trials() == [{"trial": 0, "status": "ok"}]
  assert store.read_updates() == [{"update": 0}]
  assert store.read_best() == {"trial": 0}
  assert store.read_references() == {"efficientnet-b0": {"reward": 0.5}}


def test_repair_drops_torn_tail(tmp_path):
  store = SearchStore(str(tmp_path / "s"))
  store.append_trial({"trial": 0, "status": "ok"})
  with open(store.path("trials.jsonl"), "a") as f:
    f.write('{"trial": 1')
  store.repair()
  store.append_trial({"trial": 1, "status": "ok"})
  assert [r["trial"] for r in store.read_trials()] == [0, 1]


def test_bad_directory(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  with pytest.raises(ValueError, match="exists and is not a folder"):
    SearchStore(str(f))
  with pytest.raises(ValueError, match="search_dir is required for a search"):
    SearchStore("")
