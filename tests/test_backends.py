"""Tests for mnas_search.execution.backends: inline, process and Ray runs, and failures that lose nothing."""

import multiprocessing
import os
import time

import procs
import pytest
import tensorflow as tf

from mnas_search.execution import backends
from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio
from search_space import get_space

GPUS = len(tf.config.list_logical_devices("GPU"))
TASK = ProxyTask(dataset="synthetic", resolution=16, train_images=128, val_images=64, epochs=1,
                 batch_size=64)


def _jobs(n):
  space = get_space("micro")
  return [backends.Job(trial=i, arch=space.decode([0] * space.num_decisions), task=TASK, seed=i)
          for i in range(n)]


def test_inline_runs_jobs_in_order():
  results = list(backends.InlineBackend().run(_jobs(2)))
  assert [j.trial for j, _ in results] == [0, 1]
  assert all(r.status == "ok" for _, r in results)


@pytest.mark.skipif(GPUS > 0, reason="this machine has a GPU, so strategy='mirrored' does not fail")
def test_run_job_turns_exceptions_into_failed_results():
  job = _jobs(1)[0]
  bad = backends.Job(trial=0, arch=job.arch, task=TASK, seed=0, strategy="mirrored")  # no GPU here
  result = backends.run_job(bad)
  assert result.status == "failed" and "mirrored" in result.error


def test_make_backend_errors():
  with pytest.raises(ValueError, match="backend='gpu' is invalid; allowed: inline, process, ray"):
    backends.make_backend("gpu")
  with pytest.raises(ValueError, match="workers=-1 is invalid"):
    backends.make_backend("process", workers=-1)


def test_make_backend_auto_and_zero_workers_pack_the_cores(monkeypatch):
  monkeypatch.setattr(backends, "available_cores", lambda: 2)
  auto = backends.make_backend("auto", workers=0, strategy="cpu")
  assert (type(auto).__name__, auto.workers, auto.threads) == ("ProcessBackend", 2, 1)
  process = backends.make_backend("process", workers=0)  # 0: as many as auto would pick
  assert (process.workers, process.threads) == (2, 1)
  assert type(backends.make_backend("auto", workers=1, strategy="cpu")).__name__ == "InlineBackend"




def test_process_backend_retries_a_lost_worker(tmp_path, monkeypatch):
  # A worker that dies mid-trial breaks the pool; the job must be retried, not dropped.
  marker = str(tmp_path / "crashed")
  backend = backends.ProcessBackend(workers=2, threads_per_worker=1)
  monkeypatch.setattr(backends, "run_job", _module_level_crasher)
  monkeypatch.setenv("MNAS_TEST_CRASH_MARKER", marker)
  try:
    results = list(backend.run(_jobs(3)))
  finally:
    backend.close()
  assert os.path.exists(marker)
  # One result per job, each the one its own (re)run returned: a job reported as lost, or run
  # twice, or answered with another job's result, would show here.
  assert sorted((j.trial, r.status, r.error) for j, r in results) == [
      (0, "ok", "ran 0"), (1, "ok", "ran 1"), (2, "ok", "ran 2")]


def _module_level_crasher(job):
  marker = os.environ["MNAS_TEST_CRASH_MARKER"]
  if job.trial == 1 and not os.path.exists(marker):
    open(marker, "w").close()
    os._exit(9)
  return backends.failed_result(f"ran {job.trial}", status="ok")


def _module_level_hang(job):
  time.sleep(600)  # a child stuck where the trainer's own timeout cannot stop it


def test_process_backend_kills_a_child_past_the_hard_timeout(monkeypatch):
  backend = backends.ProcessBackend(workers=1, threads_per_worker=1, max_retries=1, hard_timeout_s=2)
  monkeypatch.setattr(backends, "run_job", _module_level_hang)
  started = time.monotonic()
  try:
    results = list(backend.run(_jobs(1)))
  finally:
    backend.close()
  # Killed at 2 s, retried once, killed again: reported as a timeout, not waited on for 600 s.
  assert [(j.trial, r.status, r.error, r.accuracy) for j, r in results] == [
      (0, "timeout", "killed: over the hard wall-clock limit", 0.0)]
  assert time.monotonic() - started < 60
  deadline = time.monotonic() + 10
  while multiprocessing.active_children() and time.monotonic() < deadline:
    time.sleep(0.1)
  assert multiprocessing.active_children() == []  # the hung workers were killed


