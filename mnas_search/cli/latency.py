"""`launch.py latency`: builds the latency lookup table (--build), or predicts and measures one
architecture."""

from __future__ import annotations

from absl import flags

import search_space
from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_bool("build", False, "Measure the lookup table of every block --search_space can "
                    "reach at --latency_resolution (entries already cached are kept).",
                    flag_values=fv)
  flags.DEFINE_string("search_space", "default", "The search space of --build, and of the networks that calibrate "
                      "the table (default or micro).",
                      flag_values=fv)
  flags.DEFINE_bool("latency_dry_run", False, "With --build: count the entries, measure none.",
                    flag_values=fv)
  flags.DEFINE_integer("latency_resolution", None, "Input resolution (default: the search "
                       "space's with --build, else the architecture's own; 224 for both defaults).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("latency_threads", 1, "tf.lite.Interpreter threads.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_string("latency_cache_dir", None, "The lookup-table folder (default "
                      "~/.cache/mnas_search/latency); one file per CPU model, TF version and "
                      "threads.", flag_values=fv)
  flags.DEFINE_integer("latency_warmup", 5, "Untimed runs before timing each model.",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_integer("latency_repeats", 30, "Timed runs per model; the median is kept.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("latency_calibration_networks", 6, "Networks of --search_space timed end "
                       "to end to calibrate the table's sums at this resolution (once per table); "
                       "0 predicts the plain sum.", lower_bound=0, flag_values=fv)
  flags.DEFINE_bool("latency_measure_missing", True, "With --arch: measure the table entries that "
                    "are missing (else fail and say so).", flag_values=fv)
  flags.DEFINE_bool("latency_end_to_end", True, "With --arch: also time the whole network.",
                    flag_values=fv)
  common.define_arch(fv)
  common.define_num_classes(fv)
  common.define_json(fv)


def run(fv: flags.FlagValues) -> None:
  """Builds the latency lookup table (--build), or predicts and measures one architecture."""
  from mnas_search.costs import latency
  try:
    space = search_space.get_space(fv.search_space)
  except ValueError as e:
    raise ValueError(f"--search_space={fv.search_space}: {e}") from None
  timing = dict(threads=fv.latency_threads, cache_dir=fv.latency_cache_dir,
                timing=latency.Timing(fv.latency_warmup, fv.latency_repeats),
                plan=latency.CalibrationPlan(fv.latency_calibration_networks, space))
  if fv.build:
    _build(fv, space, timing)
    return
  if fv.latency_dry_run:
    raise ValueError("--latency_dry_run goes with --build")
  arch = common.arch_from_flags(fv)
  res = fv.latency_resolution or arch.resolution
  model = latency.LatencyModel(resolution=res, num_classes=fv.num_classes,
                               measure_missing=fv.latency_measure_missing, **timing)
  predicted = model.predict_ms(arch)
  total = model.sum_ms(arch)
  measured = None
  if fv.latency_end_to_end:
    measured = latency.measure_end_to_end(arch, res, fv.num_classes, fv.latency_threads,
                                          fv.latency_warmup, fv.latency_repeats)
  d = {"name": arch.name, "resolution": res, "num_classes": fv.num_classes,
       "threads": fv.latency_threads, "device": model.device, "tf_version": model.tf_version,
       "clock": latency.timing_clock(fv.latency_threads), "predicted_ms": round(predicted, 4),
       "sum_ms": round(total, 4),
       "calibration": model.calibration.to_dict() if model.plan.networks else None,
       "measured_ms": measured,
       "error_pct": None if measured is None else round((predicted - measured) / measured * 100, 2),
       "entries_measured": model.measured, "table": model.path}
  if fv.json:
    common.print_json(d)
    return
  print(f"{arch.name} at {res}x{res}, {fv.num_classes} classes, {d['threads']} thread(s) on "
        f"{d['device']} (TF {d['tf_version']}, {d['clock']} clock)")
  print(f"predicted (lookup table) {predicted:9.3f} ms   ({model.measured} entries measured now)")
  print(f"sum of the entries       {total:9.3f} ms   (calibration: "
        f"{_calibration_text(model.calibration) if model.plan.networks else 'none'})")
  if measured is not None:
    print(f"measured (end to end)    {measured:9.3f} ms   (prediction error {d['error_pct']:+.1f}%)")
  print(f"table: {model.path}")


def _build(fv: flags.FlagValues, space, timing: dict) -> None:
  """`--build`: measures the table of `space` at the resolution asked for, then calibrates it."""
  from mnas_search.costs import latency
  if fv.arch or fv.blocks:
    raise ValueError(f"--build was given with --{'arch' if fv.arch else 'blocks'}; allowed: one of "
                     "them (--build measures the whole table of --search_space)")
  res = fv.latency_resolution or space.resolution
  print(f"latency table {latency.cache_path(fv.latency_cache_dir, fv.latency_threads)}: "
        f"space {space.name!r} at {res}x{res}, {fv.num_classes} classes, "
        f"{fv.latency_threads} thread(s)", flush=True)
  model = latency.LatencyModel(resolution=res, num_classes=fv.num_classes, **timing)
  done = latency.build_table(space, model, dry_run=fv.latency_dry_run,
                             on_progress=lambda p: print(f"  {p}", flush=True))
  if fv.latency_dry_run:
    print(f"  {done.total} entries: {done.cached} cached, {done.total - done.cached} to measure "
          "(dry run: none measured)")
  else:
    print(f"measured {done.measured} entries in {done.seconds:.0f}s; the table now has all "
          f"{done.total} entries of this space")
    if done.calibration is not None:
      print(f"calibration: {_calibration_text(done.calibration)}")


def _calibration_text(c) -> str:
  return (f"{c.overhead_ms:.4f} ms + {c.scale:.3f} x sum + {c.ms_per_mparam:.4f} ms per million "
          f"parameters, fitted on {c.n_networks} networks (median ratio {c.median_ratio:.3f})")
