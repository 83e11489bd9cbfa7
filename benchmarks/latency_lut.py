"""Benchmark: does the latency lookup table predict whole networks, at 32 px as at 224 px?

For each resolution (default 32 px with 10 classes, as a Fashion-MNIST user
deploys, and 224 px with 1000), samples N random architectures of the default
space (default 30), then side by side in one run:
  1. measures the table entries they and the calibration networks need (lone
     blocks, timed warm; this phase tolerates other jobs on the machine);
  2. fits the table's calibration on `--calibration_networks` other networks of
     the space, timed end to end (`LatencyModel.calibrate`);
  3. times each of the N networks end to end as one TFLite model, in the same
     interleaved rounds as the calibration networks (`measure_end_to_end_many`),
     and compares it with the calibrated prediction and with the plain sum.
Prints the Spearman rank correlation and the median ratio predicted/measured
(targets: >= 0.9 and within 0.8-1.25) for both, and the Spearman of FLOPs. End-
to-end timings suffer from other processes (they share the cores' caches):
`--pause_pids` stops those processes
(SIGSTOP, then SIGCONT) during phases 2 and 3, and the load average is printed.
`--out` writes every row and the figures as JSON; the last line is that JSON's
headline.

  python benchmarks/latency_lut.py [--samples=30] [--resolutions=32,224] [--num_classes=10,1000]
      [--out=results/latency/latency_lut.json] [--fill_only] [--pause_pids=PID,...] [--fresh]
"""

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time

import numpy as np

from mnas_search.cli import quiet
from mnas_search.costs import latency
from mnas_search.util import fileio, stats
from search_space import count_flops, count_params, default_space

MIN_SPEARMAN = 0.9
RATIO_RANGE = (0.8, 1.25)


def summarize(rows: list[dict], key: str) -> dict:
  """Spearman and the median predicted/measured ratio of `key` ("predicted_ms" or "sum_ms")."""
  pred = [r[key] for r in rows]
  meas = [r["measured_ms"] for r in rows]
  ratios = np.array(pred) / np.array(meas)
  return {"spearman": round(float(stats.spearman(pred, meas)), 4),
          "median_ratio": round(float(np.median(ratios)), 4),
          "mean_abs_pct_error": round(float(stats.mean_abs_pct_error(pred, meas)), 2)}


def passes(s: dict) -> bool:
  return s["spearman"] >= MIN_SPEARMAN and RATIO_RANGE[0] <= s["median_ratio"] <= RATIO_RANGE[1]