def _config(backend, workers=2):
  return SearchConfig(space="micro", controller="random", trials=4, trials_per_update=4, task=TASK,
                      references=(), target_flops=30e6, backend=backend, workers=workers, seed=1)


def _search(tmp_path, backend):
  d = str(tmp_path / backend)
  summary = run_search(d, _config(backend), show_progress=False)
  return summary, fileio.read_jsonl(os.path.join(d, "trials.jsonl"))


class _Stop(Exception):
  pass


def _stop(record):
  raise _Stop(record["trial"])  # the search dies right after storing its first trial


def test_process_backend_completes_a_search_with_two_workers(tmp_path):
  summary, trials = _search(tmp_path, "process")
  assert summary.trials == 4
  assert sorted(r["trial"] for r in trials) == [0, 1, 2, 3]
  assert all(r["status"] in ("ok", "cached") for r in trials)


@pytest.mark.slow  # three worker start-ups, each importing TensorFlow: ~40 s on 2 busy cores
def test_process_backend_search_stops_and_resumes(tmp_path):
  d = str(tmp_path / "process")
  with pytest.raises(_Stop):
    run_search(d, _config("process"), show_progress=False, on_trial=_stop)
  (first,) = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  seen = []
  # --workers may change on resume; one worker keeps this cheap (each starts its own TensorFlow).
  summary = run_search(d, _config("process", workers=1), show_progress=False, on_trial=seen.append)
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert summary.trials == 4
  # The stored trial is kept, not rerun; the other three are trained once each.
  assert trials[0] == first and sorted(r["trial"] for r in seen) == sorted(
      {0, 1, 2, 3} - {first["trial"]})
  assert sorted(r["trial"] for r in trials) == [0, 1, 2, 3]
  assert all(r["status"] in ("ok", "cached") for r in trials)


@pytest.mark.slow  # 40-60 s; Ray's end-to-end paths are also in test_stop_paths and test_ray_cluster
def test_ray_backend_completes_a_search_with_two_workers(tmp_path):
  pytest.importorskip("ray")
  summary, trials = _search(tmp_path, "ray")
  assert summary.trials == 4
  assert sorted(r["trial"] for r in trials) == [0, 1, 2, 3]
  assert all(r["status"] in ("ok", "cached") for r in trials)


# ----------------------------------------------------------------------------- backend "auto"
GB = 2**30


@pytest.mark.parametrize("args, expected", [
    # CPU only: one single-threaded process worker per core.
    (dict(cores=2, gpus=0), ("process", 2, 1)),
    (dict(cores=16, gpus=0, memory_bytes=128 * GB), ("process", 16, 1)),
    # Memory caps the workers (2 GB each); the cores are shared out among them.
    (dict(cores=16, gpus=0, memory_bytes=8 * GB), ("process", 4, 4)),
    (dict(cores=4, gpus=0, memory_bytes=3 * GB), ("inline", 1, 4)),
    # --workers given with auto caps the workers.
    (dict(workers=3, cores=8, gpus=0), ("process", 3, 2)),
    (dict(cores=1, gpus=0), ("inline", 1, 1)),
    # An accelerator: inline, one worker, which uses every GPU through the strategy.
    (dict(cores=8, gpus=1), ("inline", 1, 8)),
    (dict(cores=8, gpus=4), ("inline", 1, 8)),
    (dict(cores=8, gpus=0, strategy="mirrored"), ("inline", 1, 8)),
    (dict(cores=8, gpus=0, strategy="tpu"), ("inline", 1, 8)),
    # strategy cpu ignores a visible GPU.
    (dict(cores=2, gpus=1, strategy="cpu"), ("process", 2, 1)),
])
def test_resolve_auto(args, expected, monkeypatch):
  monkeypatch.delenv("TPU_NAME", raising=False)
  args = {"workers": None, "strategy": "auto", "memory_bytes": 64 * GB, **args}
  assert backends.resolve_auto("auto", **args) == expected


