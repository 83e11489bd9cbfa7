"""The settings of a search: the part every search shares, and the multi-trial search's own.

`SharedConfig` holds what a multi-trial and a one-shot search both have (the space, the controller,
the proxy task, the reward and its cost target, the references and the seed) and checks it once.
`SearchConfig` adds the multi-trial search's own settings; `oneshot.search.OneShotConfig` adds the
one-shot search's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from absl import logging

import controller as controller_lib
import rewards as rewards_lib
import search_space
from mnas_search.execution import backends as backends_lib
from mnas_search.training.proxy import ProxyTask
from nas_common import FieldError, check_int

COST_TARGET_FIELD = {kind: field for kind, (field, _) in rewards_lib.COST_TARGETS.items()}
SCHEDULERS = ("none", "sha", "hyperband")
# Written to params.json only with a multi-fidelity scheduler: an older params.json stays as it is.
SCHEDULER_FIELDS = ("scheduler", "min_budget", "max_budget", "eta")


@dataclasses.dataclass(frozen=True)
class SharedConfig:
  """What every search has, checked once here.

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
    cost_resolution: resolution at which the deploy cost is counted (224 as in the paper).
    cost_num_classes: classes at which the deploy cost is counted (1000 as in the paper).
    task: the proxy task children are trained on.
    strategy: tf.distribute strategy name for each child.
    seed: seeds the controller and every child.
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
  cost_resolution: int = 224
  cost_num_classes: int = 1000
  task: ProxyTask = dataclasses.field(default_factory=ProxyTask)
  strategy: str = "auto"
  seed: int = 0
  references: tuple[str, ...] = ("efficientnet-b0", "mnasnet-a1")

  def __post_init__(self):
    if self.space not in search_space.SPACES:
      raise FieldError("space", self.space, ", ".join(sorted(search_space.SPACES)))
    for name, allowed in (("controller", controller_lib.NAMES), ("reward", rewards_lib.REWARDS),
                          ("cost", tuple(COST_TARGET_FIELD))):
      if getattr(self, name) not in allowed:
        raise FieldError(name, getattr(self, name), ", ".join(allowed))
    target = self.target
    if target is None or not target > 0 or not math.isfinite(target):
      raise FieldError(COST_TARGET_FIELD[self.cost], target, "a number > 0",
                       detail=f" for cost={self.cost}")
    for name in ("cost_resolution", "cost_num_classes"):
      check_int(name, getattr(self, name), 1)
    check_int("seed", self.seed, 0)
    for name in self.references:
      if name not in search_space.NAMED:
        raise FieldError("references", name, f"named networks {sorted(search_space.NAMED)}")
    # Check the reward's coefficient now, not after the first child has trained. The reward names
    # it w or beta; here it is the setting w.
    try:
      rewards_lib.compute(self.reward, 0.5, target, target, self.w)
    except FieldError as e:
      raise FieldError("w", self.w, e.allowed, detail=f" for reward={self.reward}") from None

  @property
  def target(self) -> float | None:
    return getattr(self, COST_TARGET_FIELD[self.cost])


