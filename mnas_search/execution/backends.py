"""Where children are trained: in this process, in worker processes, or as Ray tasks.

Every backend takes a list of `Job`s and yields `(job, TrialResult)` pairs as
children finish. A worker that dies (crash, OOM kill) never loses a trial: its
job is retried, and after `max_retries` it is reported as `failed` with the
reason, so the search always gets one result per job.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
import traceback
from typing import Any, Iterator, Sequence

from absl import logging

from mnas_search.training.proxy import ProxyTask
from nas_common import FieldError, check_int
from search_space import Architecture

BACKENDS = ("inline", "process", "ray")


@dataclasses.dataclass(frozen=True)
class Job:
  """One child to train: the trial number, what to train, how, and with which seed."""

  trial: int
  arch: Architecture
  task: ProxyTask
  seed: int
  deterministic: bool = False
  strategy: str = "auto"
  tpu: str | None = None
  span: Any = None  # a continuation.Span: one stretch of a multi-fidelity schedule; None: the whole task


def failed_result(error: str, status: str = "failed"):
  """A TrialResult for a child that produced no score."""
  from mnas_search.training.evaluation import TrialResult
  return TrialResult(status=status, accuracy=0.0, train_seconds=0.0, images_per_sec=0.0,
                     proxy_flops=0, proxy_params=0, error=error)


def run_job(job: Job):
  """Trains one child; any exception becomes a `failed` result, never an escape."""
  from mnas_search.training import evaluation
  from mnas_search.training import strategy as strategy_lib
  try:
    strat = strategy_lib.make_strategy(job.strategy, job.tpu)
    return evaluation.evaluate(job.arch, job.task, strategy=strat, seed=job.seed,
                               deterministic=job.deterministic, span=job.span)
  except Exception as e:
    logging.warning("trial %d raised %s", job.trial, e)
    return failed_result(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")


class Backend:
  """Runs jobs; subclasses decide where."""

  name = "base"

  def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, object]]:
    raise NotImplementedError

  def close(self) -> None:
    pass

  def abort(self) -> None:
    """Stops the children in flight at once (a stop signal, an error) and frees the workers."""
    self.close()

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *exc):
    if exc_type is not None:
      self.abort()
    else:
      self.close()


class InlineBackend(Backend):
  """Trains children one after the other in this process (tests, the demo, debugging)."""

  name = "inline"

  def run(self, jobs):
    for job in jobs:
      yield job, run_job(job)


def init_worker(threads: int) -> None:
  """Sets up a worker process (the process backend's, a Ray task's, any training pool's): it
  ignores SIGINT, exits with its parent, and pins its thread pools so that N workers share the
  cores without oversubscription.

  TF's intra- and inter-op pools get `threads` threads; so do OpenMP/oneDNN and BLAS (through their
  environment variables, read when TF loads them, i.e. before TF's first import in this worker).
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from mnas_search.util import interrupt
  interrupt.ignore_in_worker()
  interrupt.exit_with_parent()
  for var in THREAD_ENV_VARS:
    os.environ[var] = str(threads)
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(threads)


THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
  """The CPU cores this process may run on (its affinity mask, e.g. a container's CPU set)."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except (AttributeError, OSError):  # no sched_getaffinity on this platform
    return os.cpu_count() or 1


def default_threads_per_worker(workers: int) -> int:
  return max(1, available_cores() // max(1, workers))


def pool_processes(pool: cf.ProcessPoolExecutor) -> list:
  """The live worker processes of `pool`, to kill a hung child (the stdlib has no public way).

  Private API: `ProcessPoolExecutor._processes` (pid -> Process; None once shut down);
  tests/test_backends.py fails loudly if it moves.
  """
  return list((getattr(pool, "_processes", None) or {}).values())


class ProcessBackend(Backend):
  """Trains children in `workers` spawned processes, each pinned to cores/workers threads.

  A child's crash, OOM kill or memory growth stays in its worker. A dead worker
  breaks the pool: the pool is rebuilt and every unfinished job is resubmitted
  (at most `max_retries` times each).
  """

  name = "process"

  def __init__(self, workers: int = 2, threads_per_worker: int | None = None, max_retries: int = 2,
               hard_timeout_s: float | None = None):
    check_int("workers", workers, 1)
    self.workers = workers
    self.threads = threads_per_worker or default_threads_per_worker(workers)
    self.max_retries = max_retries
    self.hard_timeout_s = hard_timeout_s
    self._pool: cf.ProcessPoolExecutor | None = None

  def _new_pool(self) -> cf.ProcessPoolExecutor:
    # spawn, not fork: TF is not fork-safe once initialized in the parent.
    return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=init_worker, initargs=(self.threads,))

  def _kill_pool(self) -> None:
    if self._pool is None:
      return
    processes = pool_processes(self._pool)
    for p in processes:
      if p.is_alive():
        p.kill()
    self._pool.shutdown(wait=False, cancel_futures=True)
    self._pool = None
    for p in processes:  # reaped, so that none outlives this process
      p.join(timeout=10)

  def run(self, jobs):
    pending = list(jobs)
    tries = {job.trial: 0 for job in pending}
    while pending:
      if self._pool is None:
        self._pool = self._new_pool()
      futures = {self._pool.submit(run_job, job): job for job in pending}
      started = time.monotonic()
      pending = []
      not_done = set(futures)
      broken = False
      while not_done:
        timeout = None
        if self.hard_timeout_s is not None:
          waves = -(-len(futures) // self.workers)  # jobs queue behind busy workers
          timeout = max(0.0, started + self.hard_timeout_s * waves - time.monotonic())
        done, not_done = cf.wait(not_done, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        if not done:
          # A child hung past the hard limit (the trainer's own timeout did not stop it): kill the
          # workers and retry what was unfinished; a job that keeps hanging ends as `timeout`.
          logging.warning("process backend: children overran the hard time limit; restarting workers")
          for f in not_done:
            job = futures[f]
            tries[job.trial] += 1
            if tries[job.trial] > self.max_retries:
              yield job, failed_result("killed: over the hard wall-clock limit", status="timeout")
            else:
              pending.append(job)
          self._kill_pool()
          not_done = set()
          break
        for f in done:
          job = futures[f]
          try:
            yield job, f.result()
          except cf.process.BrokenProcessPool as e:
            broken = True
            tries[job.trial] += 1
            if tries[job.trial] > self.max_retries:
              yield job, failed_result(f"worker lost {tries[job.trial]} times: {e}")
            else:
              logging.warning("process backend: worker lost during trial %d; retrying", job.trial)
              pending.append(job)
      if broken:
        self._kill_pool()

  def close(self):
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None

  def abort(self):
    self._kill_pool()


def _ray_run_job(job: Job, threads: int):
  """Body of the Ray task: pin threads (first use of TF in this worker), then train."""
  try:
    init_worker(threads)
  except RuntimeError:
    pass  # TF already initialized in this reused worker; its pools are already set
  return run_job(job)


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
  """Restores this process's SIGTERM handler after the block (in the main thread).

  ray.init() replaces the driver's SIGTERM handler with `sys.exit(15)`, and Ray's C++ core adds a
  handler that prints a stack trace: a SIGTERM would then skip the caller's clean stop
  (`mnas_search.util.interrupt`, exit status 143, records whole) and exit with status 15.
  """
  main = threading.current_thread() is threading.main_thread()
  handler = signal.getsignal(signal.SIGTERM) if main else None
  try:
    yield
  finally:
    if handler is not None:
      signal.signal(signal.SIGTERM, handler)


class RayBackend(Backend):
  """Runs each trial as a Ray task.

  Without `address` a local Ray starts with the dashboard off, every server on 127.0.0.1 (when
  this backend is the first to import Ray: `raycluster.import_ray`). With it, the backend joins
  that cluster, which must require Ray's token authentication and accept this process's token
  (`raycluster.check_cluster`) unless `allow_insecure`. At most `workers` trials run at once; each
  asks for `cpus_per_trial` CPUs and `gpus_per_trial` GPUs. Ray retries a task whose worker died;
  after that the trial is `failed`.
  """

  name = "ray"
  WAIT_POLL_S = 0.5  # how long a stop signal may wait for the backend's next safe point

  def __init__(self, workers: int = 2, address: str | None = None, cpus_per_trial: float = 1,
               gpus_per_trial: float = 0, max_retries: int = 2, allow_insecure: bool = False):
    from mnas_search.execution import raycluster
    ray = raycluster.import_ray(address)
    check_int("workers", workers, 1)
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
      bad = "cpus_per_trial" if not cpus_per_trial > 0 else "gpus_per_trial"
      raise FieldError(bad, cpus_per_trial if bad == "cpus_per_trial" else gpus_per_trial,
                       "a number > 0" if bad == "cpus_per_trial" else "a number >= 0")
    self._ray = ray
    self.workers = workers
    self._owns_ray = False
    if address and not ray.is_initialized():
      raycluster.check_cluster(address, allow_insecure)
    if not ray.is_initialized():
      env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
      with keep_sigterm_handler():
        if address:
          ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
          ray.init(num_cpus=max(os.cpu_count() or 1, int(workers * cpus_per_trial)),
                   include_dashboard=False, dashboard_host="127.0.0.1", runtime_env=env,
                   log_to_driver=False, _node_ip_address="127.0.0.1")
      self._owns_ray = True
    self._task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                            max_retries=max_retries)(_ray_run_job)
    self._threads = max(1, int(cpus_per_trial))
    self._running: dict = {}

  def run(self, jobs):
    from mnas_search.util import interrupt
    queue = list(jobs)
    running = self._running = {}
    while queue or running:
      # A stop signal is raised between Ray's calls, never inside one: raised in the middle of
      # ray.wait, it fails Ray's call with a SystemError instead of stopping the run.
      with interrupt.deferred():
        while queue and len(running) < self.workers:
          job = queue.pop(0)
          running[self._task.remote(job, self._threads)] = job
        finished = self._next_finished(running)
      if finished is not None:
        yield finished

  def _next_finished(self, running: dict) -> tuple[Job, object] | None:
    """The job of a task that finished within WAIT_POLL_S, with its result; None when none did."""
    ray = self._ray
    done, _ = ray.wait(list(running), num_returns=1, timeout=self.WAIT_POLL_S)
    if not done:
      return None
    job = running.pop(done[0])
    try:
      return job, ray.get(done[0])
    except ray.exceptions.RayError as e:
      return job, failed_result(f"ray task lost after retries: {type(e).__name__}: {e}")

  def close(self):
    if self._owns_ray and self._ray.is_initialized():
      self._ray.shutdown()

  def abort(self):
    cancelled = 0
    for ref in list(self._running):  # the tasks in flight: cancelled, their workers killed
      try:
        self._ray.cancel(ref, force=True)
        cancelled += 1
      except Exception as e:
        logging.warning("ray backend: could not cancel a task: %s", e)
    if self._running:
      logging.info("ray backend: cancelled %d of the %d task(s) in flight", cancelled,
                   len(self._running))
    self._running = {}
    self.close()


def default_workers(backend: str, cores: int | None = None) -> int:
  """Concurrent children when --workers is not given.

  process: one per core, each pinned to one thread (proxy children are too small to use many
  threads well; the README gives the measurement); ray: 2; inline: 1.
  """
  return {"process": cores or available_cores(), "ray": 2}.get(backend, 1)


# Memory set aside per process worker (TF, its runtime and one B0-sized proxy child): an estimate, not measured.
WORKER_MEMORY_BYTES = 2 * 2**30


def resolve_auto(backend: str, workers: int | None, strategy: str = "auto", cores: int | None = None,
                 gpus: int | None = None,
                 memory_bytes: int | None = None) -> tuple[str, int, int]:
  """The backend, worker count and threads per worker that pack this machine, for backend "auto".

  CPU only (strategy cpu, or auto with no GPU and no TPU): `process` with one single-threaded
  worker per core, capped at one worker per WORKER_MEMORY_BYTES of RAM, the cores
  shared out among them. Proxy children are too small to use many threads well, so this is the
  most children per hour. A single core: `inline`.
  An accelerator (strategy mirrored or tpu, or auto with a visible GPU or a named TPU): `inline`
  with one worker, which uses every GPU through the strategy (one worker per GPU would need a
  device mask per worker, which the process backend does not set).
  A backend other than "auto" is kept, with `workers` or `default_workers(backend)`.

  Args:
    backend: "auto" or one of BACKENDS.
    workers: concurrent children; None (or 0) to choose. Given with "auto", it caps the workers.
    strategy: the children's strategy name (`strategy.STRATEGIES`).
    cores: usable cores; None reads this process's affinity mask.
    gpus: visible GPUs; None asks TF (only when strategy is "auto").
    memory_bytes: physical memory; None reads it from the OS.

  Returns:
    (backend, workers, threads_per_worker).
  """
  if backend != "auto" and backend not in BACKENDS:
    raise FieldError("backend", backend, f"auto, {', '.join(BACKENDS)}")
  if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
    raise FieldError("workers", workers, "None or 0 (auto) or an integer >= 1")
  cores = available_cores() if cores is None else cores
  if backend != "auto":
    workers = workers or default_workers(backend, cores)
    return backend, workers, max(1, cores // workers)
  if _uses_accelerator(strategy, gpus) or cores <= 1:
    return "inline", 1, cores
  memory_bytes = _physical_memory() if memory_bytes is None else memory_bytes
  n = min(cores, workers or cores, max(1, memory_bytes // WORKER_MEMORY_BYTES))
  if n <= 1:
    return "inline", 1, cores
  return "process", n, max(1, cores // n)


def _uses_accelerator(strategy: str, gpus: int | None) -> bool:
  from mnas_search.training.strategy import STRATEGIES, TPU_ENV
  if strategy not in STRATEGIES:
    raise FieldError("strategy", strategy, ", ".join(STRATEGIES))
  if strategy in ("mirrored", "tpu"):
    return True
  if strategy == "cpu":
    return False
  if os.environ.get(TPU_ENV):
    return True
  if gpus is None:
    import tensorflow as tf
    gpus = len(tf.config.list_physical_devices("GPU"))
  return gpus > 0


def _physical_memory() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (AttributeError, ValueError, OSError):
    return 2**40  # unknown: no cap


def hard_timeout_for(timeout_s: float | None) -> float | None:
  """When a worker is killed: twice the trainer's own limit plus two minutes, which it should never need."""
  return None if timeout_s is None else 2 * timeout_s + 120


@dataclasses.dataclass(frozen=True)
class RayOptions:
  """The Ray backend's settings: which cluster, whether to trust one without a token, and what
  each child asks of it.

  Attributes:
    address: a running cluster ("host:port"); None starts a local one.
    allow_insecure: join a cluster at `address` that has no authentication.
    cpus_per_trial, gpus_per_trial: the resources each child task reserves.
  """

  address: str | None = None
  allow_insecure: bool = False
  cpus_per_trial: float = 1
  gpus_per_trial: float = 0


def make_backend(name: str, workers: int = 1, ray: RayOptions | None = None,
                 hard_timeout_s: float | None = None, threads_per_worker: int | None = None,
                 strategy: str = "auto") -> Backend:
  """The backend called `name` (auto, inline, process or ray); auto and workers=0 as `resolve_auto`.
  `ray` is read by the Ray backend only."""
  if name == "auto" or not workers:
    name, workers, threads = resolve_auto(name, workers or None, strategy)
    threads_per_worker = threads_per_worker or threads
  if name == "inline":
    return InlineBackend()
  if name == "process":
    return ProcessBackend(workers=workers, threads_per_worker=threads_per_worker,
                          hard_timeout_s=hard_timeout_s)
  if name == "ray":
    ray = ray or RayOptions()
    return RayBackend(workers=workers, address=ray.address, cpus_per_trial=ray.cpus_per_trial,
                      gpus_per_trial=ray.gpus_per_trial, allow_insecure=ray.allow_insecure)
  raise FieldError("backend", name, ", ".join(BACKENDS))
