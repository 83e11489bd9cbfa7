"""`launch.py search`: runs or resumes a search; prints where the results are and the best."""

from __future__ import annotations

import json
import os

from absl import flags

from mnas_search.cli import common

MODES = ("multitrial", "oneshot")
# The flags that only one mode takes; giving one with the other mode is refused.
MODE_ONLY_FLAGS = {
    "multitrial": ("trials", "trials_per_update", "target_latency_ms", "latency_threads",
                   "latency_cache_dir", "backend", "workers", "ray_address", "ray_allow_insecure",
                   "cpus_per_trial", "gpus_per_trial", "tpu", "deterministic", "warm_start_from",
                   "scheduler", "min_budget", "max_budget", "eta"),
    "oneshot": ("oneshot_epochs", "oneshot_warmup_fraction", "oneshot_top_k", "oneshot_paths_per_step",
                "oneshot_path_rule", "oneshot_private_weights", "oneshot_zero_init_residual"),
}
# OneShotConfig's defaults of the --oneshot_* flags (importing it here would import TensorFlow;
# tests/test_cli.py checks that they agree).
ONESHOT_DEFAULTS = {"oneshot_epochs": 10, "oneshot_warmup_fraction": 0.25, "oneshot_top_k": 3,
                    "oneshot_paths_per_step": 1, "oneshot_path_rule": "controller",
                    "oneshot_private_weights": False, "oneshot_zero_init_residual": False}


