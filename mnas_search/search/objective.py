"""The objective: what a child costs at deploy time and the reward it earns.

One place for it, shared by the multi-trial search, the one-shot search and the benchmarks: the
deploy cost is counted (FLOPs, parameters) or looked up (latency) at the configured resolution and
classes, and the reward combines the proxy accuracy with that cost as the configured reward does.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import rewards as rewards_lib
import search_space
from mnas_search.runs.records import Sampled, TrialRecord


class Costs(NamedTuple):
  """A network's deploy costs and the one the reward uses."""

  flops: int
  params: int
  latency_ms: float | None
  cost: float


class Objective:
  """Costs and rewards under one search's settings.

  Args:
    config: a `SharedConfig` (space, reward, w, cost, its target, cost_resolution,
      cost_num_classes and the latency table's settings).
  """

  def __init__(self, config: Any):
    self.config = config
    self._latency = None
    if config.cost == "latency":
      from mnas_search.costs.latency import CalibrationPlan, LatencyModel
      # Measured on this machine, lazily: a new block configuration is timed the first time it shows up.
      self._latency = LatencyModel(cache_dir=config.latency_cache_dir, threads=config.latency_threads,
                                   resolution=config.cost_resolution, num_classes=config.cost_num_classes,
                                   plan=CalibrationPlan(space=search_space.get_space(config.space)))

  def cost_of(self, arch: search_space.Architecture) -> Costs:
    """The deploy costs of `arch` (at `cost_resolution` and `cost_num_classes`)."""
    c = self.config
    flops = search_space.count_flops(arch, c.cost_resolution, c.cost_num_classes)
    params = search_space.count_params(arch, c.cost_num_classes)
    latency_ms = self._latency.predict_ms(arch) if self._latency is not None else None
    cost = rewards_lib.select_cost(c.cost, flops=flops, params=params, latency_ms=latency_ms)
    return Costs(flops, params, latency_ms, cost)

  def reward(self, status: str, accuracy: float, cost: float) -> float:
    """The reward of a child; 0 for a failed or timed-out one (recorded, never dropped)."""
    if status != "ok":
      return 0.0
    c = self.config
    return float(rewards_lib.compute(c.reward, accuracy, cost, c.target, c.w))

  def record(self, child: Sampled, result: Any, costs: Costs) -> dict[str, Any]:
    """The trials.jsonl record of a trained child (indices None for a reference network)."""
    return TrialRecord.from_result(child, result, costs[:3],
                                   lambda status, acc: self.reward(status, acc, costs.cost)).to_json()

  def cached_record(self, original: dict[str, Any], child: Sampled) -> dict[str, Any]:
    """`original`'s score for `child`, with the child's own deploy costs and reward where its
    architecture differs (one that trains as the same network)."""
    rec = TrialRecord.from_json(original)
    if search_space.Architecture.from_dict(rec.arch).identity() == child.arch.identity():
      return rec.cached_as(child).to_json()
    costs = self.cost_of(child.arch)
    return rec.cached_as(child, costs[:3],
                         lambda status, acc: self.reward(status, acc, costs.cost)).to_json()
