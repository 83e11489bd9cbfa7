"""Structure rules of the product code: no function longer than 60 lines; launch.py only dispatches."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nas_common", "mnas_search", "search_space", "controller", "rewards")
MAX_LINES = 60


def long_functions(max_lines=MAX_LINES):
  """(path:line name, lines) of every function longer than max_lines (def line to last line)."""
  out = []
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in sorted(files):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, ROOT)
        if not name.endswith(".py"):
          continue
        for node in ast.walk(ast.parse(open(path).read(), rel)):
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > max_lines:
              out.append((f"{rel}:{node.lineno} {node.name}", n))
  return out


def test_no_function_is_longer_than_60_lines():
  assert long_functions() == []


@pytest.mark.parametrize("limit", [5])
def test_the_check_finds_long_functions(limit):
  assert any(where.startswith("mnas_search/search.py") for where, _ in long_functions(limit))


def test_launch_py_only_dispatches():
  with open(os.path.join(ROOT, "launch.py")) as f:
    assert len(f.read().splitlines()) < 150
