"""Benchmark: does the latency lookup table rank and predict whole networks?

Samples N random architectures of the default space (default 30), predicts each
one's latency from the per-block lookup table (measuring missing entries as it
goes) and times each whole network as one TFLite model, then prints the
Spearman rank correlation (it must be >= 0.9) and the mean absolute error in %.
The Spearman correlation of FLOPs with the measured latency is printed too, for
comparison. Timings are noisy while other processes run: the load average is
printed before and after.

  python benchmarks/latency_lut.py [--samples=30] [--resolution=224] [--threads=1] [--fresh]
"""

import argparse
import os
import tempfile
import time

import numpy as np

from mnas_search.cli import quiet
from mnas_search.costs import latency
from mnas_search.util import stats
from search_space import count_flops, default_space

MIN_SPEARMAN = 0.9


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--samples", type=int, default=30)
  parser.add_argument("--resolution", type=int, default=224)
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--num_classes", type=int, default=1000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--warmup", type=int, default=latency.DEFAULT_WARMUP)
  parser.add_argument("--repeats", type=int, default=latency.DEFAULT_REPEATS)
  parser.add_argument("--cache_dir", default=None, help="the table folder (default: the user cache)")
  parser.add_argument("--fresh", action="store_true",
                      help="measure every entry anew, into a temporary folder")
  args = parser.parse_args()
  cache_dir = tempfile.mkdtemp(prefix="latency_lut_") if args.fresh else args.cache_dir
  space = default_space()
  rng = np.random.default_rng(args.seed)
  archs = [space.decode(space.sample_indices(rng), name=f"sample{i}") for i in range(args.samples)]
  model = latency.LatencyModel(cache_dir, args.threads, args.resolution, args.num_classes,
                               warmup=args.warmup, repeats=args.repeats)
  load_before = os.getloadavg()
  print(f"device {model.device}, TF {model.tf_version}, {args.threads} thread(s) "
        f"({latency.timing_clock(args.threads)} clock), resolution {args.resolution}, "
        f"{args.samples} architectures, table {model.path} ({len(model.table)} entries cached)")
  print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
  print(f"{'arch':<9} {'MFLOPs':>8} {'entries':>7} {'predicted':>10} {'measured':>10} {'error':>8}")
  t0 = time.perf_counter()
  predicted, measured, flops = [], [], []
  for arch in archs:
    before = model.measured
    predicted.append(model.predict_ms(arch))
    measured.append(latency.measure_end_to_end(arch, args.resolution, args.num_classes,
                                               args.threads, args.warmup, args.repeats))
    flops.append(count_flops(arch, args.resolution, args.num_classes))
    err = (predicted[-1] - measured[-1]) / measured[-1] * 100
    print(f"{arch.name:<9} {flops[-1] / 1e6:>8.1f} {model.measured - before:>7} "
          f"{predicted[-1]:>8.3f}ms {measured[-1]:>8.3f}ms {err:>+7.1f}%", flush=True)
  load_after = os.getloadavg()
  rho = stats.spearman(predicted, measured)
  mae = stats.mean_abs_pct_error(predicted, measured)
  print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
        f"{time.perf_counter() - t0:.0f}s, {model.measured} table entries measured")
  print(f"mean signed error         {np.mean((np.array(predicted) - measured) / measured) * 100:+.1f}%")
  print(f"mean absolute error       {mae:.1f}%")
  print(f"Spearman(FLOPs, measured) {stats.spearman(flops, measured):.3f}")
  print(f"Spearman(table, measured) {rho:.3f}")
  verdict = "PASS" if rho >= MIN_SPEARMAN else "FAIL"
  print(f"{verdict}: Spearman {rho:.3f} (at least {MIN_SPEARMAN}), mean absolute error {mae:.1f}%")


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  main()
