"""The search loop: sample, cost, train, reward, update, store; resumable at any instant.

One round: the controller samples K architectures; each one's deploy cost is
counted analytically; the backend trains the children on the proxy; rewards
are computed; the controller is updated and checkpointed. Every finished trial
is appended to trials.jsonl the moment it finishes.

Exact resume. Trial numbers are assigned in sampling order, and the controller
checkpoint (written after every update) holds its RNG state, so a restored
controller re-samples exactly the batch that was in flight at a crash. Trials
of that batch already in trials.jsonl are reused, not rerun; the others are
trained. With `deterministic=True` children train bit-identically too, so a
killed and resumed search writes the same trials as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Any, Callable, Mapping

import numpy as np
from absl import logging

import controller as controller_lib
import rewards as rewards_lib
import search_space
from mnas_search import backends as backends_lib
from mnas_search import pareto as pareto_lib
from mnas_search.progress import Progress
from mnas_search.proxy import ProxyTask
from mnas_search.store import SearchStore

# Settings a resume may change; everything else must match params.json.
MAY_CHANGE_ON_RESUME = ("trials", "backend", "workers", "ray_address", "cpus_per_trial",
                        "gpus_per_trial", "strategy", "tpu")
COST_TARGET_FIELD = {kind: field for kind, (field, _) in rewards_lib.COST_TARGETS.items()}


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Every setting of a search; written to params.json.

  Attributes:
    space: search space name (`search_space.SPACES`).
    controller: controller name (`controller.NAMES`).
    controller_hparams: extra controller settings, as (name, value) pairs.
    reward: reward name (`rewards.REWARDS`).
    w: the reward's exponent/coefficient; None for the reward's default (-0.07 for mnas).
    cost: the cost kind the reward uses: flops, params or latency.
    target_flops: T for cost=flops, in multiply-adds at `cost_resolution`.
    target_params: T for cost=params.
    target_latency_ms: T for cost=latency, in milliseconds on this machine's CPU (TFLite).
    latency_threads: TFLite threads of the latency lookup table (cost=latency).
    latency_cache_dir: where the latency lookup tables live; None for the default.
    trials: finished trials to reach.
    trials_per_update: K, children per controller update.
    cost_resolution: resolution at which the deploy cost is counted (224 as in the paper).
    cost_num_classes: classes at which the deploy cost is counted (1000 as in the paper).
    task: the proxy task children are trained on.
    backend: inline, process or ray.
    workers: concurrent children (process and ray).
    ray_address: join this Ray cluster; None starts a local one.
    cpus_per_trial, gpus_per_trial: Ray resources of one trial.
    strategy: tf.distribute strategy name for each child.
    tpu: TPU address for strategy=tpu.
    seed: seeds the controller and every child.
    deterministic: seeded, deterministic TF ops, so a resumed search repeats exactly.
    references: named networks scored once on the same proxy (references.json).
  """

  space: str = "default"
  controller: str = "ppo"
  controller_hparams: tuple[tuple[str, Any], ...] = ()
  reward: str = "mnas"
  w: float | None = None
  cost: str = "flops"
  target_flops: float | None = 400e6
  target_params: float | None = None
  target_latency_ms: float | None = None
  latency_threads: int = 1
  latency_cache_dir: str | None = None
  trials: int = 100
  trials_per_update: int = 8
  cost_resolution: int = 224
  cost_num_classes: int = 1000
  task: ProxyTask = dataclasses.field(default_factory=ProxyTask)
  backend: str = "inline"
  workers: int = 1
  ray_address: str | None = None
  cpus_per_trial: float = 1.0
  gpus_per_trial: float = 0.0
  strategy: str = "auto"
  tpu: str | None = None
  seed: int = 0
  deterministic: bool = False
  references: tuple[str, ...] = ("efficientnet-b0", "mnasnet-a1")

  def __post_init__(self):
    search_space.get_space(self.space)
    if self.controller not in controller_lib.NAMES:
      raise ValueError(f"--controller={self.controller!r} is invalid; allowed: "
                       f"{', '.join(controller_lib.NAMES)}")
    if self.reward not in rewards_lib.REWARDS:
      raise ValueError(f"--reward={self.reward!r} is invalid; allowed: {', '.join(rewards_lib.REWARDS)}")
    if self.cost not in COST_TARGET_FIELD:
      raise ValueError(f"--cost={self.cost!r} is invalid; allowed: {', '.join(COST_TARGET_FIELD)}")
    target = self.target
    if target is None or not target > 0 or not math.isfinite(target):
      raise ValueError(f"--{COST_TARGET_FIELD[self.cost]}={target!r} is invalid for --cost={self.cost}; "
                       "allowed: a number > 0")
    for name in ("trials", "trials_per_update", "cost_resolution", "cost_num_classes", "workers"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"--{name}={v!r} is invalid; allowed: an integer >= 1")
    if self.backend not in backends_lib.BACKENDS:
      raise ValueError(f"--backend={self.backend!r} is invalid; allowed: {', '.join(backends_lib.BACKENDS)}")
    if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
      raise ValueError(f"--seed={self.seed!r} is invalid; allowed: an integer >= 0")
    for name in self.references:
      if name not in search_space.NAMED:
        raise ValueError(f"--references: {name!r} is not a named network; allowed: "
                         f"{sorted(search_space.NAMED)}")
    # Check the reward's coefficient now, not after the first child has trained.
    rewards_lib.compute(self.reward, 0.5, target, target, self.w)

  @property
  def target(self) -> float | None:
    return getattr(self, COST_TARGET_FIELD[self.cost])

  def to_params(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["task"] = self.task.to_dict()
    d["controller_hparams"] = dict(self.controller_hparams)
    d["references"] = list(self.references)
    return d


KILL_ENV = "MNAS_SEARCH_KILL_AT"
KILL_POINTS = ("child_trained", "controller_updated", "checkpoint_saved")
_kill_counts: dict[str, int] = {}


def _kill_point(name: str) -> None:
  """Fault injection for the crash tests: SIGKILL this process at the n-th pass of a named point.

  Set `MNAS_SEARCH_KILL_AT=name:n` (name in `KILL_POINTS`). A real SIGKILL, not an
  exception: nothing gets to clean up, exactly as when a machine dies.
  """
  spec = os.environ.get(KILL_ENV)
  if not spec:
    return
  target, _, count = spec.partition(":")
  if target != name:
    return
  _kill_counts[name] = _kill_counts.get(name, 0) + 1
  if _kill_counts[name] == int(count or 1):
    os.kill(os.getpid(), signal.SIGKILL)


def trial_seed(seed: int, trial: int) -> int:
  """A per-trial seed that differs across trials and across search seeds.

  Reference networks use negative trial numbers; they get a stream of their own
  (SeedSequence takes only non-negative entropy).
  """
  entropy = [seed, 0, trial] if trial >= 0 else [seed, 1, -trial]
  return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2 ** 31 - 1))


