"""Structure rules of the product code: no function longer than 60 lines or wider than 7 parameters
(a configuration object counts as one); launch.py only dispatches."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nas_common", "mnas_search", "search_space", "controller", "rewards")
MAX_LINES = 60
MAX_PARAMETERS = 7


def functions():
  """(path:line name, the def node) of every function of the product packages."""
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in sorted(files):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, ROOT)
        if not name.endswith(".py"):
          continue
        for node in ast.walk(ast.parse(open(path).read(), rel)):
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{rel}:{node.lineno} {node.name}", node


def parameters(node) -> list[str]:
  """A function's parameters, self and cls left out, *args and **kwargs counted."""
  a = node.args
  names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
  return names + [f"*{x.arg}" for x in (a.vararg, a.kwarg) if x is not None]


def long_functions(max_lines=MAX_LINES):
  """(path:line name, lines) of every function longer than max_lines (def line to last line)."""
  return [(where, node.end_lineno - node.lineno + 1) for where, node in functions()
          if node.end_lineno - node.lineno + 1 > max_lines]


def wide_functions(max_parameters=MAX_PARAMETERS):
  """(path:line name, parameters) of every function with more than max_parameters."""
  return [(where, len(parameters(node))) for where, node in functions()
          if len(parameters(node)) > max_parameters]


def test_no_function_is_longer_than_60_lines():
  assert long_functions() == []


def test_no_function_takes_more_than_7_parameters():
  assert wide_functions() == []


@pytest.mark.parametrize("limit", [5])
def test_the_checks_find_long_and_wide_functions(limit):
  assert any(where.startswith("mnas_search/search/multi_trial.py") for where, _ in long_functions(limit))
  assert any(where.startswith("mnas_search/runs/records.py") for where, _ in wide_functions(limit - 2))


def test_launch_py_only_dispatches():
  with open(os.path.join(ROOT, "launch.py")) as f:
    assert len(f.read().splitlines()) < 150
