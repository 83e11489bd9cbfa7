"""Tests for mnas_search.backends: inline, process and Ray runs, and failures that lose nothing."""

import os

import pytest

from mnas_search import backends, fileio
from mnas_search.proxy import ProxyTask
from mnas_search.search import SearchConfig, run_search
from search_space import get_space

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


def test_run_job_turns_exceptions_into_failed_results():
  job = _jobs(1)[0]
  bad = backends.Job(trial=0, arch=job.arch, task=TASK, seed=0, strategy="mirrored")  # no GPU here
  result = backends.run_job(bad)
  assert result.status == "failed" and "mirrored" in result.error


def test_make_backend_errors():
  with pytest.raises(ValueError, match="--backend='gpu' is invalid; allowed: inline, process, ray"):
    backends.make_backend("gpu")
  with pytest.raises(ValueError, match="--workers=0 is invalid"):
    backends.make_backend("process", workers=0)




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
  assert sorted(j.trial for j, _ in results) == [0, 1, 2]
  assert os.path.exists(marker)


def _module_level_crasher(job):
  marker = os.environ["MNAS_TEST_CRASH_MARKER"]
  if job.trial == 1 and not os.path.exists(marker):
    open(marker, "w").close()
    os._exit(9)
  return backends.failed_result(f"ran {job.trial}", status="failed")


def _search(tmp_path, backend):
  cfg = SearchConfig(space="micro", controller="random", trials=4, trials_per_update=4, task=TASK,
                     references=(), target_flops=30e6, backend=backend, workers=2, seed=1)
  d = str(tmp_path / backend)
  summary = run_search(d, cfg, show_progress=False)
  return summary, fileio.read_jsonl(os.path.join(d, "trials.jsonl"))


def test_process_backend_completes_a_search_with_two_workers(tmp_path):
  summary, trials = _search(tmp_path, "process")
  assert summary.trials == 4
  assert sorted(r["trial"] for r in trials) == [0, 1, 2, 3]
  assert all(r["status"] in ("ok", "cached") for r in trials)


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
    (("gpu", None), "--backend='gpu' is invalid; allowed: auto, inline, process, ray"),
    (("auto", -1), "--workers=-1 is invalid; allowed: None or an integer >= 0"),
    (("auto", None, "gpu"), "strategy='gpu' is unknown; allowed: auto, cpu, mirrored, tpu"),
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
