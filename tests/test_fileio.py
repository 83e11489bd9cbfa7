"""Tests for mnas_search.util.fileio: atomic writes and crash-tolerant JSON lines."""

import os

import pytest

from mnas_search.util import fileio


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
  path = str(tmp_path / "sub" / "a.json")
  fileio.atomic_write_json(path, {"x": 1})
  fileio.atomic_write_json(path, {"x": 2})
  assert fileio.read_json(path) == {"x": 2}
  assert os.listdir(tmp_path / "sub") == ["a.json"]


def test_append_and_read_jsonl(tmp_path):
  path = str(tmp_path / "t.jsonl")
  for i in range(3):
    fileio.append_jsonl(path, {"trial": i})
  assert fileio.read_jsonl(path) == [{"trial": 0}, {"trial": 1}, {"trial": 2}]
  assert fileio.read_jsonl(str(tmp_path / "missing.jsonl")) == []


def test_torn_last_line_is_ignored_then_repaired(tmp_path):
  path = str(tmp_path / "t.jsonl")
  fileio.append_jsonl(path, {"trial": 0})
  with open(path, "a") as f:
    f.write('{"trial": 1, "acc')  # a crash mid-append
  assert fileio.read_jsonl(path) == [{"trial": 0}]
  assert fileio.repair_jsonl(path) == len('{"trial": 1, "acc')
  fileio.append_jsonl(path, {"trial": 1})
  assert fileio.read_jsonl(path) == [{"trial": 0}, {"trial": 1}]
  assert fileio.repair_jsonl(path) == 0


def test_corrupt_middle_line_is_an_error(tmp_path):
  path = tmp_path / "t.jsonl"
  path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
  with pytest.raises(ValueError, match="line 2 is not valid JSON"):
    fileio.read_jsonl(str(path))


def test_read_json_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    fileio.read_json(str(tmp_path / "nope.json"))
  bad = tmp_path / "bad.json"
  bad.write_text("{")
  with pytest.raises(ValueError, match="is not valid JSON"):
    fileio.read_json(str(bad))
