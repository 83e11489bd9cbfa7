"""The stop paths that tests/test_reliability.py does not reach: a SIGTERM to a `--backend=ray`
search (its Ray tasks are cancelled; the local Ray it started listens on loopback only), and a
second SIGINT that arrives during the clean-up that the first one started (the process exits at
once). In both, the resume stores each trial exactly once.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import procs
import pytest
from test_reliability import read_trials, search_args

from launch_cli import ROOT, _env, run_launch

# Runs launch.py with the backends' clean-up (`Backend.abort`) held open: it creates the file
# argv[1] and sleeps, so that the test can send its second signal during the clean-up. The patch
# lives in this test-only driver; the search itself reads no fault-injection setting.
HOLD_CLEANUP = """
import sys, time
import launch
from mnas_search.execution import backends
marker = sys.argv.pop(1)
def abort_held_open(self):
  open(marker, "w").close()
  time.sleep(300)
backends.Backend.abort = abort_held_open
launch.main(["launch.py", *sys.argv[1:]])
"""


def _wait_for(condition, what: str, proc, timeout: float = 300):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return
    if proc.poll() is not None:
      raise AssertionError(f"the search ended ({proc.returncode}) before {what}: "
                           f"{proc.stderr.read()[-3000:]}")
    time.sleep(0.1)
  raise AssertionError(f"no {what} in {timeout}s")


def _stored(d) -> int:
  path = os.path.join(d, "trials.jsonl")
  return len(read_trials(d)) if os.path.isfile(path) else 0


def _resume_stores_each_trial_once(d, n, *extra, env=None):
  p = run_launch(*search_args(d, n + 1, *extra), env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  trials = [r["trial"] for r in read_trials(d)]
  assert sorted(trials) == list(range(n + 1)), trials  # none lost, none twice


def test_a_second_sigint_during_the_cleanup_exits_at_once_and_loses_no_record(tmp_path):
  d, marker = str(tmp_path / "s"), str(tmp_path / "cleanup-started")
  proc = subprocess.Popen([sys.executable, "-c", HOLD_CLEANUP, marker, *search_args(d, 1000)],
                          cwd=ROOT, env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    _wait_for(lambda: _stored(d) >= 1, "a stored trial", proc)
    proc.send_signal(signal.SIGINT)
    _wait_for(lambda: os.path.exists(marker), "clean-up", proc, timeout=60)
    with open(os.path.join(d, "trials.jsonl"), "rb") as f:
      stored = f.read()
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - started
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
  assert elapsed < 10, elapsed  # not after the clean-up's 300 s
  assert "stopped at" not in err and "Traceback" not in err, err[-3000:]  # os._exit: no unwinding
  with open(os.path.join(d, "trials.jsonl"), "rb") as f:
    assert f.read() == stored  # nothing was being written, nothing was cut
  n = len(read_trials(d))
  assert [r["trial"] for r in read_trials(d)] == list(range(n))
  _resume_stores_each_trial_once(d, n)


@pytest.fixture
def ray_tmp():
  """RAY_TMPDIR for the search's own local Ray: short (socket paths stay under 108 bytes) and
  separate from any other Ray on this machine."""
  pytest.importorskip("ray")
  folder = tempfile.mkdtemp(prefix="/tmp/rs")
  try:
    yield folder
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def _ray_tasks(pid: int) -> list[int]:
  """The Ray workers below `pid` that run a child (Ray titles them by the task's function)."""
  return [p for p in procs.descendants(pid) if procs.cmdline(p).startswith("ray::_ray_run_job")]


@pytest.mark.slow
def test_sigterm_cancels_the_ray_tasks_and_the_resume_stores_each_trial_once(tmp_path, ray_tmp):
  d = str(tmp_path / "s")
  # Children of a few seconds each, so that the signal finds tasks in flight.
  ray_flags = ["--backend=ray", "--workers=2", "--proxy_epochs=12"]
  env = {"RAY_TMPDIR": ray_tmp}
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"),
                           *search_args(d, 1000, *ray_flags)], cwd=ROOT, env=_env(env),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  tree = []
  try:
    _wait_for(lambda: _stored(d) >= 1 and _ray_tasks(proc.pid), "a stored trial and a task in "
              "flight", proc, timeout=600)
    tree = procs.descendants(proc.pid)  # Ray's processes (GCS, raylet, workers) that it started
    listening = procs.listening([proc.pid, *tree])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
  # The local Ray that the search started listens on loopback only (raycluster.import_ray).
  assert len(listening) >= 3 and all(procs.is_loopback(a) for a, _, _ in listening), listening
  n = len(read_trials(d))
  lines = err.strip().splitlines()
  assert lines[-1] == f"stopped at trial {n}; run the same command to resume", err[-3000:]
  assert "Traceback" not in err
  cancelled = [line for line in lines if "ray backend: cancelled" in line]
  assert len(cancelled) == 1 and any(f"cancelled {k} of the {k} task(s) in flight" in cancelled[0]
                                     for k in (1, 2)), err[-3000:]
  deadline = time.monotonic() + 30
  while any(procs.alive(p) for p in tree) and time.monotonic() < deadline:
    time.sleep(0.2)
  left = {p: procs.cmdline(p) for p in tree if procs.alive(p)}
  for p in left:  # teardown, only the processes this search started
    os.kill(p, signal.SIGKILL)
  assert left == {}, left  # the local Ray that the search started is gone, its workers too
  stored = [r["trial"] for r in read_trials(d)]
  assert len(set(stored)) == n  # tasks finish out of order; those in flight were not stored
  _resume_stores_each_trial_once(d, n, *ray_flags, env=env)
