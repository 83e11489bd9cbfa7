"""Runs `python launch.py ...` in a subprocess, as a user would; shared by the CLI tests."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(env, unset=()):
  e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  e.pop("MNAS_FAULT", None)
  e.update(env or {})
  for name in unset:
    e.pop(name, None)
  return e


def run_launch(*args, env=None, unset=(), timeout=600) -> subprocess.CompletedProcess:
  """`launch.py *args` from the repository root; `env` adds variables, `unset` removes them (fault
  injection is always cleared)."""
  return subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), *args], capture_output=True,
                        text=True, timeout=timeout, env=_env(env, unset), cwd=ROOT)


def start_launch(*args, env=None, unset=()) -> subprocess.Popen:
  """`launch.py *args` started in the background (as `run_launch`); `.communicate()` waits for it."""
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=_env(env, unset), cwd=ROOT)
