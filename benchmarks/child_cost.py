"""What one child costs beyond its training steps, and children per hour inline vs `auto`.

Three parts, in one process:
  fixed    B0 at --proxy_width (0.25), --resolution (32) px, batch 128, --fixed_steps steps on the
           default dataset: the median `TrialResult.fixed_seconds` (wall time from `evaluate`'s
           entry to its return minus the steady time of the steps run) of --fixed_children
           children, after one warm-up child (so the process is warm: TF imported, data loaded).
           With --compare_fit, children through model.fit (the trainer's multi-replica path)
           alternate with them, and both are reported: same process, same load.
  fraction one B0 child on the default ProxyTask (10,000 images x 4 epochs) at --proxy_width:
           fixed / (fixed + steady).
  search   a real --search_trials-child search (PPO, --trials_per_update=8, default proxy,
           no reference networks) inline, then with the `auto` backend
           (`backends.resolve_auto`): children per hour of each and their ratio.

The last line of output is one JSON object: fixed_seconds_b0, fixed_fraction_default_proxy,
inline_children_per_hour, auto_children_per_hour, auto_over_inline (a part not run gives null).

  python benchmarks/child_cost.py [--quick] [--strategy=auto] [--parts=fixed,fraction,search]

--quick shrinks everything to seconds (a tiny synthetic proxy, 2-4 children) for CI. The full
run trains ~36 default-proxy children (about 40 minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import nullcontext
from unittest import mock

from absl import app, flags

import search_space
from mnas_search.cli import quiet
from mnas_search.execution import backends
from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.training import evaluation, lean_step
from mnas_search.training.proxy import EARLIER_DEFAULTS, ProxyTask

flags.DEFINE_bool("quick", False, "Tiny synthetic proxy and 2-4 children: a smoke test in seconds.")
flags.DEFINE_string("strategy", "auto", "Children's strategy: auto, cpu, mirrored or tpu.")
flags.DEFINE_list("parts", ["fixed", "fraction", "search"], "Parts to run.")
flags.DEFINE_integer("fixed_children", 3, "Measured children of the fixed part (median).")
flags.DEFINE_integer("fixed_steps", 20, "Training steps of each fixed-part child.")
flags.DEFINE_bool("compare_fit", False, "Also measure children trained through model.fit.")
flags.DEFINE_float("proxy_width", 0.25, "Proxy width of the B0 children and the search.")
flags.DEFINE_integer("resolution", 32, "Proxy resolution of the fixed and fraction parts.")
flags.DEFINE_integer("fraction_children", 3, "Default-proxy children of the fraction part (median).")
flags.DEFINE_integer("search_trials", 16, "Children of each search.")
flags.DEFINE_integer("trials_per_update", 8, "Children per controller update in the searches.")
FLAGS = flags.FLAGS

QUICK_DATASET = "synthetic:size=16,channels=1,classes=4,train=600,test=10"
QUICK_TASK = ProxyTask(dataset=QUICK_DATASET, resolution=16, train_images=256, val_images=128,
                       epochs=1, batch_size=64, proxy_width=0.25)


def default_proxy() -> ProxyTask:
  # The task the committed measurements used.
  return QUICK_TASK if FLAGS.quick else ProxyTask(**EARLIER_DEFAULTS, proxy_width=FLAGS.proxy_width)


def b0() -> search_space.Architecture:
  if FLAGS.quick:  # two blocks: traces in about a second
    return search_space.Architecture(blocks=("r1_k3_s11_e1_i32_o16_se0.25", "r1_k3_s22_e3_i16_o24"),
                                     name="tiny")
  return search_space.named("efficientnet-b0")


def child(arch, task: ProxyTask, fit: bool = False) -> evaluation.TrialResult:
  """One child through the lean step, or through model.fit when `fit`."""
  with mock.patch.object(lean_step, "lean_supported", return_value=False) if fit else nullcontext():
    r = evaluation.evaluate(arch, task, strategy=FLAGS.strategy)
  if r.status != "ok":
    raise SystemExit(f"child {arch.name} {r.status}: {r.error}")
  return r


def fixed_part() -> dict:
  """Median fixed seconds (and steady img/s) of B0 children in a warm process."""
  task = default_proxy().replace(resolution=16 if FLAGS.quick else FLAGS.resolution,
                                 steps=4 if FLAGS.quick else FLAGS.fixed_steps)
  arch = b0()
  child(arch, task.replace(steps=2))  # warm-up: TF, the dataset, the first tracing of anything
  sides = ("lean", "fit") if FLAGS.compare_fit else ("lean",)
  runs = {side: [] for side in sides}
  n = 2 if FLAGS.quick else FLAGS.fixed_children
  for i in range(n):
    for side in sides if i % 2 == 0 else sides[::-1]:  # ABBA: neither side always first
      r = child(arch, task, fit=side == "fit")
      runs[side].append(r)
      print(f"fixed  {side:4s} child {i + 1}: fixed {r.fixed_seconds:6.2f} s  steady "
            f"{r.steady_seconds:6.2f} s ({r.steps} steps, {r.images_per_sec:7.1f} img/s)  "
            f"accuracy {r.accuracy:.3f}", flush=True)
  out = {}
  for side, rs in runs.items():
    fixed = statistics.median(r.fixed_seconds for r in rs)
    ips = statistics.median(r.images_per_sec for r in rs)
    print(f"fixed  {side:4s} median: {fixed:.2f} s fixed per child, {ips:.1f} img/s steady "
          f"({arch.name} x{task.proxy_width:g}, {task.resolution} px, batch {task.batch_size})")
    out[side] = (fixed, ips)
  return out


def fraction_part() -> float:
  """Median fixed fraction of B0 children on the default ProxyTask, in a warm process."""
  task = default_proxy()
  child(b0(), task.replace(steps=2))  # warm-up (a no-op cost when the fixed part ran first)
  fractions = []
  for i in range(1 if FLAGS.quick else FLAGS.fraction_children):
    r = child(b0(), task)
    total = r.fixed_seconds + r.steady_seconds
    fractions.append(r.fixed_seconds / total)
    print(f"fraction: child {i + 1} on the default proxy ({task.train_images} images x "
          f"{task.epochs} epochs, x{task.proxy_width:g}, {task.resolution} px): fixed "
          f"{r.fixed_seconds:.2f} s of {total:.2f} s = {fractions[-1]:.3f}; accuracy "
          f"{r.accuracy:.4f}, {r.images_per_sec:.1f} img/s steady", flush=True)
  print(f"fraction: median {statistics.median(fractions):.3f}")
  return statistics.median(fractions)


def search_part() -> tuple[float, float]:
  """Children per hour of an inline search and of an `auto` one."""
  backend, workers, threads = backends.resolve_auto("auto", None, FLAGS.strategy)
  n = 4 if FLAGS.quick else FLAGS.search_trials
  per_update = 2 if FLAGS.quick else FLAGS.trials_per_update
  base = SearchConfig(space="micro" if FLAGS.quick else "default", trials=n,
                      trials_per_update=per_update, task=default_proxy(), references=(),
                      strategy=FLAGS.strategy, seed=0)
  rates = []
  root = tempfile.mkdtemp(prefix="child_cost_")
  try:
    for name, (b, w) in (("inline", ("inline", 1)), ("auto", (backend, workers))):
      cfg = dataclasses.replace(base, backend=b, workers=w)
      started = time.monotonic()
      s = run_search(os.path.join(root, name), cfg, show_progress=False)
      hours = (time.monotonic() - started) / 3600
      rates.append(s.trials / hours)
      print(f"search {name:6s} ({b}, {w} worker(s), {threads if name == 'auto' else 'all'} "
            f"thread(s) each): {s.trials} children in {hours * 3600:.0f} s = "
            f"{rates[-1]:.0f} children/hour", flush=True)
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return rates[0], rates[1]


def main(argv) -> None:
  del argv
  unknown = set(FLAGS.parts) - {"fixed", "fraction", "search"}
  if unknown:
    raise app.UsageError(f"--parts={FLAGS.parts} is invalid; allowed: fixed, fraction, search")
  print(f"cores {backends.available_cores()}, strategy {FLAGS.strategy}, quick {FLAGS.quick}")
  out = dict.fromkeys(("fixed_seconds_b0", "fixed_fraction_default_proxy",
                       "inline_children_per_hour", "auto_children_per_hour", "auto_over_inline"))
  if "fixed" in FLAGS.parts:
    fixed = fixed_part()
    out["fixed_seconds_b0"] = round(fixed["lean"][0], 3)
    print(f"steady img/s (lean step): {fixed['lean'][1]:.1f}")
  if "fraction" in FLAGS.parts:
    out["fixed_fraction_default_proxy"] = round(fraction_part(), 4)
  if "search" in FLAGS.parts:
    inline, auto = search_part()
    out.update(inline_children_per_hour=round(inline, 1), auto_children_per_hour=round(auto, 1),
               auto_over_inline=round(auto / inline, 3))
  print(json.dumps(out))


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  app.run(main)
