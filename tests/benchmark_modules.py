"""The scripts of benchmarks/ as modules, for tests (benchmarks/ is not a package)."""

import functools
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


@functools.cache
def load(name: str):
  """benchmarks/NAME.py, loaded once, as module NAME_benchmark; benchmarks/ goes on sys.path so
  that a script's imports of its siblings (e.g. `import ground_truth`) resolve as when it runs."""
  if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
  spec = importlib.util.spec_from_file_location(f"{name}_benchmark", os.path.join(BENCHMARKS, f"{name}.py"))
  module = sys.modules[f"{name}_benchmark"] = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
