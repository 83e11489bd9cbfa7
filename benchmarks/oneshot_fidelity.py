"""How well does the one-shot supernet rank architectures, and is it worth its time?

    python benchmarks/oneshot_fidelity.py [--quick] [--out=/tmp/oneshot_fidelity]
        [--dataset=fashion_mnist] [--proxy_width=0.25] [--resolution=32] [--epochs=10] [--archs=16]

1. Runs one one-shot search (`run_oneshot`; it trains the supernet once).
2. Takes `--archs` architectures spread over the space (uniform samples, fixed seed) plus
   efficientnet-b0 and mnasnet-a1 (both in the default space; A1's relu is not a decision, so
   both sides score A1's blocks with the space's activation). For each it measures the supernet
   accuracy (inherited weights, BN recalibrated on `--calib_batches` training batches, the whole
   validation split) and the stand-alone proxy accuracy (`evaluation.evaluate`), and prints
   Kendall's tau and Spearman's rho, the supernet's training time and one child's mean time.
3. Runs a multi-trial ppo search with as many children as fit in the one-shot search's wall
   time (at the measured child time) and prints the stand-alone proxy reward of each search's
   best (best.json), on the same proxy and reward.

`--quick` shrinks everything (synthetic data, 16 px, tiny proxy, 6 architectures) to check the
script end to end in a few minutes; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import search_space
from controller import base as controller_base
from mnas_search.cli import quiet
from mnas_search.execution import backends
from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.search.oneshot import search as oneshot
from mnas_search.search.oneshot import supernet as supernet_lib
from mnas_search.training import evaluation
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import stats


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default="/tmp/oneshot_fidelity")
  parser.add_argument("--dataset", default="fashion_mnist")
  parser.add_argument("--proxy_width", type=float, default=0.25)
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--epochs", type=int, default=10, help="supernet epochs")
  parser.add_argument("--archs", type=int, default=16)
  parser.add_argument("--calib_batches", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--reuse_oneshot", default=None,
                      help="a finished one-shot search directory of the same settings (as "
                      "`launch.py search --mode=oneshot` writes it): step 1 is skipped")
  parser.add_argument("--oneshot_wall", type=float, default=None,
                      help="with --reuse_oneshot: the wall seconds that search took (its --json "
                      "summary's wall_seconds), the multi-trial search's budget")
  args = parser.parse_args()
  if (args.reuse_oneshot is None) != (args.oneshot_wall is None):
    parser.error("--reuse_oneshot and --oneshot_wall go together")
  if args.quick:
    task = ProxyTask(dataset="synthetic", resolution=16, train_images=256, val_images=128, epochs=1,
                     batch_size=32, proxy_width=0.25, seed=args.seed)
    epochs, n_archs, calib = 2, 6, 2
  else:
    task = ProxyTask(dataset=args.dataset, resolution=args.resolution, proxy_width=args.proxy_width,
                     seed=args.seed)
    epochs, n_archs, calib = args.epochs, args.archs, args.calib_batches
  config = oneshot.OneShotConfig(task=task, oneshot_epochs=epochs, seed=args.seed)
  os.makedirs(args.out, exist_ok=True)
  stamp = time.strftime("%Y%m%d-%H%M%S")

  # 1. One one-shot search (the supernet is trained once, here).
  os_dir = args.reuse_oneshot or os.path.join(args.out, f"oneshot-{stamp}")
  t0 = time.perf_counter()
  summary = oneshot.run_oneshot(os_dir, config, show_progress=False)  # a finished one: reads it back
  oneshot_wall = args.oneshot_wall or time.perf_counter() - t0

  # 2. Fidelity: supernet accuracy vs stand-alone proxy accuracy.
  search = oneshot.OneShotSearch(os_dir, config, show_progress=False)
  runner = search.build()
  folder = controller_base.latest_checkpoint(search.ckpt_dir)
  runner.load_weights(os.path.join(folder, "weights.npz"))
  space, feed = search.space, search.feed
  rng = np.random.default_rng(args.seed + 1000)
  archs = [(f"sample-{i}", space.decode(space.sample_indices(rng))) for i in range(n_archs)]
  for name in ("efficientnet-b0", "mnasnet-a1"):
    archs.append((name, search_space.named(name).replace(activation=space.activation)))
  rows = []
  for name, arch in archs:
    path = supernet_lib.encode_path(space, task.proxy_width, arch)
    runner.recalibrate(path, (feed.train_batch(i)[0] for i in range(calib)))
    shared = runner.accuracy(feed.val_x, feed.val_y, path, feed.batch_size)
    result = evaluation.evaluate(arch, task, seed=args.seed)
    rows.append((name, shared, result.accuracy, result.train_seconds,
                 search_space.count_flops(arch, 224, 1000)))
    print(f"{name:>16}  supernet {shared:.4f}  stand-alone {result.accuracy:.4f}  "
          f"({result.train_seconds:.1f}s)  {rows[-1][4] / 1e6:7.1f}M FLOPs", flush=True)
  shared_acc = [r[1] for r in rows]
  alone_acc = [r[2] for r in rows]
  child_s = float(np.mean([r[3] for r in rows]))
  print(f"\n{len(rows)} architectures: Kendall tau {stats.kendall_tau(shared_acc, alone_acc):.3f}, "
        f"Spearman rho {stats.spearman(shared_acc, alone_acc):.3f}")
  print(f"supernet training {summary.supernet_seconds:.1f}s ({summary.steps} steps, "
        f"{summary.controller_steps} controller steps); one stand-alone child {child_s:.1f}s; "
        f"one-shot search wall {oneshot_wall:.1f}s (finalists {summary.finalist_seconds:.1f}s)")

  # 3. The same wall clock for a multi-trial ppo search, packed as --backend=auto packs it.
  workers = backends.resolve_auto("auto", None)[1]
  trials = max(2, int(oneshot_wall * workers // max(child_s, 1e-3)))
  mt_dir = os.path.join(args.out, f"multitrial-{stamp}")
  t0 = time.perf_counter()
  mt = run_search(mt_dir, SearchConfig(controller="ppo", reward=config.reward, trials=trials,
                                       trials_per_update=min(8, trials), task=task, references=(),
                                       target_flops=config.target_flops, seed=args.seed),
                  show_progress=False)
  mt_wall = time.perf_counter() - t0
  print(f"\nsame budget ({oneshot_wall:.0f}s): one-shot best reward {summary.best['reward']:.4f} "
        f"(accuracy {summary.best['accuracy']:.4f}, {summary.best['flops'] / 1e6:.1f}M FLOPs); "
        f"multi-trial ppo best reward {mt.best['reward']:.4f} (accuracy {mt.best['accuracy']:.4f}, "
        f"{mt.best['flops'] / 1e6:.1f}M FLOPs; {trials} trials in {mt_wall:.0f}s); reward {config.reward}")


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  main()
