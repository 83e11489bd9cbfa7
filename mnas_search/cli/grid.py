"""`launch.py grid`: scores the α, β, γ grid at φ=1 on the proxy (resumable)."""

from __future__ import annotations

from absl import flags

from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_baseline(fv)
  common.define_out(fv)
  flags.DEFINE_float("grid_step", 0.05, "Step of the α, β and γ grids.", flag_values=fv)
  flags.DEFINE_list("alpha_range", ["1.0", "1.5"], "LOW,HIGH of α (depth), inclusive.",
                    flag_values=fv)
  flags.DEFINE_list("beta_range", ["1.0", "1.3"], "LOW,HIGH of β (width), inclusive.",
                    flag_values=fv)
  flags.DEFINE_list("gamma_range", ["1.0", "1.3"], "LOW,HIGH of γ (resolution), inclusive.",
                    flag_values=fv)
  flags.DEFINE_float("grid_tolerance", 0.1, "Keep the triples with |α·β²·γ² − 2| <= this.",
                     flag_values=fv)
  common.define_cost(fv, resolution=False)  # each candidate's own resolution
  common.define_proxy(fv)
  common.define_backend(fv)
  common.define_strategy(fv)
  common.define_deterministic(fv)
  common.define_progress(fv)


def parse_range(fv: flags.FlagValues, flag: str) -> tuple[float, float]:
  """--FLAG=LOW,HIGH as two floats."""
  values = fv[flag].value or []
  try:
    low, high = (float(v) for v in values)
  except ValueError:
    raise ValueError(f"--{flag}={','.join(values)} is invalid; allowed: two numbers LOW,HIGH, "
                     "e.g. 1.0,1.3") from None
  return low, high


def run(fv: flags.FlagValues) -> None:
  """Scores the α, β, γ grid at φ=1 on the proxy (resumable); prints the table and the best."""
  from mnas_search.execution.resumable import RunOptions
  from mnas_search.scaling import grid
  baseline = common.arch_flag(fv, "baseline")
  out = common.require(fv, "out", "--out=DIR is required: where grid.jsonl, the table and "
                       "coefficients.json go (an existing grid there is resumed)")
  config = grid.GridConfig(
      baseline=baseline, task=common.proxy_task_for_dir(fv, out), step=fv.grid_step,
      alpha_range=parse_range(fv, "alpha_range"), beta_range=parse_range(fv, "beta_range"),
      gamma_range=parse_range(fv, "gamma_range"), tolerance=fv.grid_tolerance,
      num_classes=fv.cost_num_classes, deterministic=fv.deterministic)
  print(f"grid of {baseline.name}: {len(config.candidates())} candidates with "
        f"|alpha*beta^2*gamma^2 - 2| <= {config.tolerance} (step {config.step}); proxy "
        f"{config.task.dataset} at {config.task.resolution}px x gamma", flush=True)
  with common.backend_from_flags(fv, config.task) as backend:
    summary = grid.run_grid(out, config, RunOptions(backend, fv.strategy, fv.tpu, fv.progress))
  print(grid.format_table(summary.rows, baseline.name))
  print(f"trained {summary.trained} candidate(s) in {summary.wall_seconds:.0f}s "
        f"({len(summary.rows) - summary.trained} read from grid.jsonl)")
  if summary.paper is not None:
    p = summary.paper
    print(f"paper  alpha={p['alpha']:g} beta={p['beta']:g} gamma={p['gamma']:g}: accuracy "
          f"{p['accuracy']:.4f} (rank {summary.rows.index(p) + 1} of {len(summary.rows)})")
  for kind, path in summary.files.items():
    print(f"{kind:<13} {path}")
  if summary.best is None:
    raise ValueError(f"no candidate trained successfully; see the errors in "
                     f"{summary.files['records']}")
  b = summary.best
  print(f"best   alpha={b['alpha']:g} beta={b['beta']:g} gamma={b['gamma']:g}: accuracy "
        f"{b['accuracy']:.4f} (use: launch.py scale --family=compound "
        f"--coefficients={summary.files['coefficients']})")
