"""Does multi-fidelity help? --scheduler none vs sha vs hyperband at equal compute.

    python benchmarks/multi_fidelity.py [--out=results/multi_fidelity] [--seeds=5]
        [--controllers=random,ppo] [--compute=64] [--summary]

Part 1, here: a synthetic landscape whose optimum is known and whose noise follows what this
project measured. Every run uses the real controllers (`controller.make`) and the real scheduling
policy (`SuccessiveHalving.bracket`, `Hyperband`'s bracket rotation, `promoted`,
`controller_rewards`, `SearchConfig.budgets`); only a child's training is replaced by the model
below, so hundreds of runs take minutes.

The model of a child's score at budget b of B (f = b / B), for architecture a and trial t:

    score(a, b) = c(f) * s(a) + bias * (1 - f) * z(a) + noise / sqrt(f) * e(t)

- s(a): the landscape's noise-free score (onemax over the default space's decisions; 1 at the
  optimum): what the ground truth would say.
- c(f) = 0.6 + 0.4 sqrt(f): the learning curve (a less-trained child scores lower).
- z(a) ~ N(0, 1), fixed per architecture: what a short run prefers that a long one does not
  (e.g. shallow networks). It makes low rungs rank worse, as our short proxies do against G.
- e(t) ~ N(0, 1) per trial, the same at every rung of that child (one training run, continued).
- noise, bias: in units of the spread of s over random architectures (its std). Measured here,
  the seed noise of the best short proxy (B0 1.07, A1 0.32 points over 5 seeds; about 0.7 on
  average) is about the spread of G's accuracies over its networks (0.70 points, 14 networks):
  noise = 1.0 spread at the full budget (3 times that at the lowest rung, f = 1/9); bias = 0.5.

Equal compute: a job that trains a child from budget b0 to b costs (b - b0) + FIXED budget units
(FIXED: a child's fixed cost, 4 s of start-up against about 29 s per proxy epoch, both measured
here). Each run proposes batches of K = 9 until the next batch would overrun `--compute` full-budget
children's worth. Reported per run: the noise-free score of the chosen best (best.json's rule: the
highest budget, then the reward), its regret 1 - s, and Kendall tau between the run's final
(full-budget) scores and s.

Part 2 (real children on Fashion-MNIST, scored on the ground truth G) is not run yet: see the README.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

import controller
from controller import landscapes
from mnas_search.cli import quiet
from mnas_search.search.proposer import Candidate
from mnas_search.search.scheduler import Hyperband, SuccessiveHalving, controller_rewards
from mnas_search.util import fileio, stats
from search_space import default_space

MAX_BUDGET, MIN_BUDGET, ETA, K = 9, 1, 3, 9
FIXED = 4.0 / 29.0  # a child's fixed cost in proxy epochs (see the docstring)
NOISE, BIAS = 1.0, 0.5  # in units of the truth's spread over random architectures (see the docstring)
SCHEDULERS = ("none", "sha", "hyperband")
RUNS = "synthetic.jsonl"


def make_policy(name: str):
  """The scheduling policy of a --scheduler value (none: one rung at the full budget)."""
  if name == "none":
    return SuccessiveHalving((MAX_BUDGET,), ETA)
  budgets = (1, 3, 9)  # SearchConfig(min_budget=1, max_budget=9, eta=3).budgets
  return (SuccessiveHalving if name == "sha" else Hyperband)(budgets, ETA)


class Model:
  """The multi-fidelity model of the docstring, for one seed's landscape."""

  def __init__(self, seed: int, arities, noise: float = NOISE, bias: float = BIAS):
    self.land = landscapes.make_landscape("onemax", arities, seed, noise=0.0)
    # onemax's std over uniformly random architectures: each decision matches with p = 1/arity.
    p = 1.0 / np.asarray(arities, float)
    self.spread = float(np.sqrt(np.sum(p * (1 - p))) / len(arities))
    self.noise, self.bias, self.seed = noise * self.spread, bias * self.spread, seed

  def z(self, indices) -> float:
    h = hashlib.sha256(json.dumps([self.seed, list(map(int, indices))]).encode()).digest()
    return float(np.random.default_rng(list(h[:8])).standard_normal())

  def truth(self, indices) -> float:
    return float(self.land.score([indices])[0])

  def score(self, indices, budget: int, e: float) -> float:
    f = budget / MAX_BUDGET
    return ((0.6 + 0.4 * np.sqrt(f)) * self.truth(indices) + self.bias * (1 - f) * self.z(indices)
            + self.noise / np.sqrt(f) * e)


