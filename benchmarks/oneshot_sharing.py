"""Which weight sharing stops the supernet from learning? Training loss under random paths.

    python benchmarks/oneshot_sharing.py [--out=results/oneshot/sharing.jsonl] [--steps=250]
        [--variants=b0,all,...] [--workers=2]

The supernet of the default space (width 0.25, Fashion-MNIST at 32 px, the proxy its one-shot
records use: batch 128, SGD, cosine over 780 steps or `--steps` if more) is trained for `--steps`
steps from the same initialization, each variant sampling its paths differently:

- `b0`: EfficientNet-B0's path only (the single-path check: it must learn);
- `all`: every decision uniformly at random (single-path one-shot, `--path_rule=uniform`);
- `kernel`, `expansion`, `se_ratio`, `skip`, `repeats`, `filters`: B0's path with only that kind
  of decision random in every stage;
- `exp36`: expansion random over 3 and 6 only (never 1);
- `all_no_e1_skip_on`: every decision random except expansion 1 (never) and skip (always on);
- `all_lr0.02`: `all` at lr 0.02 instead of 0.1;
- `private_all`, `private_expansion`: `all` and `expansion` with private weights for expansion 1
  and for blocks without their skip (`supernet.Sharing(private_weights=True)`);
- `zeroinit_warmup`: zero-initialized residual blocks, and an op warm-up after TuNAS's: over the
  first half of the steps a path is drawn as in `all_no_e1_skip_on` with a probability falling
  from 1 to 0, else as in `all`; `all` alone after that;
- `zeroinit_*` (the others): the variant after the prefix with BigNAS's zero-initialized residual blocks
  (`supernet.Sharing(zero_init_residual=True)`: blocks that keep their skip start as the identity,
  blocks without it have their own projection BN).

A variant's record (one JSON line, appended; variants already in `--out` are skipped, so a killed
run resumes) holds its mean training loss and batch accuracy over each 50 steps. Chance is loss
ln 10 = 2.30 and accuracy 0.10.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

VARIANTS = ("b0", "all", "kernel", "expansion", "se_ratio", "skip", "repeats", "filters", "exp36",
            "all_no_e1_skip_on", "all_lr0.02", "private_all", "private_expansion", "zeroinit_all",
            "zeroinit_skip", "zeroinit_all_no_e1_skip_on", "zeroinit_warmup")
KINDS = ("kernel", "expansion", "se_ratio", "skip", "repeats", "filters")
WINDOW = 50


def sample(variant: str, space, base: list[int], rng: np.random.Generator,
           progress: float = 1.0) -> tuple[int, ...]:
  """The decisions of one training path of `variant` (see the module docstring) when a fraction
  `progress` of the steps is done."""
  kind = variant.removeprefix("private_").removeprefix("zeroinit_").removesuffix("_lr0.02")
  if kind == "warmup":
    safe = rng.random() < max(0.0, 1.0 - 2.0 * progress)
    kind = "all_no_e1_skip_on" if safe else "all"
  idx = list(base)
  if kind == "b0":
    return tuple(idx)
  for i, d in enumerate(space.decisions):
    name = d.name.split("/")[-1]
    if kind == "all" or kind == name:
      idx[i] = int(rng.integers(len(d.options)))
    elif kind == "exp36" and name == "expansion":
      idx[i] = int(rng.integers(1, len(d.options)))
    elif kind == "all_no_e1_skip_on":
      idx[i] = (0 if name == "skip" else
                int(rng.integers(1 if name == "expansion" else 0, len(d.options))))
  return tuple(idx)


def run_variant(variant: str, steps: int) -> dict:
  """Trains the supernet `steps` steps on `variant`'s paths; its record."""
  import search_space
  from mnas_search.search.oneshot import search as os_search
  from mnas_search.search.oneshot import supernet as sl
  from mnas_search.training.proxy import EARLIER_DEFAULTS, ProxyTask
  lr = 0.02 if variant.endswith("_lr0.02") else 0.1
  task = ProxyTask(dataset="fashion_mnist", resolution=32, proxy_width=0.25, **EARLIER_DEFAULTS,
                   seed=0, learning_rate=lr)
  space = search_space.default_space()
  feed = os_search.ArrayFeed(task, seed=0)
  # The learning-rate schedule spans the one-shot runs' 780 steps, or all the steps when longer.
  sharing = sl.Sharing(private_weights=variant.startswith("private_"),
                       zero_init_residual=variant.startswith("zeroinit_"))
  runner = os_search.make_runner(space, task, feed, max(780, steps), 0, sharing)
  base = list(space.encode(search_space.named("efficientnet-b0").replace(activation=space.activation)))
  rng = np.random.default_rng(0)
  losses, accs, t0 = [], [], time.perf_counter()
  for step in range(steps):
    path = sl.encode_path(space, task.proxy_width, space.decode(sample(variant, space, base, rng, step / steps)))
    loss, acc = runner.train_step(*feed.train_batch(step), path)
    losses.append(loss)
    accs.append(acc)
  windows = range(0, steps, WINDOW)
  return {"variant": variant, "steps": steps, "lr": lr, "window": WINDOW,
          "loss": [round(float(np.mean(losses[i:i + WINDOW])), 4) for i in windows],
          "accuracy": [round(float(np.mean(accs[i:i + WINDOW])), 4) for i in windows],
          "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results/oneshot/sharing.jsonl")
  parser.add_argument("--steps", type=int, default=250)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a worker: one variant
  args = parser.parse_args()
  if args.one:
    from mnas_search.util import fileio
    fileio.append_jsonl(args.out, run_variant(args.one, args.steps))
    return
  wanted = [v for v in args.variants.split(",") if v]
  bad = [v for v in wanted if v not in VARIANTS]
  if bad or args.steps < WINDOW or args.workers < 1:
    sys.exit(f"error: --variants={args.variants} --steps={args.steps} --workers={args.workers} is "
             f"invalid; allowed: variants from {', '.join(VARIANTS)}, steps >= {WINDOW}, workers >= 1")
  done = set()
  if os.path.exists(args.out):
    done = {json.loads(line)["variant"] for line in open(args.out) if line.strip()}
  todo = [v for v in wanted if v not in done]
  running: list[subprocess.Popen] = []
  while todo or running:
    while todo and len(running) < args.workers:
      running.append(subprocess.Popen([sys.executable, __file__, f"--one={todo.pop(0)}",
                                       f"--steps={args.steps}", f"--out={args.out}"]))
    running[0].wait()
    running = [p for p in running if p.poll() is None]
  for line in open(args.out):
    r = json.loads(line)
    print(f"{r['variant']:>18}  loss {' '.join(f'{v:.2f}' for v in r['loss'])}  "
          f"accuracy {' '.join(f'{v:.2f}' for v in r['accuracy'])}  ({r['seconds']:.0f}s)")


if __name__ == "__main__":
  from mnas_search.cli import quiet
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  main()
