"""`launch.py fidelity`: retrains K trials of a search longer; Kendall τ and Spearman ρ of the two
rankings."""

from __future__ import annotations

from absl import flags

from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_search_dir(fv)
  common.define_out(fv)
  flags.DEFINE_integer("sample", None, "K, how many distinct architectures to retrain (the top, "
                       "middle and bottom by proxy reward).", lower_bound=2, flag_values=fv)
  flags.DEFINE_integer("fidelity_epochs", None, "Epochs of the longer training (default: 4x the "
                       "search's).", lower_bound=1, flag_values=fv)
  # The other proxy flags, given explicitly, override the search's task; --proxy_epochs is refused.
  common.define_proxy(fv)
  common.define_backend(fv)
  common.define_strategy(fv)
  common.define_deterministic(fv)
  common.define_progress(fv)
  common.define_json(fv)


def run(fv: flags.FlagValues) -> None:
  """Retrains K trials of a search longer; prints Kendall τ and Spearman ρ of the two rankings."""
  from mnas_search import fidelity
  search_dir = common.require(fv, "search_dir",
                              "--search_dir=DIR is required: the search whose proxy is checked")
  if fv.sample is None:
    raise ValueError("--sample=K is required; allowed: an integer >= 2")
  if fv["proxy_epochs"].present or (fv["proxy_steps"].present and fv.fidelity_epochs is not None):
    given = ("--proxy_epochs" if fv["proxy_epochs"].present
             else "--proxy_steps with --fidelity_epochs")
    raise ValueError(f"{given} is not taken by fidelity; allowed: --fidelity_epochs=N or "
                     "--proxy_steps=N (the length of the longer training)")
  _, search_task = fidelity.read_search(search_dir)
  overrides = common.proxy_values(fv, only_present=True)
  long_task = fidelity.longer_task(search_task, epochs=fv.fidelity_epochs).replace(**overrides)
  config = fidelity.FidelityConfig(sample=fv.sample, task=long_task,
                                   deterministic=fv.deterministic)
  with common.backend_from_flags(fv, long_task) as backend:
    s = fidelity.run_fidelity(search_dir, config, out_dir=fv.out, backend=backend,
                              strategy=fv.strategy, tpu=fv.tpu, show_progress=fv.progress)
  if fv.json:
    common.print_json({k: s[k] for k in ("selected", "n", "kendall_tau", "spearman_rho", "files")})
    return
  print(f"{'trial':>6} {'group':<7} {'proxy reward':>12} {'proxy acc':>9} {'long acc':>9}  status")
  for r in s["trials"]:
    print(f"{r['trial']:>6} {r['group']:<7} {r['proxy_reward']:>12.4f} {r['proxy_accuracy']:>9.4f} "
          f"{r['accuracy']:>9.4f}  {r['status']}")
  schedule = f"{long_task.steps} steps" if long_task.steps else f"{long_task.epochs} epochs"
  print(f"proxy ({search_task.epochs} epochs) vs longer training ({schedule}, "
        f"{long_task.train_images or 'all'} images) over {s['n']} trials: Kendall tau "
        f"{_signed(s['kendall_tau'])}, Spearman rho {_signed(s['spearman_rho'])}")
  print(f"trained {s['trained']} trial(s) in {s['wall_seconds']:.0f}s; files: "
        + ", ".join(s["files"].values()))


def _signed(v: float | None) -> str:
  return "n/a (a constant ranking)" if v is None else f"{v:+.4f}"
