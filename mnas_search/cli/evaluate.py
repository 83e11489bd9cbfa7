"""`launch.py evaluate`: trains one architecture on the proxy task.

Prints its accuracy, deploy cost and speed; exits with status 1 when the child failed (an
exception or a NaN/Inf loss).
"""

from __future__ import annotations

import sys

from absl import flags

import search_space
from mnas_search.cli import common


def define_flags(fv: flags.FlagValues) -> None:
  common.define_arch(fv)
  common.define_proxy(fv)
  common.define_cost(fv)
  common.define_strategy(fv)
  common.define_deterministic(fv)
  common.define_json(fv)


def run(fv: flags.FlagValues) -> None:
  """Trains one architecture on the proxy task; prints its accuracy, deploy cost and speed."""
  arch = common.arch_from_flags(fv)
  task = common.proxy_task_from_flags(fv)
  flops = search_space.count_flops(arch, fv.cost_resolution, fv.cost_num_classes)
  params = search_space.count_params(arch, fv.cost_num_classes)
  from mnas_search.training import evaluation
  from mnas_search.training import strategy as strategy_lib
  strategy = strategy_lib.make_strategy(fv.strategy, fv.tpu)
  r = evaluation.evaluate(arch, task, strategy=strategy, deterministic=fv.deterministic)
  out = {"name": arch.name, "status": r.status, "accuracy": r.accuracy, "flops": flops,
         "params": params, "train_seconds": r.train_seconds, "images_per_sec": r.images_per_sec,
         "proxy_flops": r.proxy_flops, "proxy_params": r.proxy_params, "steps": r.steps,
         "epochs_completed": r.epochs_completed, "loss": r.loss, "error": r.error,
         "dataset": task.dataset, "cost_resolution": fv.cost_resolution}
  if fv.json:
    common.print_json(out)
  else:
    print(f"{arch.name} on {task.dataset} (proxy: {task.resolution}x{task.resolution}, width "
          f"{task.proxy_width:g}, {task.train_images} images x {task.epochs} epochs)")
    print(f"status           {r.status}" + (f"  ({r.error})" if r.error else ""))
    print(f"val accuracy     {r.accuracy:.4f}")
    print(f"FLOPs (mult-add) {flops:>14,}  ({flops / 1e9:.3f}B at {fv.cost_resolution}x"
          f"{fv.cost_resolution}, {fv.cost_num_classes} classes)")
    print(f"params           {params:>14,}")
    print(f"proxy child      {r.proxy_flops:,} mult-adds, {r.proxy_params:,} params")
    print(f"training         {r.train_seconds:.1f}s, {r.steps} steps, "
          f"{r.images_per_sec:,.0f} img/s after the first step")
  if r.status == "failed":
    sys.exit(1)
