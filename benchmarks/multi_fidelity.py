"""Does multi-fidelity help? --scheduler none vs sha vs hyperband at equal compute.

    python benchmarks/multi_fidelity.py [--out=results/multi_fidelity] [--seeds=5]
        [--controllers=random,ppo] [--compute=64] [--fixed=0.138] [--summary]

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
here; `--fixed` sets another, e.g. the real stage's 4.572). Each run proposes batches of K = 9
until the next batch would overrun `--compute` full-budget children's worth. Reported per run:
the noise-free score of the chosen best (best.json's rule: the highest budget, then the reward),
its regret 1 - s, and Kendall tau between the run's final (full-budget) scores and s.

Part 2, `--stages=real`: real searches on Fashion-MNIST with the proxy `--proxy` (a candidate of
benchmarks/ground_truth.py), the budget in optimizer steps (max: the proxy's steps, min: a ninth),
each run given `--real_compute` full-budget children's worth of compute by the same cost rule (the
fixed cost per job here is measured, not assumed: on the first `none` run's children, their fixed
seconds over their steady seconds per step, kept in OUT/real/fixed_cost.json for every later run), and
each run's best trained in G's regime (`ground_truth.G_TASK`) and scored on the test split. Search
directories resume natively (a run's `run.json` is written when it finishes; its wall_seconds
count only the last, resumed part of a run that was stopped), and G's records go to
OUT/real/g/records.jsonl in G's contract;
`--stages=real_summary` reads only the records. `--quick` shrinks everything (tests).
`--real_topup_seeds`: equal steps need not be equal seconds (a short or continued job's fixed cost
is below the planned charge), so on these seeds each scheduler run also gets a copy, DIR-eqs,
extended by whole controller batches to the job seconds of the same seed's `none` run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Any

import numpy as np
from absl import app, flags

import controller
from controller import landscapes
from mnas_search.analysis import ground_truth as gt
from mnas_search.cli import quiet
from mnas_search.runs import records
from mnas_search.search.proposer import Candidate
from mnas_search.search.scheduler import Hyperband, SuccessiveHalving, controller_rewards
from mnas_search.util import fileio, stats
from search_space import default_space

MAX_BUDGET, ETA, K = 9, 3, 9
FIXED = 4.0 / 29.0  # a child's fixed cost in proxy epochs (see the docstring)
REAL_FIXED = round(127.0 / 250 * MAX_BUDGET, 3)  # the real stage's measured cost (fixed_cost.json)
NOISE, BIAS = 1.0, 0.5  # in units of the truth's spread over random architectures (see the docstring)
SCHEDULERS = ("none", "sha", "hyperband")
RUNS = "synthetic.jsonl"


def bracket_cost(policy, update: int, k: int, fixed: float) -> float:
  """What batch `update`'s bracket costs at most, in budget units: every rung's children times
  their stretch plus a fixed cost per job (ceil(k / eta^i) children reach the i-th rung)."""
  cost, n = 0.0, k
  for r in policy.rungs(update):
    cost += n * (r.budget - r.previous + fixed)
    n = max(1, -(-n // policy.eta))
  return cost


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


def run_one(scheduler: str, ctrl_name: str, seed: int, compute: float, rule: str = "highest",
            fixed: float = FIXED) -> dict:
  """One search on the model with a fixed cost per job of `fixed` budget units; returns its
  record (see the module docstring)."""
  arities = default_space().arities
  model, policy = Model(seed, arities), make_policy(scheduler)
  ctrl = controller.make(ctrl_name, arities, seed=seed)
  noise_rng = np.random.default_rng([seed, 11])
  spent, limit, trial, update = 0.0, compute * (MAX_BUDGET + fixed), 0, 0
  finals: dict[int, dict] = {}
  errors: dict[int, float] = {}
  t0 = time.perf_counter()
  while True:
    if spent + bracket_cost(policy, update, K, fixed) > limit:
      break
    samples = ctrl.sample(K)
    cands = [Candidate(trial + j, None, s) for j, s in enumerate(samples)]
    for c in cands:
      errors[c.trial] = float(noise_rng.standard_normal())

    def train_rung(alive, rung):
      nonlocal spent
      spent += len(alive) * (rung.budget - rung.previous + fixed)
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
          "compute": compute, "fixed": round(fixed, 4), "spent": round(spent, 2), "children": len(finals),
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


def against(x: list[float], base: list[float], digits: int) -> tuple[str, str]:
  """The table cells of `x` against `base`: the mean difference with its 90% bootstrap interval,
  and the two-sided permutation p."""
  lo, hi = stats.bootstrap_mean_difference_interval(x, base)
  return (f"{np.mean(x) - np.mean(base):+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]",
          f"{stats.permutation_test(x, base):.3g}")


def selected(runs: list[dict], compute: float, fixed: float, seeds: int) -> list[dict]:
  """The synthetic runs of one setting: `compute`, `fixed` (records older than that field used
  FIXED) and seeds below `seeds`, so that a table with more seeds leaves the 5-seed one alone."""
  return [r for r in runs if r["compute"] == compute and r["seed"] < seeds
          and abs(r.get("fixed", FIXED) - fixed) < 1e-3]


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
      cmp_text, p_text = against(list(reg), [b["regret"] for b in base], 4)
    lines.append(f"| {ctrl} | {sched} | {rule} | {len(rs)} | {np.mean([r['children'] for r in rs]):.0f} | "
                 f"{reg.mean():.4f} ± {reg.std(ddof=1) if len(rs) > 1 else 0:.4f} | "
                 f"{np.mean(taus):.2f} | {cmp_text} | {p_text} |")
  return "\n".join(lines)


def fixed_cost_table(runs: list[dict], fixeds: tuple[float, ...] = (FIXED, REAL_FIXED),
                     seeds: int = 50) -> str:
  """The README's sensitivity table: the random controller's regret by scheduler at each fixed
  cost per job, 64 full children of compute, seeds below `seeds`; empty without such runs."""
  lines = []
  for fixed in fixeds:
    rs = [r for r in selected(runs, 64, fixed, seeds) if r["controller"] == "random" and r["rule"] == "highest"]
    base = [r["regret"] for r in rs if r["scheduler"] == "none"]
    for sched in SCHEDULERS:
      reg = [r["regret"] for r in rs if r["scheduler"] == sched]
      if not reg:
        continue
      diff, p = against(reg, base, 4) if sched != "none" and base else ("—", "—")
      children = np.mean([r["children"] for r in rs if r["scheduler"] == sched])
      lines.append(f"| {fixed:.2f} | {sched} | {len(reg)} | {children:.0f} | {np.mean(reg):.4f} ± "
                   f"{np.std(reg, ddof=1):.4f} | {diff} | {p} |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- real children
def real_plan(proxy: str, quick: bool = False) -> tuple[Any, int, int]:
  """(task in steps, min budget, max budget) of the real stage's proxy."""
  import ground_truth as gtb  # benchmarks/ground_truth.py: G's recipe and the candidate proxies
  task = gtb.QUICK_PLAN.candidates[0][1] if quick else dict(gtb.CANDIDATES)[proxy]
  train = task.train_images or 1000
  steps = max(9, task.epochs * (train // task.batch_size))
  return task.replace(steps=steps), max(1, steps // ETA ** 2), steps


FIXED_COST = "fixed_cost.json"


def fixed_cost(trials: list[dict], steps: int) -> tuple[float, float, int]:
  """A run's median fixed seconds per job (data, build, tracing, evaluation), median steady
  seconds per optimizer step, and the number of fresh (not cached) successful jobs they are taken
  over. `trials`: every rung's record, in file order; a job that continued a child from its
  previous rung ran the difference of the two budgets; a record without a `budget` ran `steps`."""
  done, reached = [], {}
  for r in trials:
    ran = r.get("budget", steps) - reached.get(r["trial"], 0)
    reached[r["trial"]] = r.get("budget", steps)
    if r["status"] == "ok" and r.get("cached_from") is None and r.get("steady_seconds"):
      done.append((r["fixed_seconds"], r["steady_seconds"] / ran))
  fixed, per_step = np.median(np.array(done), axis=0)
  return float(fixed), float(per_step), len(done)


def measured_fixed_steps(real_dir: str, none_run: str, steps: int) -> float:
  """A job's fixed cost in optimizer steps (`fixed_cost`'s ratio), measured on the finished
  `none_run` (whose children each train `steps` steps) and kept in REAL/fixed_cost.json, so that
  every run of the benchmark is planned with the one figure measured first."""
  path = os.path.join(real_dir, FIXED_COST)
  if os.path.exists(path):
    return float(fileio.read_json(path)["fixed_steps"])
  fixed, per_step, n = fixed_cost(records.read_trials(os.path.join(real_dir, none_run), rungs=True), steps)
  fileio.atomic_write_json(path, {"fixed_steps": round(fixed / per_step, 1), "fixed_seconds": round(fixed, 3),
                                  "seconds_per_step": round(per_step, 5), "measured_on": none_run,
                                  "children": n})
  return fixed / per_step


def real_trials(scheduler: str, compute: float, fixed: float, budgets: tuple[int, ...], k: int) -> int:
  """Children a run may propose: whole batches whose brackets fit in `compute` full children."""
  policy = SuccessiveHalving(budgets[-1:], ETA) if scheduler == "none" else (
      SuccessiveHalving if scheduler == "sha" else Hyperband)(budgets, ETA)
  limit, spent, update = compute * (budgets[-1] + fixed), 0.0, 0
  while spent + bracket_cost(policy, update, k, fixed) <= limit:
    spent += bracket_cost(policy, update, k, fixed)
    update += 1
  return max(1, update) * k


def real_runs(opts: dict) -> list[tuple[str, str, int]]:
  """Seed-major, so that a run stopped part-way holds whole rounds (every arm on the same seeds)."""
  return [(s, c, seed) for seed in range(opts["seeds"]) for c in opts["controllers"] for s in SCHEDULERS]


def run_real(opts: dict) -> None:
  """Per seed: every (scheduler, controller) search, on `topup_seeds` the schedulers' equal-seconds
  copies (`real_topup`), then G for those runs' bests."""
  import ground_truth as gtb

  task, lo, hi = real_plan(opts["proxy"], opts["quick"])
  plan = gtb.QUICK_PLAN if opts["quick"] else gtb.Plan()
  runs = real_runs(opts)
  per_round = len(runs) // opts["seeds"]
  g_dir = os.path.join(opts["out"], "real", "g")
  for start in range(0, len(runs), per_round):
    bests = [real_search(opts, run, task, (lo, hi)) for run in runs[start:start + per_round]]
    bests += [real_topup(opts, run, task, (lo, hi)) for run in runs[start:start + per_round]
              if run[0] != "none" and run[2] in opts.get("topup_seeds", ())]
    trained = {r["blocks"] for r in gt.read_records(g_dir)} if os.path.isdir(g_dir) else set()
    unique = {gt.blocks_key(arch): arch for arch in bests}
    # Named by network, so that a job's name never stands for two networks across reruns.
    jobs = [gtb.Job(f"net-{hashlib.sha1(key.encode()).hexdigest()[:10]}", arch, 0,
                    task=plan.g_task.to_dict(), augment=plan.g_augment)
            for key, arch in unique.items() if key not in trained]
    gtb.run_jobs(g_dir, jobs, opts["workers"], None)


def real_config(opts: dict, run: tuple[str, str, int], task, budget: tuple[int, int]):
  """(SearchConfig, fixed steps per job) of one search of the real stage, planned to `--real_compute`.
  The schedulers' trial counts need the fixed cost, measured on the first `none` run."""
  from mnas_search.search.multi_trial import SearchConfig
  (sched, ctrl, seed), (lo, hi) = run, budget
  k = 3 if opts["quick"] else K
  mf = {} if sched == "none" else dict(scheduler=sched, min_budget=lo, max_budget=hi, eta=ETA)
  budgets = SearchConfig(scheduler="sha", min_budget=lo, max_budget=hi, eta=ETA, task=task).budgets
  real = os.path.join(opts["out"], "real")
  fixed = 0.0 if sched == "none" else measured_fixed_steps(real, f"none-{opts['controllers'][0]}-s0", hi)
  config = SearchConfig(space="micro" if opts["quick"] else "default", controller=ctrl, task=task,
                        trials=real_trials(sched, opts["compute"], fixed, budgets, k),
                        trials_per_update=k, seed=seed, references=(), backend=opts["backend"],
                        target_flops=30e6 if opts["quick"] else 400e6, **mf)
  return config, fixed


def real_search(opts: dict, run: tuple[str, str, int], task, budget: tuple[int, int]) -> dict:
  """One search of the real stage (skipped when its run.json exists); returns its best's arch."""
  from mnas_search.search.multi_trial import run_search
  sched, ctrl, seed = run
  d = os.path.join(opts["out"], "real", f"{sched}-{ctrl}-s{seed}")
  if os.path.exists(os.path.join(d, "run.json")):  # finished: keep its record as it is
    return fileio.read_json(os.path.join(d, "best.json"))["arch"]
  config, fixed = real_config(opts, run, task, budget)
  resumed = os.path.exists(os.path.join(d, "trials.jsonl"))
  summary = run_search(d, config, show_progress=False)
  fileio.atomic_write_json(os.path.join(d, "run.json"), {
      "scheduler": sched, "controller": ctrl, "seed": seed, "children": summary.trials,
      "fixed_steps": round(fixed, 1), "wall_seconds": summary.wall_seconds, "resumed": resumed,
      "timings": summary.timings})
  return summary.best["arch"]


def job_seconds(jobs: list[dict]) -> float:
  """What a search's jobs took, each whole: fixed and steady time of `jobs`, every rung's record."""
  return sum(r["fixed_seconds"] + r["steady_seconds"] for r in jobs)


def real_topup(opts: dict, run: tuple[str, str, int], task, budget: tuple[int, int]) -> dict:
  """Equal seconds: a copy of the finished scheduler run `run` (its directory + "-eqs"), extended
  by whole controller batches while the next one, at the run's mean job seconds per batch so far,
  fits in the job seconds of the same seed's `none` run with the same controller. The
  step-planned run is kept as it is. Returns the copy's best's arch (skipped when done)."""
  from mnas_search.search.multi_trial import run_search
  sched, ctrl, seed = run
  real = os.path.join(opts["out"], "real")
  src = os.path.join(real, f"{sched}-{ctrl}-s{seed}")
  dst = src + "-eqs"
  if os.path.exists(os.path.join(dst, "run.json")):
    return fileio.read_json(os.path.join(dst, "best.json"))["arch"]
  partial = os.path.isdir(dst)
  if not partial:  # copied whole (controller checkpoint included), then renamed
    shutil.rmtree(dst + ".tmp", ignore_errors=True)
    shutil.copytree(src, dst + ".tmp")
    os.remove(os.path.join(dst + ".tmp", "run.json"))
    os.replace(dst + ".tmp", dst)
  config, _ = real_config(opts, run, task, budget)
  k = config.trials_per_update
  reference = job_seconds(records.read_trials(os.path.join(real, f"none-{ctrl}-s{seed}"), rungs=True))
  before, walls, timings = fileio.read_json(os.path.join(src, "run.json")), 0.0, None
  done = len({r["trial"] for r in records.read_trials(dst)})
  children = -(-done // k) * k  # a batch a stop left in flight is finished first
  while True:
    if children > done:
      summary = run_search(dst, dataclasses.replace(config, trials=children), show_progress=False)
      walls, timings, done = walls + summary.wall_seconds, summary.timings, children
    spent = job_seconds(records.read_trials(dst, rungs=True))
    if spent + spent / (children // k) > reference:
      break
    children += k
  fileio.atomic_write_json(os.path.join(dst, "run.json"), {
      **before, "plan": "seconds", "children": done, "reference_seconds": round(reference, 1),
      "wall_seconds": before["wall_seconds"] + walls, "resumed": before.get("resumed", False) or partial,
      "timings": timings or before["timings"]})
  return fileio.read_json(os.path.join(dst, "best.json"))["arch"]


def arm(row: dict) -> tuple[str, str]:
  """(controller, scheduler) of a real run; an equal-seconds copy is an arm of its own."""
  return row["controller"], row["scheduler"] + (" (equal s)" if row.get("plan") == "seconds" else "")


def real_rows(out: str, steps: int) -> list[dict]:
  """Per finished run whose best is trained in G: run.json, its best's G test accuracy (looked up
  by network: runs whose bests are the same network share one G training) and proxy score, the
  seconds its jobs took (every rung's record, fixed and steady), its own fixed cost per job in
  steps (`steps`: a full child's) and whether its wall time is that of one go. run.json's wall time counts only a
  resumed run's last part; records older than its `resumed` field count as resumed when that
  time is below half their jobs' seconds (two workers could not have done them faster)."""
  real, rows = os.path.join(out, "real"), []
  if not os.path.isdir(os.path.join(real, "g")):
    return rows
  g = {r["blocks"]: r for r in gt.read_records(os.path.join(real, "g"))}
  for name in sorted(os.listdir(real)):
    d = os.path.join(real, name)
    if not os.path.exists(os.path.join(d, "run.json")):
      continue
    best = fileio.read_json(os.path.join(d, "best.json"))
    key = gt.blocks_key(best["arch"])
    if key not in g:
      continue  # its best is not trained in G yet
    run = fileio.read_json(os.path.join(d, "run.json"))
    jobs = records.read_trials(d, rungs=True)
    fixed, per_step, _ = fixed_cost(jobs, steps)
    job_s = job_seconds(jobs)
    rows.append({**run, "run": name, "job_seconds": round(job_s, 1),
                 "one_go": not run.get("resumed", run["wall_seconds"] < job_s / 2),
                 "own_fixed_steps": round(fixed / per_step, 1), "best_proxy": best["accuracy"],
                 "best_g_test": g[key]["test_accuracy"]})
  return rows


def summarize_real(out: str, steps: int) -> tuple[list[dict], str]:
  """The table by arm (each scheduler against none with the same controller: bootstrap 90%
  interval of the difference, permutation p; wall time over the runs done in one go), then how
  well the bests' proxy scores rank their G accuracies across runs, and each run's own fixed cost
  against the planned one."""
  rows = real_rows(out, steps)
  lines = ["| controller | scheduler | n | children | job min/run | job s ÷ none's, by seed | wall min/run "
           "| best's G test % | − none [90% CI] | p |", "|" + "---|" * 10]
  none_s = {(r["controller"], r["seed"]): r["job_seconds"] for r in rows if r["scheduler"] == "none"}
  arms: dict[tuple[str, str], list[dict]] = {}
  for r in rows:
    arms.setdefault(arm(r), []).append(r)
  for (ctrl, sched), rs in sorted(arms.items()):
    acc = [100 * r["best_g_test"] for r in rs]
    base = [100 * r["best_g_test"] for r in arms.get((ctrl, "none"), [])]
    diff, p = against(acc, base, 2) if sched != "none" and base else ("—", "—")
    std = f" ± {np.std(acc, ddof=1):.2f}" if len(acc) > 1 else ""
    walls = [r["wall_seconds"] / 60 for r in rs if r["one_go"]]
    wall = (f"{np.mean(walls):.1f}" if walls else "—") + ("" if len(walls) == len(rs) else f" ({len(walls)} in one go)")
    ratio = ", ".join(f"{r['job_seconds'] / none_s[ctrl, r['seed']]:.2f}" for r in sorted(rs, key=lambda r: r["seed"])
                      if (ctrl, r["seed"]) in none_s)
    lines.append(f"| {ctrl} | {sched} | {len(rs)} | {np.mean([r['children'] for r in rs]):.0f} | "
                 f"{np.mean([r['job_seconds'] for r in rs]) / 60:.1f} | {ratio} | {wall} | {np.mean(acc):.2f}{std} "
                 f"| {diff} | {p} |")
  lines += ["", paired_real(rows)] if rows else []
  if len(rows) > 2:
    tau = stats.kendall_tau([r["best_proxy"] for r in rows], [r["best_g_test"] for r in rows])
    lines.append(f"\nAcross the {len(rows)} runs, the bests' proxy scores rank their G accuracies at "
                 f"Kendall tau {tau:+.2f}.")
  if rows:
    own = [r["own_fixed_steps"] for r in rows]
    lines.append(f"Each run's own fixed cost per job: median {np.median(own):.0f} steps "
                 f"(range {min(own):.0f}-{max(own):.0f}; planned with {rows[0]['fixed_steps']:.0f}).")
  return rows, "\n".join(lines)


def paired_real(rows: list[dict]) -> str:
  """Each scheduler arm against `none` on the same (controller, seed), both controllers pooled.
  The runs are pairs: with one seed a controller proposes the same children under every
  scheduler, and a child that reaches the full budget scores as under `none`. So the test is a
  sign flip of the paired differences of the bests' G test accuracies, the interval a bootstrap
  over pairs (none below 4 pairs), and a tie (the same best network, or the same accuracy)
  counts as no difference."""
  none = {(r["controller"], r["seed"]): 100 * r["best_g_test"] for r in rows if r["scheduler"] == "none"}
  arms: dict[str, list[tuple[float, float]]] = {}
  for r in rows:
    ctrl, sched = arm(r)
    if r["scheduler"] != "none" and (ctrl, r["seed"]) in none:
      arms.setdefault(sched, []).append((100 * r["best_g_test"], none[ctrl, r["seed"]]))
  lines = ["| scheduler, both controllers | pairs | ties | best's G test − none's (mean) | 90% CI | "
           "sign-flip p | smallest p possible |", "|" + "---|" * 7]
  for sched, pairs in sorted(arms.items()):
    x, y = (list(v) for v in zip(*pairs))
    ci = stats.bootstrap_interval(x, y, lambda a, b: float(np.mean(a - b))) if len(x) > 1 else None
    cells = (f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "—",
             f"{stats.sign_flip_test(x, y):.3g}" if len(x) > 1 else "—")
    lines.append(f"| {sched} | {len(x)} | {sum(a == b for a, b in pairs)} | "
                 f"{np.mean(x) - np.mean(y):+.2f} | {cells[0]} | {cells[1]} | {stats.min_sign_flip_p(len(x)):.3g} |")
  return "\n".join(lines)


def plot_real(rows: list[dict], path: str) -> str:
  """Each run's best's G test accuracy against the minutes its jobs took, by arm."""
  from mnas_search.util import figures
  plt, fig, ax = figures.figure()
  colors = {"none": "tab:gray", "sha": "tab:blue", "hyperband": "tab:orange"}
  for ctrl, sched in sorted({arm(r) for r in rows}):
    rs = [r for r in rows if arm(r) == (ctrl, sched)]
    ax.scatter([r["job_seconds"] / 60 for r in rs], [100 * r["best_g_test"] for r in rs],
               color=colors.get(sched.split()[0], "black"), marker="o" if ctrl == "random" else "^",
               label=f"{ctrl} / {sched}", alpha=0.75)
  ax.set_xlabel("Minutes of the run's jobs (equal compute is planned in optimizer steps)")
  ax.set_ylabel("G test accuracy of the run's best (%)")
  ax.set_title(f"Real children, equal compute: {len(rows)} runs")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return figures.save_figure(plt, fig, path)


def plot_synthetic(runs: list[dict], path: str) -> str:
  """Each run's regret by (controller, scheduler, rule), the mean marked."""
  from mnas_search.util import figures
  plt, fig, ax = figures.figure()
  groups = sorted({(r["controller"], r["scheduler"], r["rule"]) for r in runs})
  for i, g in enumerate(groups):
    reg = [r["regret"] for r in runs if (r["controller"], r["scheduler"], r["rule"]) == g]
    ax.scatter([i] * len(reg), reg, color="tab:blue", alpha=0.6, s=20)
    ax.hlines(np.mean(reg), i - 0.3, i + 0.3, color="black")
  ax.set_xticks(range(len(groups)), [f"{c}\n{s}" + ("" if rule == "highest" else f"\n({rule})")
                                     for c, s, rule in groups])
  ax.set_ylabel("Regret of the chosen best: 1 - true score (lower is better)")
  ax.set_title(f"Equal compute, synthetic landscape: {len(runs)} runs (a dot each; bar: mean)")
  ax.grid(alpha=0.3, axis="y")
  return figures.save_figure(plt, fig, path)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined on demand, so that tests can import this module)."""
  flags.DEFINE_list("stages", ["synthetic"], "synthetic, real (searches and G of their bests), "
                    "real_summary.")
  import ground_truth as gtb
  flags.DEFINE_string("proxy", gtb.DEFAULT_PROXY, "--stages=real: the proxy (a candidate of "
                      "benchmarks/ground_truth.py; the default is the default ProxyTask).")
  flags.DEFINE_integer("real_seeds", 3, "--stages=real: seeds per (controller, scheduler).", lower_bound=1)
  flags.DEFINE_float("real_compute", 27, "--stages=real: compute per run, in full-budget children.",
                     lower_bound=1)
  flags.DEFINE_string("backend", "auto", "--stages=real: the searches' backend.")
  flags.DEFINE_integer("workers", 2, "--stages=real: processes of the G trainings.", lower_bound=1)
  flags.DEFINE_list("real_topup_seeds", [], "--stages=real: seeds whose scheduler runs also get an "
                    "equal-seconds copy (DIR-eqs), extended by whole batches to the same seed's none "
                    "run's job seconds.")
  flags.DEFINE_bool("quick", False, "--stages=real: synthetic data, the micro space, tiny budgets (tests).")
  flags.DEFINE_string("out", "results/multi_fidelity", "Output folder (runs are appended; a rerun "
                      "skips the runs it holds).")
  flags.DEFINE_integer("seeds", 5, "Seeds per (controller, scheduler).", lower_bound=1)
  flags.DEFINE_list("controllers", ["random", "ppo"], "Controllers.")
  flags.DEFINE_float("compute", 64, "Compute per run, in full-budget children (their fixed cost included).",
                     lower_bound=1)
  flags.DEFINE_bool("summary", False, "Only summarize the stored runs.")
  flags.DEFINE_float("fixed", FIXED, "Synthetic: a job's fixed cost in budget units (a full child "
                     f"trains {MAX_BUDGET}); the real stage measured 127 of 250 steps, "
                     f"{REAL_FIXED} units.",
                     lower_bound=0.0)


def main(argv):
  del argv
  bad = [st for st in FLAGS.stages if st not in ("synthetic", "real", "real_summary")]
  if bad:
    print(f"error: --stages={','.join(FLAGS.stages)} is invalid; allowed: synthetic, real, "
          "real_summary", file=sys.stderr)
    sys.exit(2)
  if not all(x.strip().isdigit() for x in FLAGS.real_topup_seeds):
    print(f"error: --real_topup_seeds={','.join(FLAGS.real_topup_seeds)} is invalid; allowed: seeds, "
          "non-negative integers separated by commas", file=sys.stderr)
    sys.exit(2)
  if "real" in FLAGS.stages:
    run_real({"out": FLAGS.out, "proxy": FLAGS.proxy, "quick": FLAGS.quick, "controllers": FLAGS.controllers,
              "seeds": FLAGS.real_seeds, "compute": FLAGS.real_compute, "backend": FLAGS.backend,
              "workers": FLAGS.workers, "topup_seeds": [int(x) for x in FLAGS.real_topup_seeds]})
  if "real" in FLAGS.stages or "real_summary" in FLAGS.stages:
    rows, table = summarize_real(FLAGS.out, real_plan(FLAGS.proxy, FLAGS.quick)[2])
    print(table)
    if rows:
      print(plot_real(rows, os.path.join(FLAGS.out, "real.png")))
    print(json.dumps({"n_runs": len(rows), "runs": rows}))
  if "synthetic" in FLAGS.stages:
    synthetic()


def synthetic() -> None:
  """The synthetic stage: runs what OUT/synthetic.jsonl lacks for the flags' setting, then
  prints its table."""
  path = os.path.join(FLAGS.out, RUNS)
  os.makedirs(FLAGS.out, exist_ok=True)
  runs = fileio.read_jsonl(path) if os.path.exists(path) else []
  if not FLAGS.summary:
    done = {(r["scheduler"], r["controller"], r["seed"], r["rule"]) for r in
            selected(runs, FLAGS.compute, FLAGS.fixed, FLAGS.seeds)}
    plan = [(s, c, seed, "highest") for c in FLAGS.controllers for s in SCHEDULERS
            for seed in range(FLAGS.seeds)]
    plan += [("sha", c, seed, "rank") for c in FLAGS.controllers if c != "random"
             for seed in range(FLAGS.seeds)]
    for s, c, seed, rule in plan:
      if (s, c, seed, rule) in done:
        continue
      rec = run_one(s, c, seed, FLAGS.compute, rule, FLAGS.fixed)
      fileio.append_jsonl(path, rec)
      runs.append(rec)
      print(f"{c} {s} {rule} seed {seed}: regret {rec['regret']:.4f}, {rec['children']} children, "
            f"{rec['seconds']}s", file=sys.stderr, flush=True)
  spread = Model(0, default_space().arities).spread
  print(f"model: K={K}, budgets 1/3/9 (eta {ETA}), fixed cost {FLAGS.fixed:.3f} epochs, noise {NOISE} and "
        f"bias {BIAS} x the truth's spread {spread:.4f}; Kendall tau of the score with the truth "
        f"by budget (random architectures): {rung_agreement()}")
  runs = [r for r in selected(runs, FLAGS.compute, FLAGS.fixed, FLAGS.seeds) if r["controller"] in FLAGS.controllers]
  print(summarize(runs))
  print(fixed_cost_table(fileio.read_jsonl(path) if os.path.exists(path) else []))
  default = FLAGS.fixed == FIXED and FLAGS.seeds == 5 and FLAGS.controllers == ["random", "ppo"]
  name = "synthetic.png" if default else f"synthetic_fixed{FLAGS.fixed:.2f}_seeds{FLAGS.seeds}.png"
  print(f"plot: {plot_synthetic(runs, os.path.join(FLAGS.out, name))}")


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  define_flags()
  app.run(main)