def test_resolve_auto_keeps_an_explicit_backend_and_reads_the_machine(monkeypatch):
  assert backends.resolve_auto("inline", None, cores=2) == ("inline", 1, 2)
  assert backends.resolve_auto("process", None, cores=4) == ("process", 4, 1)
  assert backends.resolve_auto("process", 2, cores=4) == ("process", 2, 2)
  assert backends.resolve_auto("ray", None, cores=4) == ("ray", 2, 2)
  monkeypatch.setenv("TPU_NAME", "my-tpu")
  assert backends.resolve_auto("auto", None, cores=4, gpus=0) == ("inline", 1, 4)
  monkeypatch.delenv("TPU_NAME")
  monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
  assert backends.available_cores() == 3
  assert backends.resolve_auto("auto", None, gpus=0, memory_bytes=64 * GB) == ("process", 3, 1)
  assert backends.default_threads_per_worker(2) == 1


@pytest.mark.parametrize("args, message", [
    (("gpu", None), "backend='gpu' is invalid; allowed: auto, inline, process, ray"),
    (("auto", -1), "workers=-1 is invalid; allowed: None or 0 (auto) or an integer >= 1"),
    (("auto", None, "gpu"), "strategy='gpu' is invalid; allowed: auto, cpu, mirrored, tpu"),
])
def test_resolve_auto_errors(args, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    backends.resolve_auto(*args, cores=2, gpus=0)


def _report_threads(job):
  import tensorflow as tf
  pools = (tf.config.threading.get_intra_op_parallelism_threads(),
           tf.config.threading.get_inter_op_parallelism_threads(), os.environ["OMP_NUM_THREADS"])
  return backends.failed_result(f"threads {pools}")


def test_process_workers_are_pinned(monkeypatch):
  monkeypatch.setattr(backends, "run_job", _report_threads)
  with backends.ProcessBackend(workers=2, threads_per_worker=1) as backend:
    results = [r.error for _, r in backend.run(_jobs(2))]
  assert results == ["threads (1, 1, '1')"] * 2


def test_process_workers_give_a_seeded_child_the_same_result_wherever_it_runs():
  # Exact resume relies on it: a resumed trial may run in another worker, after other children.
  job = _jobs(1)[0]
  jobs = [backends.Job(trial=i, arch=job.arch, task=TASK, seed=seed, deterministic=True)
          for i, seed in enumerate([7, 8, 7])]
  with backends.ProcessBackend(workers=2, threads_per_worker=1) as backend:
    results = {j.trial: r for j, r in backend.run(jobs)}
  assert all(r.status == "ok" for r in results.values())
  same = lambda r: (r.accuracy, r.loss, r.steps, r.seed)
  assert same(results[0]) == same(results[2]) and results[1].loss != results[0].loss

def test_pool_processes_private_api_is_still_there():
  # ProcessPoolExecutor._processes is private; if Python moves it, a hung child could not be killed.
  import concurrent.futures as cf
  import multiprocessing
  with cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
    assert pool.submit(abs, -3).result() == 3
    assert isinstance(pool._processes, dict)
    procs = backends.pool_processes(pool)
    assert len(procs) == 1 and procs[0].is_alive()


ORPHAN_PARENT = """
import concurrent.futures as cf, multiprocessing, os, sys, time
from mnas_search.execution import backends
pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                              initializer=backends.init_worker, initargs=(1,))
print(pool.submit(os.getpid).result(), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to see the worker")
def test_workers_exit_when_the_search_process_is_sigkilled():
  import signal
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parent = subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT], cwd=root, text=True,
                            stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=root))
  try:
    worker = int(parent.stdout.readline())
    assert procs.alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while procs.alive(worker) and time.time() < deadline:
      time.sleep(0.2)
    assert not procs.alive(worker), f"worker {worker} outlived its SIGKILLed parent"
  finally:
    parent.kill()