@dataclasses.dataclass(frozen=True)
class SearchConfig(SharedConfig):
  """Every setting of a multi-trial search; written to params.json.

  Attributes (besides `SharedConfig`'s):
    trials: finished trials to reach.
    trials_per_update: K, children per controller update.
    backend: inline, process or ray.
    workers: concurrent children (process and ray).
    ray_address: join this Ray cluster; None starts a local one.
    ray_allow_insecure: join a Ray cluster without authentication (else it is refused).
    cpus_per_trial, gpus_per_trial: Ray resources of one trial.
    tpu: TPU address for strategy=tpu.
    deterministic: seeded, deterministic TF ops, so a resumed search repeats exactly.
    warm_start_from: an earlier search directory whose trials seed this one: their architectures
      are not retrained (cached), and the controller first learns from them (`warm_start_trials`).
    backend_requested, threads_per_worker: what `resolved` chose for backend "auto".
    scheduler: "none" (every child trains the whole proxy task), "sha" (successive halving within
      each controller batch) or "hyperband" (its brackets, one per batch in turn).
    min_budget, max_budget: a child's smallest and largest budget, in epochs of the proxy task
      (steps when the task has steps); None: max_budget / eta² (at least 1), and the task's
      epochs (or steps).
    eta: the halving rate: each rung keeps the best 1/eta of its children and gives them eta
      times the budget.
  """

  trials: int = 100
  trials_per_update: int = 8
  backend: str = "auto"
  workers: int = 0
  ray_address: str | None = None
  ray_allow_insecure: bool = False
  cpus_per_trial: float = 1.0
  gpus_per_trial: float = 0.0
  tpu: str | None = None
  deterministic: bool = False
  warm_start_from: str | None = None
  backend_requested: str | None = None
  threads_per_worker: int | None = None
  scheduler: str = "none"
  min_budget: int | None = None
  max_budget: int | None = None
  eta: int = 3

  def __post_init__(self):
    super().__post_init__()
    if self.backend not in ("auto",) + backends_lib.BACKENDS:
      raise FieldError("backend", self.backend, ", ".join(("auto",) + backends_lib.BACKENDS))
    for name in ("trials", "trials_per_update"):
      check_int(name, getattr(self, name), 1)
    check_int("workers", self.workers, 0)  # 0: auto
    self._check_scheduler()

  def _check_scheduler(self) -> None:
    if self.scheduler not in SCHEDULERS:
      raise FieldError("scheduler", self.scheduler, ", ".join(SCHEDULERS))
    if self.scheduler == "none":
      for name, default in (("min_budget", None), ("max_budget", None), ("eta", 3)):
        if getattr(self, name) != default:
          raise FieldError(name, getattr(self, name), "", reason="is taken only with "
                           "scheduler=sha or hyperband")
      return
    check_int("eta", self.eta, 2)
    check_int("min_budget", self.min_budget, 1, allow_none=True)
    check_int("max_budget", self.max_budget, 1, allow_none=True)
    lo, hi = self.budget_range
    if lo * self.eta > hi:  # at least two rungs, or nothing would be stopped early
      if self.min_budget is None:  # the user gave no --min_budget: name what sets the budget
        raise FieldError("max_budget", hi, f"an integer >= eta * min_budget = {self.eta * lo} "
                         "(at least two rungs)", detail=" (default: the proxy's epochs or steps)")
      raise FieldError("min_budget", lo, f"an integer <= max_budget / eta = {hi / self.eta:g} "
                       "(at least two rungs)")

  @property
  def budget_range(self) -> tuple[int, int]:
    """(min_budget, max_budget) with their defaults: max_budget / eta² (at least 1: three rungs
    where the budget allows), and the task's epochs (or steps)."""
    hi = self.max_budget or self.task.steps or self.task.epochs
    return (self.min_budget or max(1, hi // self.eta ** 2), hi)

  @property
  def budgets(self) -> tuple[int, ...]:
    """The rungs' budgets, ascending: max_budget / eta^k rounded up, for every k with
    max_budget / eta^k >= min_budget (9, 1, eta 3: 1, 3, 9); (the task's budget,) without a scheduler."""
    if self.scheduler == "none":
      return (self.task.steps or self.task.epochs,)
    lo, hi = self.budget_range
    out, k = [], 0
    while hi / self.eta ** k >= lo:
      out.append(math.ceil(hi / self.eta ** k - 1e-9))
      k += 1
    return tuple(sorted(set(out)))

  def resolved(self) -> "SearchConfig":
    """This config with backend "auto" / workers 0 replaced by what `backends.resolve_auto` picks for
    this machine and strategy; the choice is kept in params.json (backend_requested, and
    threads_per_worker)."""
    if self.backend != "auto" and self.workers:
      return self
    backend, workers, threads = backends_lib.resolve_auto(self.backend, self.workers or None,
                                                          self.strategy)
    if self.backend == "auto":
      logging.info("--backend=auto chose %s with %d worker(s) of %d thread(s) (%d usable cores, "
                   "strategy %s)", backend, workers, threads, backends_lib.available_cores(),
                   self.strategy)
    return dataclasses.replace(self, backend=backend, workers=workers,
                               backend_requested=self.backend_requested or self.backend,
                               threads_per_worker=threads if backend == "process" else None)

  def to_params(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["task"] = self.task.to_dict()
    d["controller_hparams"] = dict(self.controller_hparams)
    d["references"] = list(self.references)
    if not d["ray_allow_insecure"]:  # written only when set: an older params.json stays as it is
      del d["ray_allow_insecure"]
    if self.scheduler == "none":
      for name in SCHEDULER_FIELDS:
        del d[name]
    return d