def define_flags(fv: flags.FlagValues) -> None:
  common.define_search_dir(fv)
  flags.DEFINE_string("search_space", "default", "The search space (default or micro).",
                      flag_values=fv)
  flags.DEFINE_enum("mode", "multitrial", list(MODES), "multitrial (train every child, MnasNet) or "
                    "oneshot (one weight-sharing supernet, TuNAS; then its finalists stand-alone).",
                    flag_values=fv)
  flags.DEFINE_string("controller", "ppo", "ppo, reinforce, evolution or random (--mode=oneshot: "
                      "reinforce or ppo, default reinforce).", flag_values=fv)
  flags.DEFINE_list("controller_hparams", [], "Controller settings as name=value pairs, e.g. "
                    "learning_rate=0.003,num_epochs=4.", flag_values=fv)
  flags.DEFINE_string("reward", "mnas", "mnas (a·(c/T)^w), mnas_hard or abs (--mode=oneshot "
                      "default: abs).", flag_values=fv)
  flags.DEFINE_float("w", None, "The reward's exponent or coefficient (default: the reward's "
                     "own, -0.07 for mnas).", flag_values=fv)
  flags.DEFINE_string("cost", "flops", "The cost in the reward: flops, params or latency.",
                      flag_values=fv)
  flags.DEFINE_float("target_flops", 400e6, "Target T in multiply-adds at --cost_resolution.",
                     flag_values=fv)
  flags.DEFINE_float("target_params", None, "Target T in parameters, with --cost=params.",
                     flag_values=fv)
  flags.DEFINE_float("target_latency_ms", None, "Target T in ms of TFLite latency on this CPU, "
                     "with --cost=latency (uses --latency_threads and --latency_cache_dir).",
                     flag_values=fv)
  flags.DEFINE_integer("latency_threads", 1, "tf.lite.Interpreter threads of --cost=latency.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_string("latency_cache_dir", None, "The latency lookup-table folder (default "
                      "~/.cache/mnas_search/latency).", flag_values=fv)
  flags.DEFINE_integer("trials", 100, "Finished trials to reach (raise it to extend a search).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("trials_per_update", 8, "Children per controller update.", lower_bound=1,
                       flag_values=fv)
  define_scheduler_flags(fv)
  flags.DEFINE_list("references", ["efficientnet-b0", "mnasnet-a1"],
                    "Named networks scored once on the same proxy (empty for none).", flag_values=fv)
  define_oneshot_flags(fv)
  flags.DEFINE_string("warm_start_from", None, "An earlier search directory with the same proxy "
                      "task and cost: its architectures are not retrained, and the controller "
                      "first learns from its trials (also the way out of a lost or corrupted "
                      "controller checkpoint).", flag_values=fv)
  common.define_cost(fv)
  common.define_proxy(fv)
  common.define_backend(fv)
  common.define_strategy(fv)
  common.define_deterministic(fv)
  common.define_progress(fv)
  common.define_json(fv)


def define_oneshot_flags(fv: flags.FlagValues) -> None:
  """The --oneshot_* flags (--mode=oneshot)."""
  d = ONESHOT_DEFAULTS
  flags.DEFINE_integer("oneshot_epochs", d["oneshot_epochs"], "--mode=oneshot: passes of the "
                       "supernet over the proxy's training images.", lower_bound=1, flag_values=fv)
  flags.DEFINE_float("oneshot_warmup_fraction", d["oneshot_warmup_fraction"], "--mode=oneshot: "
                     "fraction of the steps trained on uniformly random paths first, in [0, 1).",
                     flag_values=fv)
  flags.DEFINE_integer("oneshot_top_k", d["oneshot_top_k"], "--mode=oneshot: most-sampled "
                       "architectures trained stand-alone besides the most likely one.",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_integer("oneshot_paths_per_step", d["oneshot_paths_per_step"], "--mode=oneshot: "
                       "paths trained per supernet step on the same batch (gradients averaged).",
                       flag_values=fv)
  flags.DEFINE_string("oneshot_path_rule", d["oneshot_path_rule"], "--mode=oneshot: which paths train "
                      "after the warm-up: controller (TuNAS), uniform, or sandwich (the largest, the "
                      "smallest and random ones; needs --oneshot_paths_per_step >= 2).", flag_values=fv)
  flags.DEFINE_bool("oneshot_private_weights", d["oneshot_private_weights"], "--mode=oneshot: "
                    "expansion 1 and blocks without their skip keep their own supernet weights "
                    "instead of sharing them.", flag_values=fv)
  flags.DEFINE_bool("oneshot_zero_init_residual", d["oneshot_zero_init_residual"], "--mode=oneshot: "
                    "blocks that keep their skip start as the identity (projection BN gamma 0, "
                    "BigNAS); blocks without it get their own projection BN.", flag_values=fv)


def define_scheduler_flags(fv: flags.FlagValues) -> None:
  """--scheduler and its budgets (multi-fidelity search)."""
  flags.DEFINE_enum("scheduler", "none", ["none", "sha", "hyperband"], "Multi-fidelity: none "
                    "(every child trains the whole proxy task), sha (successive halving within each "
                    "controller batch: the best 1/eta of a rung continue to eta times the budget) or "
                    "hyperband (sha brackets, one per batch in turn).", flag_values=fv)
  flags.DEFINE_integer("min_budget", None, "--scheduler=sha|hyperband: the lowest rung's budget, in "
                       "proxy epochs (steps with --proxy_steps); default --max_budget / eta^2, at least 1.", flag_values=fv)
  flags.DEFINE_integer("max_budget", None, "--scheduler=sha|hyperband: the highest rung's budget "
                       "(default: --proxy_epochs, or --proxy_steps).", flag_values=fv)
  flags.DEFINE_integer("eta", 3, "--scheduler=sha|hyperband: the halving rate.", flag_values=fv)


def parse_hparams(pairs) -> tuple:
  """`name=value` strings to (name, value) pairs; values are JSON when they parse, else strings."""
  out = []
  for pair in pairs or []:
    if "=" not in pair:
      raise ValueError(f"--controller_hparams: {pair!r} is not name=value")
    name, value = pair.split("=", 1)
    try:
      value = json.loads(value)
    except json.JSONDecodeError:
      pass
    out.append((name.strip(), value))
  return tuple(out)


def search_config_from_flags(fv: flags.FlagValues):
  from mnas_search.search.multi_trial import SearchConfig
  return SearchConfig(
      space=fv.search_space, controller=fv.controller,
      controller_hparams=parse_hparams(fv.controller_hparams), reward=fv.reward, w=fv.w,
      cost=fv.cost, target_flops=fv.target_flops, target_params=fv.target_params,
      target_latency_ms=fv.target_latency_ms, latency_threads=fv.latency_threads,
      latency_cache_dir=fv.latency_cache_dir, trials=fv.trials,
      trials_per_update=fv.trials_per_update, cost_resolution=fv.cost_resolution,
      cost_num_classes=fv.cost_num_classes, task=common.proxy_task_for_dir(fv, fv.search_dir),
      **common.backend_options(fv), strategy=fv.strategy, tpu=fv.tpu, seed=fv.seed,
      deterministic=fv.deterministic, references=tuple(fv.references or ()),
      warm_start_from=fv.warm_start_from, scheduler=fv.scheduler, min_budget=fv.min_budget,
      max_budget=fv.max_budget, eta=fv.eta)


def oneshot_config_from_flags(fv: flags.FlagValues):
  """The OneShotConfig of the shared flags and the --oneshot_* flags. The controller and the
  reward default to TuNAS's (reinforce, abs) unless --controller or --reward is given."""
  from mnas_search.search.oneshot.search import OneShotConfig
  given = {}
  if fv["controller"].present:
    given["controller"] = fv.controller
  if fv["reward"].present:
    given["reward"] = fv.reward
  return OneShotConfig(
      space=fv.search_space, controller_hparams=parse_hparams(fv.controller_hparams), w=fv.w,
      cost=fv.cost, target_flops=fv.target_flops, target_params=fv.target_params,
      cost_resolution=fv.cost_resolution, cost_num_classes=fv.cost_num_classes,
      task=common.proxy_task_for_dir(fv, fv.search_dir), oneshot_epochs=fv.oneshot_epochs,
      oneshot_warmup_fraction=fv.oneshot_warmup_fraction, oneshot_top_k=fv.oneshot_top_k,
      paths_per_step=fv.oneshot_paths_per_step, path_rule=fv.oneshot_path_rule,
      private_weights=fv.oneshot_private_weights, zero_init_residual=fv.oneshot_zero_init_residual,
      references=tuple(fv.references or ()), strategy=fv.strategy, seed=fv.seed, **given)


def check_mode(fv: flags.FlagValues, search_dir: str) -> None:
  """Refuses a flag of the other mode, and a resume of a search directory of the other mode."""
  for mode, names in MODE_ONLY_FLAGS.items():
    for name in names:
      if mode != fv.mode and name in fv and fv[name].present:
        common.fail(f"--{name} is not taken by search --mode={fv.mode}; allowed with --mode={mode}")
  from mnas_search.runs import rundir  # a corrupted params.json is named (rundir.corrupted)
  params = rundir.read_params(search_dir)
  if params:
    stored = params.get("mode", "multitrial")  # multi-trial params.json has no mode
    if stored in MODES and stored != fv.mode:
      common.fail(f"--mode={fv.mode} is invalid for {search_dir!r}, which holds a {stored} search; "
                  f"allowed: --mode={stored} (or a new folder)")


def _best_and_references(summary) -> dict:
  out = {}
  if summary.best:
    out["best"] = {k: summary.best[k] for k in ("trial", "reward", "accuracy", "flops", "params",
                                                "blocks")}
  out["references"] = {n: {k: r[k] for k in ("accuracy", "reward", "flops", "status")}
                       for n, r in summary.references.items()}
  return out


def _print_best_and_references(summary) -> None:
  if summary.best:
    b = summary.best
    print(f"best: trial {b['trial']}  reward {b['reward']:.4f}  accuracy {b['accuracy']:.4f}  "
          f"{b['flops'] / 1e6:.1f}M FLOPs  {b['params'] / 1e6:.2f}M params")
    for block in b["blocks"]:
      print(f"    {block}")
  for name, r in summary.references.items():
    print(f"reference {name}: reward {r['reward']:.4f}  accuracy {r['accuracy']:.4f}  "
          f"{r['flops'] / 1e6:.1f}M FLOPs ({r['status']})")


def run_oneshot_search(fv: flags.FlagValues, search_dir: str) -> None:
  """--mode=oneshot: the supernet phase, then its finalists stand-alone; prints the summary."""
  from mnas_search.search.oneshot.search import run_oneshot
  summary = run_oneshot(search_dir, oneshot_config_from_flags(fv), show_progress=fv.progress)
  finalists = [{k: r[k] for k in ("trial", "reward", "accuracy", "flops", "status")}
               for r in summary.finalists]
  out = {"search_dir": search_dir, "mode": "oneshot", "steps": summary.steps,
         "controller_steps": summary.controller_steps, "finalists": finalists,
         "wall_seconds": round(summary.wall_seconds, 1),
         "supernet_seconds": round(summary.supernet_seconds, 1),
         "finalist_seconds": round(summary.finalist_seconds, 1), **_best_and_references(summary)}
  if fv.json:
    common.print_json(out)
    return
  print(f"one-shot search {search_dir}: {summary.steps} supernet steps, {summary.controller_steps} "
        f"controller steps, {len(finalists)} finalists, {summary.wall_seconds:.0f}s (supernet "
        f"{summary.supernet_seconds:.0f}s, finalists {summary.finalist_seconds:.0f}s)")
  for r in finalists:
    print(f"finalist: trial {r['trial']}  reward {r['reward']:.4f}  accuracy {r['accuracy']:.4f}  "
          f"{r['flops'] / 1e6:.1f}M FLOPs ({r['status']})")
  _print_best_and_references(summary)
  print(f"files: {os.path.join(search_dir, 'oneshot.jsonl')}, finalists.json, oneshot_ckpt/, "
        f"trials.jsonl, best.json, pareto.json, tb/ (tensorboard --logdir "
        f"{os.path.join(search_dir, 'tb')})")


def run(fv: flags.FlagValues) -> None:
  """Runs or resumes a search; prints where the results are and the best architecture."""
  search_dir = common.require(fv, "search_dir", "--search_dir is required; allowed: a folder "
                              "(created if missing; an existing search there is resumed)")
  check_mode(fv, search_dir)
  if fv.mode == "oneshot":
    run_oneshot_search(fv, search_dir)
    return
  from mnas_search.search.multi_trial import run_search
  config = search_config_from_flags(fv)
  common.check_ray_cluster(fv)
  summary = run_search(search_dir, config, show_progress=fv.progress)
  out = {"search_dir": search_dir, "trials": summary.trials, "updates": summary.updates,
         "wall_seconds": round(summary.wall_seconds, 1), **_best_and_references(summary)}
  if fv.json:
    common.print_json(out)
    return
  print(f"search {search_dir}: {summary.trials} trials, {summary.updates} controller updates, "
        f"{summary.wall_seconds:.0f}s")
  _print_best_and_references(summary)
  print(f"files: {os.path.join(search_dir, 'trials.jsonl')}, best.json, pareto.json, tb/ "
        f"(tensorboard --logdir {os.path.join(search_dir, 'tb')})")
