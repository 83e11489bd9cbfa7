"""Schedulers: which candidates of a controller batch train, for how long, and which go on.

- `FullBudget` ("none") trains every candidate once, on the whole proxy task.
- `SuccessiveHalving` ("sha") trains the K candidates of a batch at the lowest budget, keeps the
  best ceil(K / eta) by reward, continues them (from their checkpoints) to eta times the budget,
  and so on up to the largest budget. It is synchronous within the batch, so that the
  controller's batch update stays whole.
- `Hyperband` runs successive-halving brackets in turn, one per controller batch: batch u starts
  its children at rung u mod (number of rungs), from the most aggressive bracket (all rungs) to
  the one that trains every child at the largest budget.

The controller learns from each child's reward at the highest budget it reached
(`controller_rewards`). A child has one record per rung it reached, under one trial number.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from mnas_search.search.config import SearchConfig
from mnas_search.search.executor import Executor, Rung
from mnas_search.search.proposer import Candidate
from mnas_search.search.recorder import Recorder


class FullBudget:
  """Every candidate of a batch trains once, on the whole proxy task."""

  name = "none"

  def run(self, executor: Executor, backend: Any, candidates: list[Candidate], update: int,
          recorder: Recorder) -> dict[int, dict[str, Any]]:
    """Trains (or reuses, or caches) the batch; returns its records by trial."""
    batch = executor.plan(candidates, update, recorder.index)
    executor.train(backend, batch, recorder)
    return batch.records


def promoted(candidates: Sequence[Candidate], records: Mapping[int, Mapping[str, Any]],
             eta: int) -> list[Candidate]:
  """The best ceil(n / eta) candidates by reward at this rung (the lower trial on a tie), in
  trial order. A failed child has reward 0, so it goes on only if most of its rung failed."""
  keep = max(1, math.ceil(len(candidates) / eta))
  ranked = sorted(candidates, key=lambda c: (-records[c.trial]["reward"], c.trial))[:keep]
  return sorted(ranked, key=lambda c: c.trial)


class SuccessiveHalving:
  """Successive halving within each controller batch.

  Args:
    budgets: the rungs' budgets, ascending (`SearchConfig.budgets`).
    eta: each rung keeps the best 1/eta of its children.
  """

  name = "sha"

  def __init__(self, budgets: Sequence[int], eta: int):
    self.budgets, self.eta = tuple(budgets), eta

  def first_rung(self, update: int) -> int:
    """The rung where batch `update`'s children start."""
    del update
    return 0

  def rungs(self, update: int) -> list[Rung]:
    """The rungs batch `update`'s children climb, from its first."""
    start = self.first_rung(update)
    return [Rung(i, self.budgets[i], self.budgets[i - 1] if i > start else 0, self.budgets[-1])
            for i in range(start, len(self.budgets))]

  def bracket(self, candidates: list[Candidate], update: int,
              train_rung: Callable[[list[Candidate], Rung], Mapping[int, dict[str, Any]]],
              discard: Callable[[list[int], int], None]) -> dict[int, dict[str, Any]]:
    """The policy: climbs the rungs with `train_rung(alive, rung) -> records by trial`, keeping the
    best 1/eta each time; `discard(trials, budget)` is told which checkpoints nothing will continue
    from. Returns each child's record at the highest budget it reached."""
    finals: dict[int, dict[str, Any]] = {}
    alive, rungs = list(candidates), self.rungs(update)
    for rung in rungs:
      records = train_rung(alive, rung)
      finals.update(records)
      discard([c.trial for c in alive], rung.previous)  # continued from: no longer needed
      keep = promoted(alive, records, self.eta) if rung is not rungs[-1] else []
      discard([c.trial for c in alive if c not in keep], rung.budget)
      alive = keep
    return finals

  def run(self, executor: Executor, backend: Any, candidates: list[Candidate], update: int,
          recorder: Recorder) -> dict[int, dict[str, Any]]:
    """Trains the batch rung by rung; returns each child's record at the highest budget it reached.

    A resumed batch re-derives the same promotions from the stored records, so it trains only
    what is missing. A child's checkpoint is deleted once nothing will continue from it.
    """
    def train_rung(alive: list[Candidate], rung: Rung) -> dict[int, dict[str, Any]]:
      batch = executor.plan(alive, update, recorder.index, rung)
      executor.train(backend, batch, recorder)
      return batch.records

    return self.bracket(candidates, update, train_rung, executor.discard)


class Hyperband(SuccessiveHalving):
  """Hyperband's brackets, one per controller batch in turn (see the module's docstring)."""

  name = "hyperband"

  def first_rung(self, update: int) -> int:
    return update % len(self.budgets)


def make_scheduler(config: SearchConfig) -> FullBudget | SuccessiveHalving:
  """The scheduler `config.scheduler` names."""
  if config.scheduler == "none":
    return FullBudget()
  cls = SuccessiveHalving if config.scheduler == "sha" else Hyperband
  return cls(config.budgets, config.eta)


REWARD_RULES = ("highest", "rank")


def controller_rewards(candidates: Sequence[Candidate], finals: Mapping[int, Mapping[str, Any]],
                       rule: str = "highest") -> list[float]:
  """What the controller learns from, for a batch whose children stopped at different rungs.

  - "highest": each child's reward at the highest budget it reached. A child stopped early keeps
    its lower, less-trained score, so the controller is pushed toward what survived.
  - "rank": the rung a child reached plus its reward's rank among the children that reached that
    rung, scaled to [0, 1]: scale-free, so a rung's learning-curve offset does not matter.

  benchmarks/multi_fidelity.py compares the two on a noisy synthetic landscape (README).
  """
  if rule == "highest":
    return [finals[c.trial]["reward"] for c in candidates]
  if rule != "rank":
    raise ValueError(f"rule={rule!r} is invalid; allowed: {', '.join(REWARD_RULES)}")
  rung_of = {c.trial: finals[c.trial].get("rung", 0) for c in candidates}
  rungs = sorted(set(rung_of.values()))
  out = []
  for c in candidates:
    peers = sorted(finals[d.trial]["reward"] for d in candidates if rung_of[d.trial] == rung_of[c.trial])
    quantile = sum(r <= finals[c.trial]["reward"] for r in peers) / len(peers)
    out.append((rungs.index(rung_of[c.trial]) + quantile) / len(rungs))
  return out
