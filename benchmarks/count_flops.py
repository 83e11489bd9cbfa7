"""Benchmark: the analytic counter's time per architecture over random samples.

Prints decode+count_flops and count_params time per architecture, side by side
with decode alone, over N random samples of the default space (default 10,000).
The counter must stay under 1 ms per architecture.

  python benchmarks/count_flops.py [--samples=10000]
"""

import argparse
import time

import numpy as np

from search_space import count_flops, count_params, default_space


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--samples", type=int, default=10_000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  space = default_space()
  rng = np.random.default_rng(args.seed)
  indices = [space.sample_indices(rng) for _ in range(args.samples)]
  t0 = time.perf_counter()
  archs = [space.decode(i) for i in indices]
  t1 = time.perf_counter()
  flops = [count_flops(a, 224, 1000) for a in archs]
  t2 = time.perf_counter()
  params = [count_params(a, 1000) for a in archs]
  t3 = time.perf_counter()
  n = args.samples
  per_decode, per_flops, per_params = (t1 - t0) / n * 1e3, (t2 - t1) / n * 1e3, (t3 - t2) / n * 1e3
  print(f"samples: {n}")
  print(f"decode          {per_decode:.4f} ms/arch")
  print(f"count_flops     {per_flops:.4f} ms/arch  ({per_flops / per_decode:.2f}x decode)")
  print(f"count_params    {per_params:.4f} ms/arch  ({per_params / per_decode:.2f}x decode)")
  print(f"FLOPs range     {min(flops) / 1e6:.0f}M .. {max(flops) / 1e6:.0f}M multiply-adds at 224")
  print(f"params range    {min(params) / 1e6:.2f}M .. {max(params) / 1e6:.2f}M")
  verdict = "PASS" if per_flops < 1.0 else "FAIL"
  print(f"{verdict}: count_flops {per_flops:.4f} ms per architecture (limit 1 ms)")


if __name__ == "__main__":
  main()