@dataclasses.dataclass
class SearchSummary:
  """What a finished (or stopped) `run_search` reports."""

  trials: int
  updates: int
  best: dict[str, Any] | None
  references: dict[str, Any]
  wall_seconds: float
  timings: dict[str, float]


class _Board:
  """TensorBoard scalars and text, written lazily (TF is imported on first use)."""

  def __init__(self, logdir: str):
    import tensorflow as tf
    self._tf = tf
    self._writer = tf.summary.create_file_writer(logdir)

  def scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
    with self._writer.as_default():
      for k, v in values.items():
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
          self._tf.summary.scalar(f"{prefix}/{k}", float(v), step=step)

  def text(self, tag: str, step: int, text: str) -> None:
    with self._writer.as_default():
      self._tf.summary.text(tag, text, step=step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class Search:
  """One search over one search directory (new or resumed).

  Args:
    search_dir: the search directory.
    config: every setting.
    on_trial: optional callback(record) after each trial is stored (tests, UIs).
    show_progress: draw a progress bar on stderr.
  """

  def __init__(self, search_dir: str, config: SearchConfig,
               on_trial: Callable[[dict[str, Any]], None] | None = None, show_progress: bool = True):
    self.config = config
    self.store = SearchStore(search_dir)
    self.space = search_space.get_space(config.space)
    self.on_trial = on_trial
    self.show_progress = show_progress
    # controller_startup: this process's first sample + update, where TF traces the policy's graphs.
    self.timings = {"controller": 0.0, "controller_startup": 0.0, "cost": 0.0, "store": 0.0,
                    "children": 0.0}
    self._latency = None
    if config.cost == "latency":
      from mnas_search.latency import LatencyModel
      # Measured on this machine, lazily: a new block configuration is timed the first time it shows up.
      self._latency = LatencyModel(cache_dir=config.latency_cache_dir, threads=config.latency_threads,
                                   resolution=config.cost_resolution, num_classes=config.cost_num_classes)

  # --------------------------------------------------------------------------- helpers
  def _cost_of(self, arch) -> tuple[int, int, float | None, float]:
    """(flops, params, latency_ms or None, the cost the reward uses) at the deploy resolution."""
    c = self.config
    flops = search_space.count_flops(arch, c.cost_resolution, c.cost_num_classes)
    params = search_space.count_params(arch, c.cost_num_classes)
    latency_ms = self._latency.predict_ms(arch) if self._latency is not None else None
    cost = rewards_lib.select_cost(c.cost, flops=flops, params=params, latency_ms=latency_ms)
    return flops, params, latency_ms, cost

  def _reward(self, status: str, accuracy: float, cost: float) -> float:
    if status != "ok":
      return 0.0  # failed and timed-out children: recorded, reward 0, never dropped
    return float(rewards_lib.compute(self.config.reward, accuracy, cost, self.config.target, self.config.w))

  def _job(self, trial: int, arch) -> backends_lib.Job:
    c = self.config
    return backends_lib.Job(trial=trial, arch=arch, task=c.task, seed=trial_seed(c.seed, trial),
                            deterministic=c.deterministic, strategy=c.strategy, tpu=c.tpu)

  def _record(self, trial: int, update: int, arch, indices, result, cost_tuple) -> dict[str, Any]:
    flops, params, latency_ms, cost = cost_tuple
    accuracy = float(result.accuracy) if result.accuracy is not None else 0.0
    if not math.isfinite(accuracy):
      accuracy = 0.0
    return {"trial": trial, "arch": arch.to_dict(), "blocks": arch.block_strings,
            "indices": list(indices), "flops": int(flops), "params": int(params),
            "accuracy": accuracy, "reward": self._reward(result.status, accuracy, cost),
            "status": result.status, "error": result.error,
            "train_seconds": float(result.train_seconds), "images_per_sec": float(result.images_per_sec),
            "proxy_flops": int(result.proxy_flops), "update": update,
            "seed": trial_seed(self.config.seed, trial), "cached_from": None,
            **({"latency_ms": latency_ms} if latency_ms is not None else {})}

  def _backend(self):
    c = self.config
    return backends_lib.make_backend(c.backend, workers=c.workers, ray_address=c.ray_address,
                                     cpus_per_trial=c.cpus_per_trial, gpus_per_trial=c.gpus_per_trial,
                                     hard_timeout_s=backends_lib.hard_timeout_for(c.task.timeout_s))

  # --------------------------------------------------------------------------- references
  def _score_references(self, backend) -> dict[str, Any]:
    refs = self.store.read_references()
    missing = [n for n in self.config.references if n not in refs]
    if not missing:
      return refs
    logging.info("scoring reference network(s) %s on the same proxy", ", ".join(missing))
    jobs, costs = [], {}
    for i, name in enumerate(missing):
      arch = search_space.named(name)
      job = self._job(-1 - i, arch)
      jobs.append(job)
      costs[job.trial] = (name, arch, self._cost_of(arch))
    t0 = time.perf_counter()
    for job, result in backend.run(jobs):
      name, arch, cost_tuple = costs[job.trial]
      rec = self._record(job.trial, -1, arch, (), result, cost_tuple)
      rec.pop("indices")
      refs[name] = rec
      logging.info("reference %s: accuracy %.4f, reward %.4f, %s", name, rec["accuracy"], rec["reward"],
                   rec["status"])
    self.timings["children"] += time.perf_counter() - t0
    self.store.write_references(refs)
    return refs

  # --------------------------------------------------------------------------- main loop
  def run(self) -> SearchSummary:
    c = self.config
    t_start = time.perf_counter()
    store = self.store
    if c.deterministic:
      import keras
      import tensorflow as tf
      keras.utils.set_random_seed(c.seed)
      tf.config.experimental.enable_op_determinism()
    # Built before anything is written, so that a bad hparam leaves no half-made search behind.
    ctrl = controller_lib.make(c.controller, self.space.arities, seed=c.seed, **dict(c.controller_hparams))
    store.repair()
    resumed = store.write_or_check_params(c.to_params(), MAY_CHANGE_ON_RESUME)
    restored = ctrl.restore(store.controller_dir)
    records = store.read_trials()
    by_trial = {r["trial"]: r for r in records}
    if len(by_trial) != len(records):
      raise ValueError(f"{store.path('trials.jsonl')!r} has duplicate trial numbers; it was edited by hand?")
    originals = {}  # arch key -> first record of that architecture
    for r in sorted(records, key=lambda r: r["trial"]):
      originals.setdefault(search_space.Architecture.from_dict(r["arch"]).identity(),
                           r if r.get("cached_from") is None else by_trial.get(r["cached_from"], r))
    logged_updates = {u["update"] for u in store.read_updates()}
    best = store.read_best()
    trial, update = ctrl.num_sampled, ctrl.num_updates
    if resumed:
      logging.info("resuming %s: %d trials stored, controller at update %d (%s)", store.directory,
                   len(records), update, "restored" if restored else "fresh")
    board = _Board(store.tb_dir)
    progress = Progress(total=c.trials, done=min(len(records), c.trials), enabled=self.show_progress)
    if best:
      progress.best = best["reward"]
    first_update_done = False
    with self._backend() as backend:
      refs = self._score_references(backend)
      while trial < c.trials:
        k = min(c.trials_per_update, c.trials - trial)
        ctrl_key = "controller" if first_update_done else "controller_startup"
        t0 = time.perf_counter()
        samples = ctrl.sample(k)
        self.timings[ctrl_key] += time.perf_counter() - t0
        t0 = time.perf_counter()
        batch: dict[int, dict[str, Any]] = {}
        jobs, extras, deferred = [], {}, []
        for j, s in enumerate(samples):
          t = trial + j
          arch = self.space.decode(s.indices, name=f"trial-{t}")
          key = arch.identity()
          if t in by_trial:  # finished before a crash: reuse, never rerun
            rec = by_trial[t]
            if list(rec["indices"]) != list(s.indices):
              logging.error("trial %d: the restored controller sampled %s but trials.jsonl holds %s; "
                            "keeping the stored trial", t, list(s.indices), rec["indices"])
            batch[t] = rec
            continue
          if key in originals:
            batch[t] = self._cached_record(t, update, arch, s.indices, originals[key])
            continue
          if key in extras:  # the same architecture twice in one batch: train once
            deferred.append((t, arch, s.indices, key))
            continue
          extras[key] = (arch, s.indices, self._cost_of(arch))
          jobs.append(self._job(t, arch))
        self.timings["cost"] += time.perf_counter() - t0
        # Cached records are stored first: they need no training.
        for t in sorted(batch):
          if t not in by_trial:
            self._store_trial(batch[t], by_trial, board, progress)
        key_of = {job.trial: job.arch.identity() for job in jobs}
        t_children = time.perf_counter()
        for job, result in backend.run(jobs):
          self.timings["children"] += time.perf_counter() - t_children
          _kill_point("child_trained")  # trained, not yet stored: a resume must retrain it
          arch, indices, cost_tuple = extras[key_of[job.trial]]
          rec = self._record(job.trial, update, job.arch, indices, result, cost_tuple)
          originals[key_of[job.trial]] = rec
          batch[job.trial] = rec
          self._store_trial(rec, by_trial, board, progress)
          t_children = time.perf_counter()
        for t, arch, indices, key in deferred:
          batch[t] = self._cached_record(t, update, arch, indices, originals[key])
          self._store_trial(batch[t], by_trial, board, progress)
        rewards = [batch[trial + j]["reward"] for j in range(k)]
        t0 = time.perf_counter()
        metrics = ctrl.update(samples, rewards)
        self.timings[ctrl_key] += time.perf_counter() - t0
        first_update_done = True
        _kill_point("controller_updated")  # updated in memory, not yet checkpointed
        t0 = time.perf_counter()
        metrics = {k_: float(v) for k_, v in metrics.items()}
        if update not in logged_updates:
          store.append_update({"update": update, "trials": trial + k, **metrics,
                               "best_reward": progress.best})
          logged_updates.add(update)
        board.scalars("controller", update, metrics)
        self.timings["store"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        ctrl.save(store.controller_dir)  # atomic; after this the batch is consumed
        self.timings["controller"] += time.perf_counter() - t0
        _kill_point("checkpoint_saved")
        t0 = time.perf_counter()
        ok = [r for r in by_trial.values() if r["status"] == "ok"]
        pareto_lib.update_pareto_file(store.path("pareto.json"), ok)
        board.flush()
        self.timings["store"] += time.perf_counter() - t0
        trial += k
        update += 1
    progress.close()
    board.close()
    best = store.read_best()
    wall = time.perf_counter() - t_start
    return SearchSummary(trials=len(by_trial), updates=update, best=best, references=refs,
                         wall_seconds=wall, timings=dict(self.timings))

  def _cached_record(self, trial: int, update: int, arch, indices, original) -> dict[str, Any]:
    rec = dict(original)
    rec.update({"trial": trial, "arch": arch.to_dict(), "indices": list(indices), "status": "cached",
                "train_seconds": 0.0, "update": update, "seed": trial_seed(self.config.seed, trial),
                "cached_from": original["trial"]})
    return rec

  def _store_trial(self, rec, by_trial, board, progress) -> None:
    t0 = time.perf_counter()
    self.store.append_trial(rec)
    by_trial[rec["trial"]] = rec
    board.scalars("trial", rec["trial"], {k: rec[k] for k in ("accuracy", "reward", "flops", "params")})
    if rec["status"] == "ok" and (progress.best is None or rec["reward"] > progress.best):
      best = {k: rec[k] for k in ("trial", "reward", "accuracy", "flops", "params", "blocks", "arch")}
      self.store.write_best(best)
      board.text("best_architecture", rec["trial"], "\n".join(f"    {b}" for b in rec["blocks"]) +
                 f"\n\nreward {rec['reward']:.4f}, accuracy {rec['accuracy']:.4f}, "
                 f"{rec['flops'] / 1e6:.1f}M FLOPs")
      progress.best = rec["reward"]
    logging.info("trial %d  %-7s acc %.4f  reward %.4f  %6.1fM FLOPs  %5.2fM params  %.1fs%s",
                 rec["trial"], rec["status"], rec["accuracy"], rec["reward"], rec["flops"] / 1e6,
                 rec["params"] / 1e6, rec["train_seconds"],
                 f"  ({rec['error'].splitlines()[0][:120]})" if rec.get("error") else "")
    progress.advance()
    self.timings["store"] += time.perf_counter() - t0
    if self.on_trial:
      self.on_trial(rec)


def run_search(search_dir: str, config: SearchConfig, **kwargs) -> SearchSummary:
  """Runs (or resumes) a search; see `Search`."""
  return Search(search_dir, config, **kwargs).run()