@contextlib.contextmanager
def paused(pids: list[int]):
  """Stops `pids` (SIGSTOP) for the block and continues them after, whatever happens."""
  stopped = []
  try:
    for pid in pids:
      try:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
      except ProcessLookupError:
        print(f"--pause_pids: no process {pid}; not paused", flush=True)
    yield
  finally:
    for pid in stopped:
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _ints(text: str, flag: str) -> list[int]:
  try:
    return [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    sys.exit(f"error: --{flag}={text} is invalid; allowed: comma-separated integers")


def _load() -> list[float]:
  return [round(v, 2) for v in os.getloadavg()]


def run_resolution(args, resolution: int, num_classes: int, cache_dir: str | None,
                   pause_pids: list[int]) -> dict | None:
  space = default_space()
  rng = np.random.default_rng(args.seed)
  archs = [space.decode(space.sample_indices(rng), name=f"sample{i}") for i in range(args.samples)]
  calib = latency.calibration_architectures(space, args.calibration_networks)
  shared = {a.blocks for a in archs} & {a.blocks for a in calib}
  if shared:  # a network timed to fit the calibration must not also test it
    archs = [a for a in archs if a.blocks not in shared]
  model = latency.LatencyModel(cache_dir, args.threads, resolution, num_classes,
                               timing=latency.Timing(args.warmup, args.repeats),
                               plan=latency.CalibrationPlan(args.calibration_networks, space))
  print(f"== {resolution}x{resolution}, {num_classes} classes: {len(archs)} networks, "
        f"{len(calib)} calibration networks; table {model.path} ({len(model.table)} entries cached)",
        flush=True)
  keys = [k for a in calib + archs for k in model.keys(a)]
  model.fill(keys, on_progress=lambda p: print(f"  {p}", flush=True))
  if args.fill_only:
    return None
  load_before = _load()
  t0 = time.perf_counter()
  with paused(pause_pids):
    # The calibration networks and the tested ones are timed side by side, in the same rounds.
    times = latency.end_to_end_rounds(calib + archs, resolution, num_classes, args.threads,
                                      args.warmup, args.repeats, args.rounds)
  measured = latency.fastest(times)  # as measure_end_to_end_many keeps them
  # The measurement's own repeatability: the fastest of the even rounds against the odd ones.
  retest = round(float(stats.spearman(latency.fastest(times[len(calib):, 0::2]),
                                      latency.fastest(times[len(calib):, 1::2]))), 4)
  cal = model.calibrate(calib, measured[:len(calib)])
  print(f"  calibration: {cal}", flush=True)
  print(f"  {'arch':<9} {'MFLOPs':>8} {'sum':>9} {'predicted':>10} {'measured':>10} {'ratio':>6}")
  rows = []
  for arch, ms in zip(archs, measured[len(calib):]):
    total, params = model.sum_ms(arch), count_params(arch, num_classes)
    row = {"name": arch.name, "blocks": arch.block_strings,
           "flops": count_flops(arch, resolution, num_classes),
           "params": params, "sum_ms": round(total, 4),
           "predicted_ms": round(cal.apply(total, params), 4),
           "measured_ms": ms}
    rows.append(row)
    print(f"  {arch.name:<9} {row['flops'] / 1e6:>8.1f} {row['sum_ms']:>7.3f}ms "
          f"{row['predicted_ms']:>8.3f}ms {row['measured_ms']:>8.3f}ms "
          f"{row['predicted_ms'] / row['measured_ms']:>6.2f}", flush=True)
  calibrated, plain = summarize(rows, "predicted_ms"), summarize(rows, "sum_ms")
  flops_rho = round(float(stats.spearman([r["flops"] for r in rows],
                                         [r["measured_ms"] for r in rows])), 4)
  print(f"  calibrated: {calibrated}\n  plain sum:  {plain}\n  Spearman(FLOPs, measured) {flops_rho}"
        f"\n  Spearman(even rounds, odd rounds) {retest} (the measurement's own repeatability)")
  print(f"  {'PASS' if passes(calibrated) else 'FAIL'} at {resolution}px: Spearman "
        f"{calibrated['spearman']:.3f} (at least {MIN_SPEARMAN}), median ratio "
        f"{calibrated['median_ratio']:.3f} (within {RATIO_RANGE[0]}-{RATIO_RANGE[1]})", flush=True)
  return {"resolution": resolution, "num_classes": num_classes, "n_networks": len(rows),
          "calibrated": calibrated, "plain_sum": plain, "spearman_flops": flops_rho,
          "spearman_retest": retest, "rounds_ms": times.round(4).tolist(),
          "calibration": cal.to_dict(), "calibration_networks": [a.block_strings for a in calib],
          "load_before": load_before, "load_after": _load(),
          "paused_pids": pause_pids, "seconds": round(time.perf_counter() - t0, 1), "rows": rows}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--samples", type=int, default=30)
  parser.add_argument("--resolutions", default="32,224")
  parser.add_argument("--num_classes", default="10,1000", help="one per resolution")
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--warmup", type=int, default=latency.DEFAULT_WARMUP)
  parser.add_argument("--repeats", type=int, default=latency.DEFAULT_REPEATS)
  parser.add_argument("--rounds", type=int, default=6,
                      help="end-to-end rounds: each times every network; the fastest is kept")
  parser.add_argument("--calibration_networks", type=int,
                      default=latency.DEFAULT_CALIBRATION_NETWORKS)
  parser.add_argument("--cache_dir", default=None, help="the table folder (default: the user cache)")
  parser.add_argument("--fresh", action="store_true",
                      help="measure every entry anew, into a temporary folder")
  parser.add_argument("--fill_only", action="store_true",
                      help="only measure the table entries (phase 1), e.g. while other jobs run")
  parser.add_argument("--pause_pids", default="",
                      help="processes to SIGSTOP while timing end to end (SIGCONT after)")
  parser.add_argument("--out", default=None, help="write the rows and figures here as JSON")
  args = parser.parse_args()
  resolutions = _ints(args.resolutions, "resolutions")
  classes = _ints(args.num_classes, "num_classes")
  if len(classes) != len(resolutions) or args.samples < 3 or args.calibration_networks < 1:
    sys.exit(f"error: --num_classes={args.num_classes} needs one value per resolution "
             f"({args.resolutions}), --samples >= 3 and --calibration_networks >= 1")
  cache_dir = tempfile.mkdtemp(prefix="latency_lut_") if args.fresh else args.cache_dir
  pause_pids = _ints(args.pause_pids, "pause_pids")
  print(f"device {latency.device_name()}, TF {latency.tf_version()}, {args.threads} thread(s) "
        f"({latency.timing_clock(args.threads)} clock); load average {_load()}", flush=True)
  results = [run_resolution(args, r, c, cache_dir, pause_pids) for r, c in zip(resolutions, classes)]
  if args.fill_only:
    return
  out = {"device": latency.device_name(), "tf_version": latency.tf_version(),
         "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats,
         "rounds": args.rounds,
         "seed": args.seed, "n_networks": min(r["n_networks"] for r in results)}
  for r in results:
    res = r["resolution"]
    out[f"spearman_{res}"] = r["calibrated"]["spearman"]
    out[f"median_ratio_{res}"] = r["calibrated"]["median_ratio"]
  out["passes"] = all(passes(r["calibrated"]) for r in results)
  headline = dict(out)
  out["resolutions"] = results
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fileio.atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
  print(json.dumps(headline))


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  main()
