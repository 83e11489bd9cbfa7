"""Reliability of the CLI's run path: one owner per run directory, a clean stop on SIGINT/SIGTERM,
a refused disk and corrupted state each end with one line and a known exit status, and no trial
is lost or repeated."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import procs
import pytest
from test_diskfull import fill, tiny_fs  # noqa: F401  (the tmpfs fixture)
from test_search import TINY_FLAGS, tiny_config

from launch_cli import ROOT, run_launch
from mnas_search.runs.store import SearchStore
from mnas_search.search.multi_trial import run_search
from mnas_search.util import fileio

EVOLUTION = ["--controller=evolution", "--controller_hparams=population_size=4,tournament_size=2",
             "--trials_per_update=2"]


def search_args(d, trials, *extra):
  return ["search", f"--search_dir={d}", *TINY_FLAGS, *EVOLUTION, f"--trials={trials}", *extra]


def first_line(text):
  lines = [ln for ln in text.splitlines() if ln.strip()]
  return lines[0] if lines else ""


def locked_line(d, pid):
  """The one line the CLI prints for a directory that process `pid` on this host holds."""
  return (f"error: {d!r} is in use by another process (pid {pid} on host "
          f"{socket.gethostname()}); allowed: one process per run directory "
          "(wait for it, or stop it)")


def read_trials(d):
  return fileio.read_jsonl(os.path.join(d, "trials.jsonl"))


def snapshot(d):
  """name -> bytes of every file in d (not .lock, which holds the last holder)."""
  out = {}
  for root, _, files in os.walk(d):
    for name in files:
      if name != ".lock":
        with open(os.path.join(root, name), "rb") as f:
          out[os.path.relpath(os.path.join(root, name), d)] = f.read()
  return out


def finished_search(tmp_path, trials=2):
  d = str(tmp_path / "s")
  # The settings of search_args (the CLI's defaults: seed 0, not deterministic).
  run_search(d, tiny_config(trials=trials, trials_per_update=2, deterministic=False, seed=0),
             show_progress=False)
  return d


# ----------------------------------------------------------------------------- 1. the lock
@pytest.mark.slow  # default-suite time: the lock is also checked in-process (the test below)
def test_a_second_process_is_refused_and_writes_nothing(tmp_path):
  d = finished_search(tmp_path)
  before = snapshot(d)
  store = SearchStore(d)
  with store.lock():  # this process is "the running search"
    p = run_launch(*search_args(d, 4))
    assert p.returncode == 2, p.stderr[-3000:]
    assert first_line(p.stderr) == locked_line(d, os.getpid())
    assert len(p.stderr.strip().splitlines()) == 1
    assert snapshot(d) == before
    # Read-only commands take no lock and work meanwhile.
    r = run_launch("report", f"--search_dir={d}", f"--out={tmp_path / 'r'}")
    assert r.returncode == 0, r.stderr[-3000:]
    e = run_launch("export", f"--search_dir={d}", f"--out={tmp_path / 'x'}", "--formats=json")
    assert e.returncode == 0, e.stderr[-3000:]
  # Released: the same command now resumes and extends the search.
  p = run_launch(*search_args(d, 4))
  assert p.returncode == 0, p.stderr[-3000:]
  assert [r["trial"] for r in read_trials(d)] == [0, 1, 2, 3]


def test_the_library_refuses_a_locked_directory_before_writing(tmp_path):
  from mnas_search.runs.rundir import DirectoryLockedError
  d = str(tmp_path / "s")
  holder = SearchStore(d)
  with holder.lock():
    with pytest.raises(DirectoryLockedError) as e:
      run_search(d, tiny_config(), show_progress=False)
  assert e.value.holder == f"pid {os.getpid()} on host {socket.gethostname()}"
  assert sorted(os.listdir(d)) == [".lock"]


# ----------------------------------------------------------------------------- 2. signals
def _start(d, trials, *extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("MNAS_FAULT", None)
  args = [sys.executable, os.path.join(ROOT, "launch.py"), *search_args(d, trials, *extra)]
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _wait_for_trials(proc, d, n, timeout=300):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise AssertionError(f"search ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
    if os.path.isfile(os.path.join(d, "trials.jsonl")) and len(read_trials(d)) >= n:
      return
    time.sleep(0.2)
  raise AssertionError(f"no {n} trials in {timeout}s")


def _stop_and_resume(tmp_path, sig, backend_flags):
  d = str(tmp_path / "s")
  proc = _start(d, 1000, *backend_flags)
  try:
    _wait_for_trials(proc, d, 1)
    children = procs.children(proc.pid)
    if backend_flags:  # the two workers (and multiprocessing's resource tracker)
      assert len(children) >= 2, children
    else:  # a second search on the running one's directory is refused at once
      p = run_launch(*search_args(d, 1000))
      assert p.returncode == 2, p.stderr[-3000:]
      assert first_line(p.stderr) == locked_line(d, proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 128 + sig, err[-3000:]
  trials = read_trials(d)
  n = len(trials)
  assert first_line(err.splitlines()[-1]) == f"stopped at trial {n}; run the same command to resume"
  assert "Traceback" not in err
  # Parallel workers finish out of order: the stored trials are distinct, those in flight are gone.
  stored = sorted(r["trial"] for r in trials)
  assert len(set(stored)) == n and stored[-1] < n + 2
  if not backend_flags:
    assert stored == list(range(n))
  deadline = time.monotonic() + 15
  while any(procs.alive(c) for c in children) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert [c for c in children if procs.alive(c)] == []  # no orphan worker
  # The controller was not updated with a partial batch: every update logged covers whole batches.
  updates = fileio.read_jsonl(os.path.join(d, "updates.jsonl"))
  assert [u["update"] for u in updates] == list(range(len(updates)))
  assert all(u["trials"] == 2 * (u["update"] + 1) for u in updates)
  assert set(range(2 * len(updates))) <= set(stored)  # each update's batch is all stored
  assert len(updates) >= n // 2 - 1  # at most the last full batch waits for its update
  # Resume to n + 2: nothing lost, nothing repeated.
  p = run_launch(*search_args(d, n + 2, *backend_flags))
  assert p.returncode == 0, p.stderr[-3000:]
  trials = read_trials(d)
  assert sorted(r["trial"] for r in trials) == list(range(n + 2))
  updates = fileio.read_jsonl(os.path.join(d, "updates.jsonl"))
  assert [u["update"] for u in updates] == list(range((n + 2) // 2 + (n + 2) % 2))


@pytest.mark.slow
def test_sigint_stops_an_inline_search_cleanly_and_it_resumes(tmp_path):
  _stop_and_resume(tmp_path, signal.SIGINT, [])


@pytest.mark.slow
def test_sigterm_stops_a_process_search_and_kills_its_workers(tmp_path):
  _stop_and_resume(tmp_path, signal.SIGTERM, ["--backend=process", "--workers=2"])


# ----------------------------------------------------------------------------- 3. a refused disk
def test_a_full_disk_gives_one_line_and_exit_1(tiny_fs):  # noqa: F811
  d = os.path.join(tiny_fs, "s")
  os.makedirs(d)
  fill(os.path.join(tiny_fs, "filler"))
  p = run_launch(*search_args(d, 2))
  assert p.returncode == 1, p.stderr[-3000:]
  assert first_line(p.stderr) == (
      f"error: {os.path.join(d, 'params.json')!r}: ENOSPC (No space left on device); free space or "
      "fix the permissions, then run the same command to resume")
  assert len(p.stderr.strip().splitlines()) == 1
  assert sorted(os.listdir(d)) == [".lock"]


# ----------------------------------------------------------------------------- 4. corrupted state
HINT = ("nothing was overwritten; restore the file (e.g. from a backup), or start a new directory "
        "(a search: with --warm_start_from=THIS_DIR)")


def _corrupt_and_run(tmp_path, path_of, edit, trials=2):
  d = finished_search(tmp_path, trials=trials)
  path = path_of(d)
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(edit(text))
  before = snapshot(d)
  p = run_launch(*search_args(d, trials + 2))
  assert p.returncode == 2, p.stderr[-3000:]
  assert len(p.stderr.strip().splitlines()) == 1, p.stderr[-3000:]
  assert snapshot(d) == before
  return first_line(p.stderr)


def test_a_hand_edited_params_json_is_named(tmp_path):
  line = _corrupt_and_run(tmp_path, lambda d: os.path.join(d, "params.json"),
                          lambda t: t.replace('"trials":', '"trials"', 1))
  d = str(tmp_path / "s")
  assert line.startswith(f"error: {os.path.join(d, 'params.json')!r} is not valid JSON: "
                         "Expecting ':' delimiter: line ")
  assert line.endswith(HINT)


def test_params_json_with_a_wrong_type_is_named(tmp_path):
  line = _corrupt_and_run(tmp_path, lambda d: os.path.join(d, "params.json"),
                          lambda t: json.dumps(dict(json.loads(t), trials_per_update="2")))
  assert line.endswith("Conflicts: --trials_per_update: stored '2', given 2")


def test_a_bad_line_in_the_middle_of_trials_jsonl_is_named(tmp_path):
  def edit(text):
    lines = text.split("\n")
    lines[1] = lines[1][:40]
    return "\n".join(lines)
  # Line 2 of 4: not the last line, which a crash may tear (and which is then dropped).
  line = _corrupt_and_run(tmp_path, lambda d: os.path.join(d, "trials.jsonl"), edit, trials=4)
  path = os.path.join(str(tmp_path / "s"), "trials.jsonl")
  assert line.startswith(f"error: {path!r} line 2 is not valid JSON: ")
  assert line.endswith(HINT)


def test_a_controller_checkpoint_that_fails_to_load_is_named(tmp_path):
  def state_path(d):
    with open(os.path.join(d, "controller", "LATEST")) as f:
      return os.path.join(d, "controller", json.load(f)["checkpoint"], "state.json")
  line = _corrupt_and_run(tmp_path, state_path, lambda t: t[: len(t) // 2])
  d = str(tmp_path / "s")
  assert line.startswith(f"error: the controller checkpoint in {os.path.join(d, 'controller')!r} "
                         f"cannot be loaded (ValueError: {state_path(d)!r} is not valid JSON: ")
  assert line.endswith(HINT)


# ----------------------------------------------------------------------------- 5. warm start
def test_warm_start_retrains_no_old_architecture(tmp_path):
  import search_space
  from search_space import space as space_lib
  # A space with one point: without the warm start the new search's trial 0 would be trained.
  one = space_lib.SearchSpace(stages=tuple(
      space_lib.StageSpace(stride=s, kernel=(3,), expansion=(1,), se_ratio=(0.0,),
                           skip=("identity",), repeats=(1,), filters=(8,)) for s in (1, 2)),
      stem_filters=8, head_filters=16, resolution=32, name="one")
  search_space.SPACES["one"] = lambda: one
  old, new = str(tmp_path / "old"), str(tmp_path / "new")
  try:
    run_search(old, tiny_config(space="one", trials=2, trials_per_update=2), show_progress=False)
    run_search(new, tiny_config(space="one", trials=4, trials_per_update=2, seed=5,
                                warm_start_from=old), show_progress=False)
  finally:
    del search_space.SPACES["one"]
  source = read_trials(old)
  trials = read_trials(new)
  assert [(r["trial"], r["status"], r["cached_from"], r["train_seconds"], r["reward"])
          for r in trials] == [(t, "cached", 0, 0.0, source[0]["reward"]) for t in range(4)]
  assert fileio.read_json(os.path.join(new, "params.json"))["warm_start_from"] == old
  # The controller's updates continue the replayed one (update 0 of the source).
  assert [u["update"] for u in fileio.read_jsonl(os.path.join(new, "updates.jsonl"))] == [1, 2]


@pytest.mark.slow  # default-suite time: the warm-start tests above keep the replay in it
def test_a_warm_started_controller_learns_from_the_old_trials(tmp_path):
  import controller as controller_lib
  from mnas_search.search.proposer import replay as _replay
  old = finished_search(tmp_path, trials=4)
  source = read_trials(old)
  hparams = dict(population_size=4, tournament_size=2)
  arities = search_space_arities()
  fresh = controller_lib.make("evolution", arities, seed=0, **hparams)
  warm = controller_lib.make("evolution", arities, seed=0, **hparams)
  assert _replay(warm, source) == 2
  assert (fresh.num_sampled, fresh.num_updates, warm.num_sampled, warm.num_updates) == (0, 0, 0, 2)
  fresh_indices = [s.indices for s in fresh.sample(2)]
  warm_indices = [s.indices for s in warm.sample(2)]
  assert fresh_indices != warm_indices
  # The fresh one draws at random; the warm one mutates one decision of an old architecture.
  old_indices = [tuple(r["indices"]) for r in source]
  for idx in warm_indices:
    assert min(sum(a != b for a, b in zip(idx, o)) for o in old_indices) == 1


def search_space_arities():
  import search_space
  return search_space.get_space("micro").arities


def test_a_warm_start_from_another_task_is_refused(tmp_path):
  old = finished_search(tmp_path)
  new = str(tmp_path / "new")
  p = run_launch(*search_args(new, 2, f"--warm_start_from={old}", "--target_flops=40e6"))
  assert p.returncode == 2, p.stderr[-3000:]
  assert first_line(p.stderr) == (
      f"error: --warm_start_from={old!r} holds a search with another proxy task or cost, so its "
      "scores do not carry over; differing: target_flops: 30000000.0 there, 40000000.0 here")
  assert not os.path.exists(os.path.join(new, "params.json"))
