"""Benchmark: how much of a search's wall time is NOT child training, and Ray scaling.

Part 1 runs a real search (PPO controller, inline backend) whose children
train for about one second each, and splits its wall time into children,
controller (sample + update + checkpoint), cost counting and the store
(trials.jsonl, best.json, pareto.json, TensorBoard). The overhead fraction is
everything outside child training, and must stay under 5%.

Part 2 runs the same search on the Ray backend with 1 and then 2 workers
(1 CPU each) and prints trials per hour of each and their ratio.

  python benchmarks/search_overhead.py [--trials=48] [--trials_per_update=16] [--ray_trials=16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time

from absl import logging

from mnas_search.cli import quiet
from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.training.proxy import ProxyTask


def child_task(train_images: int) -> ProxyTask:
  # Micro-space children at 16x16 on synthetic data: about a second each on one core.
  return ProxyTask(dataset="synthetic", resolution=16, train_images=train_images, val_images=256,
                   epochs=1, batch_size=64)


def overhead(args) -> None:
  d = tempfile.mkdtemp(prefix="mnas_overhead_")
  cfg = SearchConfig(space="micro", controller=args.controller, trials=args.trials,
                     trials_per_update=args.trials_per_update, task=child_task(args.train_images),
                     references=(), target_flops=30e6, seed=0)
  # Warm the process up once (TF import, data generation, first tracing) outside the timing.
  run_search(os.path.join(d, "warmup"), dataclasses.replace(cfg, trials=2, trials_per_update=2),
             show_progress=False)
  t0 = time.perf_counter()
  s = run_search(os.path.join(d, "search"), cfg, show_progress=False)
  wall = time.perf_counter() - t0
  t = s.timings
  outside = wall - t["children"]
  steady = outside - t["controller_startup"]
  per_trial = steady / args.trials
  print(f"== Part 1: overhead of a {args.trials}-trial search ({args.controller} controller, "
        f"{args.trials_per_update} children per update, inline backend)")
  print(f"wall time                {wall:8.2f} s")
  print(f"children (train + eval)  {t['children']:8.2f} s   {t['children'] / args.trials:.2f} s per child")
  for k in ("controller_startup", "controller", "cost", "store"):
    print(f"{k:<24} {t[k]:8.3f} s   {t[k] / wall:7.2%} of wall")
  print(f"other (loop, decode)     {steady - t['controller'] - t['cost'] - t['store']:8.3f} s")
  print(f"overhead, whole run (incl. one-time graph tracing): {outside / wall:.2%} of wall")
  print(f"overhead, steady state: {steady / (steady + t['children']):.2%} of wall "
        f"({per_trial * 1e3:.1f} ms per trial)")
  one_second = per_trial / (per_trial + 1.0)
  verdict = "PASS" if one_second < 0.05 else "FAIL"
  print(f"{verdict}: with 1-second children the steady-state overhead is {one_second:.2%} "
        f"(limit 5%); the one-time tracing ({t['controller_startup']:.1f} s) is "
        f"{t['controller_startup'] / (t['controller_startup'] + args.trials * (1 + per_trial)):.1%} of "
        f"a {args.trials}-trial run of 1-second children")
  shutil.rmtree(d, ignore_errors=True)


def ray_scaling(args) -> None:
  import ray
  rates = {}
  for workers in (1, 2):
    # Started here, not by the backend, so that Ray and its warmed-up workers outlive the warm-up run.
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}})
    d = tempfile.mkdtemp(prefix="mnas_ray_")
    cfg = SearchConfig(space="micro", controller="random", trials=args.ray_trials,
                       trials_per_update=args.ray_trials, task=child_task(args.train_images),
                       references=(), target_flops=30e6, seed=workers, backend="ray", workers=workers,
                       cpus_per_trial=1)
    # Warm-up: start Ray and let each worker import TF and build its data once.
    run_search(os.path.join(d, "warmup"),
               dataclasses.replace(cfg, trials=2 * workers, trials_per_update=2 * workers),
               show_progress=False)
    t0 = time.perf_counter()
    run_search(os.path.join(d, "search"), cfg, show_progress=False)
    wall = time.perf_counter() - t0
    rates[workers] = args.ray_trials / wall * 3600
    ray.shutdown()
    shutil.rmtree(d, ignore_errors=True)
  print(f"== Part 2: Ray backend, {args.ray_trials} trials, 1 CPU per trial, {os.cpu_count()} cores")
  for w, r in rates.items():
    print(f"workers={w}: {r:8.0f} trials/hour")
  print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--trials", type=int, default=48)
  parser.add_argument("--trials_per_update", type=int, default=16)
  parser.add_argument("--train_images", type=int, default=512)
  parser.add_argument("--controller", default="ppo")
  parser.add_argument("--ray_trials", type=int, default=16)
  parser.add_argument("--skip_ray", action="store_true")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  overhead(args)
  if not args.skip_ray:
    ray_scaling(args)


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  main()