def run_one(scheduler: str, ctrl_name: str, seed: int, compute: float, rule: str = "highest") -> dict:
  """One search on the model; returns its record (see the module docstring)."""
  arities = default_space().arities
  model, policy = Model(seed, arities), make_policy(scheduler)
  ctrl = controller.make(ctrl_name, arities, seed=seed)
  noise_rng = np.random.default_rng([seed, 11])
  spent, limit, trial, update = 0.0, compute * (MAX_BUDGET + FIXED), 0, 0
  finals: dict[int, dict] = {}
  errors: dict[int, float] = {}
  t0 = time.perf_counter()
  while True:
    rungs = policy.rungs(update)
    worst = K * (rungs[0].budget - rungs[0].previous + FIXED) + sum(
        (r.budget - r.previous + FIXED) * max(1, -(-K // ETA ** (i + 1))) for i, r in enumerate(rungs[1:]))
    if spent + worst > limit:
      break
    samples = ctrl.sample(K)
    cands = [Candidate(trial + j, None, s) for j, s in enumerate(samples)]
    for c in cands:
      errors[c.trial] = float(noise_rng.standard_normal())

    def train_rung(alive, rung):
      nonlocal spent
      spent += len(alive) * (rung.budget - rung.previous + FIXED)
      return {c.trial: {"trial": c.trial, "reward": model.score(c.sample.indices, rung.budget,
                                                                 errors[c.trial]),
                        "budget": rung.budget, "rung": rung.index, "indices": c.sample.indices}
              for c in alive}

    batch = policy.bracket(cands, update, train_rung, lambda trials, budget: None)
    finals.update(batch)
    ctrl.update(samples, controller_rewards(cands, batch, rule))
    trial, update = trial + K, update + 1
  full = [r for r in finals.values() if r["budget"] == MAX_BUDGET]
  best = max(full, key=lambda r: (r["reward"], -r["trial"]))
  truth = [model.truth(r["indices"]) for r in full]
  tau = stats.kendall_tau([r["reward"] for r in full], truth) if len(full) > 2 else None
  return {"scheduler": scheduler, "controller": ctrl_name, "seed": seed, "rule": rule,
          "compute": compute, "spent": round(spent, 2), "children": len(finals),
          "full_budget_children": len(full), "updates": update,
          "best_truth": model.truth(best["indices"]), "regret": 1.0 - model.truth(best["indices"]),
          "final_tau": tau, "seconds": round(time.perf_counter() - t0, 2)}


def rung_agreement(seeds: int = 3, n: int = 300) -> dict[int, float]:
  """Kendall tau between the model's score at each budget and the truth (random architectures):
  the landscape's measured fidelity."""
  arities = default_space().arities
  out = {}
  for b in (1, 3, 9):
    taus = []
    for seed in range(seeds):
      model, rng = Model(seed, arities), np.random.default_rng([seed, 5])
      idx = [[int(rng.integers(a)) for a in arities] for _ in range(n)]
      taus.append(stats.kendall_tau([model.score(i, b, rng.standard_normal()) for i in idx],
                                    [model.truth(i) for i in idx]))
    out[b] = round(float(np.mean(taus)), 3)
  return out


def summarize(runs: list[dict]) -> str:
  """The README table: regret and tau per (controller, scheduler, rule), mean ± std (n), and each
  scheduler against none (bootstrap 90% interval of the regret difference, permutation p)."""
  groups: dict[tuple, list[dict]] = {}
  for r in runs:
    groups.setdefault((r["controller"], r["scheduler"], r["rule"]), []).append(r)
  lines = ["| controller | scheduler | reward rule | n | children | regret (mean ± std) | "
           "final tau | regret − none [90% CI] | p (two-sided) |", "|" + "---|" * 9]
  for (ctrl, sched, rule), rs in sorted(groups.items()):
    reg = np.array([r["regret"] for r in rs])
    taus = [r["final_tau"] for r in rs if r["final_tau"] is not None]
    base = groups.get((ctrl, "none", "highest"))
    cmp_text = p_text = "—"
    if base and sched != "none":
      other = [b["regret"] for b in base]
      lo, hi = stats.bootstrap_mean_difference_interval(list(reg), other)
      cmp_text = f"{reg.mean() - np.mean(other):+.4f} [{lo:+.4f}, {hi:+.4f}]"
      p_text = f"{stats.permutation_test(list(reg), other):.3g}"
    lines.append(f"| {ctrl} | {sched} | {rule} | {len(rs)} | {np.mean([r['children'] for r in rs]):.0f} | "
                 f"{reg.mean():.4f} ± {reg.std(ddof=1) if len(rs) > 1 else 0:.4f} | "
                 f"{np.mean(taus):.2f} | {cmp_text} | {p_text} |")
  return "\n".join(lines)


FLAGS = flags.FLAGS
flags.DEFINE_string("out", "results/multi_fidelity", "Output folder (runs are appended; a rerun "
                    "skips the runs it holds).")
flags.DEFINE_integer("seeds", 5, "Seeds per (controller, scheduler).", lower_bound=1)
flags.DEFINE_list("controllers", ["random", "ppo"], "Controllers.")
flags.DEFINE_float("compute", 64, "Compute per run, in full-budget children (their fixed cost included).",
                   lower_bound=1)
flags.DEFINE_bool("summary", False, "Only summarize the stored runs.")


def main(argv):
  del argv
  path = os.path.join(FLAGS.out, RUNS)
  os.makedirs(FLAGS.out, exist_ok=True)
  runs = fileio.read_jsonl(path) if os.path.exists(path) else []
  if not FLAGS.summary:
    done = {(r["scheduler"], r["controller"], r["seed"], r["rule"], r["compute"]) for r in runs}
    plan = [(s, c, seed, "highest") for c in FLAGS.controllers for s in SCHEDULERS
            for seed in range(FLAGS.seeds)]
    plan += [("sha", c, seed, "rank") for c in FLAGS.controllers if c != "random"
             for seed in range(FLAGS.seeds)]
    for s, c, seed, rule in plan:
      if (s, c, seed, rule, FLAGS.compute) in done:
        continue
      rec = run_one(s, c, seed, FLAGS.compute, rule)
      fileio.append_jsonl(path, rec)
      runs.append(rec)
      print(f"{c} {s} {rule} seed {seed}: regret {rec['regret']:.4f}, {rec['children']} children, "
            f"{rec['seconds']}s", file=sys.stderr, flush=True)
  spread = Model(0, default_space().arities).spread
  print(f"model: K={K}, budgets 1/3/9 (eta {ETA}), fixed cost {FIXED:.3f} epochs, noise {NOISE} and "
        f"bias {BIAS} x the truth's spread {spread:.4f}; Kendall tau of the score with the truth "
        f"by budget (random architectures): {rung_agreement()}")
  print(summarize([r for r in runs if r["compute"] == FLAGS.compute]))


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  app.run(main)
