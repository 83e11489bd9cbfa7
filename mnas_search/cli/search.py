"""`launch.py search`: runs or resumes a search; prints where the results are and the best."""

from __future__ import annotations

import json
import os

from absl import flags

from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_search_dir(fv)
  flags.DEFINE_string("search_space", "default", "The search space (default or micro).",
                      flag_values=fv)
  flags.DEFINE_string("controller", "ppo", "ppo, reinforce, evolution or random.", flag_values=fv)
  flags.DEFINE_list("controller_hparams", [], "Controller settings as name=value pairs, e.g. "
                    "learning_rate=0.003,num_epochs=4.", flag_values=fv)
  flags.DEFINE_string("reward", "mnas", "mnas (a·(c/T)^w), mnas_hard or abs.", flag_values=fv)
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
  flags.DEFINE_list("references", ["efficientnet-b0", "mnasnet-a1"],
                    "Named networks scored once on the same proxy (empty for none).", flag_values=fv)
  common.define_cost(fv)
  common.define_proxy(fv)
  common.define_backend(fv)
  common.define_strategy(fv)
  common.define_deterministic(fv)
  common.define_progress(fv)
  common.define_json(fv)


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
  from mnas_search.search import SearchConfig
  return SearchConfig(
      space=fv.search_space, controller=fv.controller,
      controller_hparams=parse_hparams(fv.controller_hparams), reward=fv.reward, w=fv.w,
      cost=fv.cost, target_flops=fv.target_flops, target_params=fv.target_params,
      target_latency_ms=fv.target_latency_ms, latency_threads=fv.latency_threads,
      latency_cache_dir=fv.latency_cache_dir, trials=fv.trials,
      trials_per_update=fv.trials_per_update, cost_resolution=fv.cost_resolution,
      cost_num_classes=fv.cost_num_classes, task=common.proxy_task_from_flags(fv),
      **common.backend_options(fv), strategy=fv.strategy, tpu=fv.tpu, seed=fv.seed,
      deterministic=fv.deterministic, references=tuple(fv.references or ()))


def run(fv: flags.FlagValues) -> None:
  """Runs or resumes a search; prints where the results are and the best architecture."""
  search_dir = common.require(fv, "search_dir", "--search_dir is required; allowed: a folder "
                              "(created if missing; an existing search there is resumed)")
  from mnas_search.search import run_search
  config = search_config_from_flags(fv)
  summary = run_search(search_dir, config, show_progress=fv.progress)
  out = {"search_dir": search_dir, "trials": summary.trials, "updates": summary.updates,
         "wall_seconds": round(summary.wall_seconds, 1)}
  if summary.best:
    out["best"] = {k: summary.best[k] for k in ("trial", "reward", "accuracy", "flops", "params",
                                                "blocks")}
  out["references"] = {n: {k: r[k] for k in ("accuracy", "reward", "flops", "status")}
                       for n, r in summary.references.items()}
  if fv.json:
    common.print_json(out)
    return
  print(f"search {search_dir}: {summary.trials} trials, {summary.updates} controller updates, "
        f"{summary.wall_seconds:.0f}s")
  if summary.best:
    b = summary.best
    print(f"best: trial {b['trial']}  reward {b['reward']:.4f}  accuracy {b['accuracy']:.4f}  "
          f"{b['flops'] / 1e6:.1f}M FLOPs  {b['params'] / 1e6:.2f}M params")
    for block in b["blocks"]:
      print(f"    {block}")
  for name, r in summary.references.items():
    print(f"reference {name}: reward {r['reward']:.4f}  accuracy {r['accuracy']:.4f}  "
          f"{r['flops'] / 1e6:.1f}M FLOPs ({r['status']})")
  print(f"files: {os.path.join(search_dir, 'trials.jsonl')}, best.json, pareto.json, tb/ "
        f"(tensorboard --logdir {os.path.join(search_dir, 'tb')})")
