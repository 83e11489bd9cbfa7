"""Tests for mnas_search.util.progress."""

import io

from mnas_search.util.progress import Progress, format_seconds


def test_format_seconds():
  assert [format_seconds(s) for s in (9, 252, 11100, -3)] == ["9s", "4m12s", "3h05m", "0s"]


def test_progress_lines_on_a_non_terminal():
  out = io.StringIO()
  p = Progress(total=4, done=0, every=2, stream=out)
  p.best = 0.5
  for _ in range(4):
    p.advance()
  lines = out.getvalue().splitlines()
  assert len(lines) == 2
  assert lines[1].startswith("[" + "#" * 24 + "] 4/4 trials")
  assert "best reward 0.5000" in lines[1] and "ETA 0s" in lines[1]


def test_progress_disabled_writes_nothing():
  out = io.StringIO()
  p = Progress(total=2, enabled=False, stream=out)
  p.advance()
  p.close()
  assert out.getvalue() == ""
