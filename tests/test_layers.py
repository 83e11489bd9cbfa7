"""The layer order of mnas_search, read from the imports (the AST), and the package hygiene rules.

A sub-package may import only sub-packages of lower layers: never one above it (upward) and never
another of its own layer (sideways). Lazy imports inside functions count the same.
"""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bottom first; the packages of one layer must not import each other.
LAYERS = (("util",), ("runs", "data", "costs"), ("training",), ("execution",), ("search", "scaling"),
          ("analysis",), ("cli",))
LAYER_OF = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
# The packages beside mnas_search: below all of it, and they never import it.
BASE_PACKAGES = ("nas_common", "search_space", "controller", "rewards")
PROJECT_PACKAGES = BASE_PACKAGES + ("mnas_search",)


def imported_modules(source: str) -> list[str]:
  """Every absolute module name an import statement of `source` names (from-imports by member)."""
  names = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names += [f"{node.module}.{a.name}" for a in node.names]
  return names


def layer_violations(package: str, source: str) -> list[str]:
  """The imports of a module of sub-package `package` that point up or sideways."""
  out = []
  for name in imported_modules(source):
    parts = name.split(".")
    if parts[0] != "mnas_search" or len(parts) < 2 or parts[1] not in LAYER_OF or parts[1] == package:
      continue
    if LAYER_OF[parts[1]] >= LAYER_OF[package]:
      kind = "sideways" if LAYER_OF[parts[1]] == LAYER_OF[package] else "upward"
      out.append(f"{kind}: {package} imports {name}")
  return out


def project_modules(packages=PROJECT_PACKAGES):
  for top in packages:
    for folder, _, files in os.walk(os.path.join(ROOT, top)):
      for f in sorted(files):
        if f.endswith(".py"):
          path = os.path.join(folder, f)
          yield os.path.relpath(path, ROOT), open(path).read()


def test_every_sub_package_has_a_layer():
  found = {d for d in os.listdir(os.path.join(ROOT, "mnas_search"))
           if os.path.isfile(os.path.join(ROOT, "mnas_search", d, "__init__.py"))}
  assert found == set(LAYER_OF)


def test_no_import_points_up_or_sideways():
  bad = []
  for rel, source in project_modules(("mnas_search",)):
    parts = rel.split(os.sep)
    if len(parts) > 2:  # mnas_search/<package>/...
      bad += [f"{rel}: {v}" for v in layer_violations(parts[1], source)]
  assert not bad, "\n".join(bad)


def test_the_checker_catches_upward_and_sideways_imports():
  assert layer_violations("runs", "from mnas_search.training import evaluation") == [
      "upward: runs imports mnas_search.training.evaluation"]
  assert layer_violations("search", "def f():\n  from mnas_search.scaling import grid") == [
      "sideways: search imports mnas_search.scaling.grid"]
  assert layer_violations("analysis", "import mnas_search.util.fileio\nfrom mnas_search.search import pareto"
                          ) == []


def test_the_base_packages_never_import_mnas_search():
  bad = [rel for rel, source in project_modules(BASE_PACKAGES)
         if any(n.split(".")[0] == "mnas_search" for n in imported_modules(source))]
  assert not bad


def test_importing_the_packages_changes_no_process_state():
  code = ("import os, warnings; e = dict(os.environ); f = list(warnings.filters); "
          "import controller, search_space, rewards, mnas_search; "
          "import mnas_search.util, mnas_search.runs, mnas_search.training, mnas_search.search; "
          "assert dict(os.environ) == e and list(warnings.filters) == f")
  env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")}
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)


def test_only_the_fault_module_reads_the_fault_variable():
  from mnas_search.util import faults
  readers = [rel for rel, source in project_modules() if faults.FAULTS_ENV in source]
  assert readers == [os.path.join("mnas_search", "util", "faults.py")]


def private_imports(source: str) -> list[str]:
  """The private names (a leading underscore) that `source` imports from a project package."""
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
        node.module.split(".")[0] in PROJECT_PACKAGES:
      out += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
  return out


def test_no_module_imports_another_modules_private_names():
  assert private_imports("from search_space.model import _conv_init, BN_EPSILON") == [
      "search_space.model._conv_init"]
  bad = [f"{rel}: {name}" for rel, source in project_modules() for name in private_imports(source)]
  assert not bad, "\n".join(bad)
