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

With `--reference=ground_truth` step 2 scores the networks of the ground truth G
(`--ground_truth`, results/ground_truth/) instead: every network of G that the supernet can express
(a base architecture of the space; A1 is scored with the space's activation), against G's test
accuracy, with 90% bootstrap intervals, and each of G's proxies on the same networks for
comparison; step 3 is skipped. Each run appends its per-network rows to OUT/records.jsonl and its
summary to OUT/runs.jsonl under `--variant`, and prints a last-line JSON with kendall_tau,
spearman, n_architectures, supernet_seconds and reference.

`--search_g=DIR` takes a finished `launch.py search --mode=oneshot` directory instead and trains its
best (best.json) in G's regime on seeds 0 and 1 (records under OUT/g/, resumable);
`--search_summary` prints that network against B0 and A1 in G (OUT/search.json: the search's own
--json summary).

The supernet recipe is set by `--paths_per_step`, `--path_rule` (controller, uniform, sandwich),
`--warmup_fraction` (uniform paths first), `--controller_batch`, `--calib_batches` and the
proxy's optimizer (`--optimizer`, `--lr`, `--label_smoothing`, `--weight_decay`).

`--quick` shrinks everything (synthetic data, 16 px, tiny proxy, 6 architectures) to check the
script end to end in a few minutes; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import search_space
from controller import base as controller_base
from mnas_search.analysis import ground_truth as gt
from mnas_search.cli import quiet
from mnas_search.execution import backends
from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.search.oneshot import search as oneshot
from mnas_search.search.oneshot import supernet as supernet_lib
from mnas_search.training import evaluation
from mnas_search.training.proxy import EARLIER_DEFAULTS, ProxyTask
from mnas_search.util import fileio, stats


def g_networks(directory: str, space) -> list[tuple[str, search_space.Architecture, float]]:
  """(name, architecture, G test accuracy) of every network of G the supernet can express."""
  truth = gt.read_truth(directory)
  out, seen = [], set()
  for r in gt.read_records(directory):
    key = r["blocks"]
    if key in seen or key not in truth or "arch" not in r:
      continue
    seen.add(key)
    arch = search_space.Architecture.from_dict(r["arch"]).replace(activation=space.activation)
    try:
      supernet_lib.check_base_arch(space, arch)
    except ValueError:
      continue
    out.append((r["name"], arch, truth[key]))
  return out


def g_fidelity(args, runner, feed, space, task, calib: int, supernet_seconds: float) -> dict:
  """Step 2 against G: the supernet's accuracy of each of G's networks, tau and rho with intervals,
  and G's proxies on the same networks; rows and the summary appended under OUT."""
  rows = []
  for name, arch, truth in g_networks(args.ground_truth, space):
    path = supernet_lib.encode_path(space, task.proxy_width, arch)
    runner.recalibrate(path, (feed.train_batch(i)[0] for i in range(calib)))
    acc = runner.accuracy(feed.val_x, feed.val_y, path, feed.batch_size)
    rows.append({"variant": args.variant, "name": name, "blocks": gt.blocks_key(arch),
                 "supernet_accuracy": acc, "g_test_accuracy": truth})
    print(f"{name:>18}  supernet {acc:.4f}  G {truth:.4f}", flush=True)
  signal = {r["blocks"]: r["supernet_accuracy"] for r in rows}
  truth = {r["blocks"]: r["g_test_accuracy"] for r in rows}
  agreement = gt.score(signal, truth)
  proxies = {p: gt.score(gt.proxy_signal(args.ground_truth, p), truth) for p in gt.proxy_names(args.ground_truth)}
  summary = {"variant": args.variant, "kendall_tau": agreement["kendall_tau"],
             "spearman": agreement["spearman_rho"], "n_architectures": agreement["matched"],
             "kendall_tau_interval": agreement["kendall_tau_interval"],
             "supernet_seconds": round(supernet_seconds, 1), "reference": args.ground_truth,
             "settings": {k: getattr(args, k) for k in RECIPE_FLAGS},
             "proxies_on_same_networks": {p: {k: v[k] for k in ("kendall_tau", "kendall_tau_interval", "matched")}
                                          for p, v in proxies.items()}}
  os.makedirs(args.out, exist_ok=True)
  for r in rows:
    fileio.append_jsonl(os.path.join(args.out, "records.jsonl"), r)
  fileio.append_jsonl(os.path.join(args.out, "runs.jsonl"), summary)
  return summary


def g_flops(directory: str) -> dict[str, float]:
  """Deploy FLOPs of each network of G, by blocks."""
  return {r["blocks"]: float(r["flops"]) for r in gt.read_records(directory)}


RECIPE_FLAGS = ("epochs", "paths_per_step", "path_rule", "warmup_fraction", "controller_batch",
                "calib_batches", "optimizer", "lr", "label_smoothing", "weight_decay", "proxy_width",
                "private_weights", "zero_init_residual")
# Settings that older runs did not record, at the value those runs had.
UNRECORDED = {"private_weights": False, "zero_init_residual": False}


def variants_table(runs: list[dict], rows: list[dict], proxy: str, flops: dict[str, float],
                   baseline: str = "baseline") -> str:
  """The README's table of the runs against G: each variant's change of recipe against
  `baseline`, n, Kendall tau with its 90% interval, Spearman rho, `proxy`'s tau on the networks
  of G it scored among them (as G held them at the run), the supernet's tau with the networks'
  deploy FLOPs (`flops` by blocks; FLOPs alone rank G well, so a supernet may rank by size) and
  Kendall's partial tau against G with FLOPs held fixed (what it ranks beyond size), its mean
  accuracy over the networks it scored (does it learn at all?) and its training seconds."""
  base = dict(UNRECORDED, **next(r for r in runs if r["variant"] == baseline)["settings"])
  lines = ["| variant | change against `baseline` | n | Kendall τ [90%] | Spearman ρ | "
           f"`{proxy}` τ (n) | τ with deploy FLOPs | τ, FLOPs held fixed | supernet accuracy % (mean) | "
           "supernet s |", "|" + "---|" * 10]
  for run in runs:
    settings = dict(UNRECORDED, **run["settings"])
    change = ", ".join(f"{k}={v}" for k, v in settings.items() if base.get(k) != v) or "—"
    lo, hi = run["kendall_tau_interval"]
    mine = [r for r in rows if r["variant"] == run["variant"]]
    mean = np.mean([r["supernet_accuracy"] for r in mine])
    size = [flops[r["blocks"]] for r in mine]
    by_size = stats.kendall_tau([r["supernet_accuracy"] for r in mine], size)
    g_size = stats.kendall_tau([r["g_test_accuracy"] for r in mine], size)
    partial = (run["kendall_tau"] - by_size * g_size) / np.sqrt((1 - by_size ** 2) * (1 - g_size ** 2))
    p = run["proxies_on_same_networks"][proxy]
    lines.append(f"| `{run['variant']}` | {change} | {run['n_architectures']} | "
                 f"{run['kendall_tau']:+.2f} [{lo:+.2f}, {hi:+.2f}] | {run['spearman']:+.2f} | "
                 f"{p['kendall_tau']:+.2f} ({p['matched']}) | {by_size:+.2f} | {partial:+.2f} | {100 * mean:.1f} | "
                 f"{run['supernet_seconds']:.0f} |")
  return "\n".join(lines)


SEARCH_SEEDS = (0, 1)  # G's regime, as G's B0 and A1 have
SEARCH_BEST = "oneshot-best"
SEARCH_REFERENCES = ("efficientnet-b0", "mnasnet-a1")  # networks of G the search's best is set against


def search_in_g(search_dir: str, out: str, workers: int) -> None:
  """Trains a finished one-shot search's best in G's regime on SEARCH_SEEDS (OUT/g/, resumable)."""
  import ground_truth as gtb  # benchmarks/ground_truth.py: G's recipe and its runner
  best = fileio.read_json(os.path.join(search_dir, "best.json"))["arch"]
  plan = gtb.Plan()
  jobs = [gtb.Job(SEARCH_BEST, best, seed, task=plan.g_task.replace(seed=seed).to_dict(),
                  augment=plan.g_augment) for seed in SEARCH_SEEDS]
  gtb.run_jobs(os.path.join(out, "g"), jobs, workers, None)


def search_table(out: str, ground_truth: str) -> str:
  """The one-shot search's best (OUT/g/) against B0 and A1 in G: FLOPs, parameters and G test
  accuracy (mean ± std over seeds, n), its difference from each reference (permutation p), and the
  search's wall time (OUT/search.json)."""
  mine = [r for r in gt.read_records(os.path.join(out, "g")) if r["status"] == "ok"]
  refs = [r for r in gt.read_records(ground_truth) if r["status"] == "ok"]
  groups = {SEARCH_BEST: mine, **{n: [r for r in refs if r["name"] == n] for n in SEARCH_REFERENCES}}
  search = fileio.read_json(os.path.join(out, "search.json"))
  lines = ["| network | MFLOPs at 224 | params | G test % (mean ± std, n) | one-shot best − it (points) | p |",
           "|" + "---|" * 6]
  best = [100 * r["test_accuracy"] for r in mine]
  for name, rs in groups.items():
    acc = [100 * r["test_accuracy"] for r in rs]
    diff = p = "—"
    if name != SEARCH_BEST:
      diff, p = f"{np.mean(best) - np.mean(acc):+.2f}", f"{stats.permutation_test(best, acc):.3g}"
    std = f"{np.std(acc, ddof=1):.2f}" if len(acc) > 1 else "n/a"
    lines.append(f"| {name} | {rs[0]['flops'] / 1e6:.1f} | {rs[0]['params']:,} | "
                 f"{np.mean(acc):.2f} ± {std} (n={len(acc)}) | {diff} | {p} |")
  lines.append(f"\nOne-shot search: {search['wall_seconds']:.0f} s wall (supernet "
               f"{search['supernet_seconds']:.0f} s, finalists {search['finalist_seconds']:.0f} s), "
               f"{search['steps']} supernet steps, {len(search['finalists'])} finalists.")
  return "\n".join(lines)


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
  parser.add_argument("--reference", choices=("standalone", "ground_truth"), default="standalone")
  parser.add_argument("--ground_truth", default="results/ground_truth")
  parser.add_argument("--variant", default="default", help="the name this run's records go under")
  parser.add_argument("--paths_per_step", type=int, default=1)
  parser.add_argument("--path_rule", choices=oneshot.PATH_RULES, default="controller")
  parser.add_argument("--private_weights", action="store_true",
                      help="expansion 1 and skip-less blocks keep their own supernet weights")
  parser.add_argument("--zero_init_residual", action="store_true",
                      help="blocks that keep their skip start as the identity (BigNAS)")
  parser.add_argument("--warmup_fraction", type=float, default=0.25)
  parser.add_argument("--controller_batch", type=int, default=1)
  parser.add_argument("--optimizer", choices=("sgd", "rmsprop"), default="sgd")
  parser.add_argument("--lr", type=float, default=0.1)
  parser.add_argument("--label_smoothing", type=float, default=0.0)
  parser.add_argument("--weight_decay", type=float, default=0.0)
  parser.add_argument("--reuse_oneshot", default=None,
                      help="a finished one-shot search directory of the same settings (as "
                      "`launch.py search --mode=oneshot` writes it): step 1 is skipped")
  parser.add_argument("--oneshot_wall", type=float, default=None,
                      help="with --reuse_oneshot: the wall seconds that search took (its --json "
                      "summary's wall_seconds), the multi-trial search's budget")
  parser.add_argument("--summary", action="store_true",
                      help="only print the table of the runs in OUT (records.jsonl, runs.jsonl)")
  parser.add_argument("--search_g", default=None,
                      help="a finished `launch.py search --mode=oneshot` directory: train its best "
                      "in G's regime on seeds 0 and 1 under OUT/g/")
  parser.add_argument("--search_summary", action="store_true",
                      help="print the --search_g network against B0 and A1 in G")
  parser.add_argument("--workers", type=int, default=2, help="--search_g: G trainings at a time")
  args = parser.parse_args()
  if args.search_g:
    if not os.path.isfile(os.path.join(args.search_g, "best.json")):
      parser.error(f"--search_g={args.search_g} holds no best.json; allowed: a finished "
                   "`launch.py search --mode=oneshot` directory")
    search_in_g(args.search_g, args.out, args.workers)
    return
  if args.search_summary:
    print(search_table(args.out, args.ground_truth))
    return
  if args.summary:
    import ground_truth as gtb  # benchmarks/ground_truth.py: the default proxy's name
    print(variants_table(fileio.read_jsonl(os.path.join(args.out, "runs.jsonl")),
                         fileio.read_jsonl(os.path.join(args.out, "records.jsonl")), gtb.DEFAULT_PROXY,
                         g_flops(args.ground_truth)))
    return
  if (args.reuse_oneshot is None) != (args.oneshot_wall is None):
    parser.error("--reuse_oneshot and --oneshot_wall go together")
  if args.quick:
    task = ProxyTask(dataset="synthetic", resolution=16, train_images=256, val_images=128, epochs=1,
                     batch_size=32, proxy_width=0.25, seed=args.seed)
    epochs, n_archs, calib = 2, 6, 2
    args.epochs, args.calib_batches = epochs, calib  # recorded with the run's settings
  else:
    # The proxy its committed records were made with, so that a new variant compares with them.
    task = ProxyTask(dataset=args.dataset, resolution=args.resolution, proxy_width=args.proxy_width,
                     **EARLIER_DEFAULTS, seed=args.seed, optimizer=args.optimizer,
                     learning_rate=args.lr, label_smoothing=args.label_smoothing,
                     weight_decay=args.weight_decay)
    epochs, n_archs, calib = args.epochs, args.archs, args.calib_batches
  config = oneshot.OneShotConfig(task=task, oneshot_epochs=epochs, seed=args.seed,
                                 paths_per_step=args.paths_per_step, path_rule=args.path_rule,
                                 oneshot_warmup_fraction=args.warmup_fraction,
                                 controller_batch=args.controller_batch,
                                 private_weights=args.private_weights,
                                 zero_init_residual=args.zero_init_residual)
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
  if args.reference == "ground_truth":
    print(json.dumps(g_fidelity(args, runner, feed, space, task, calib, summary.supernet_seconds)))
    return
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
  print(json.dumps({"kendall_tau": stats.kendall_tau(shared_acc, alone_acc),
                    "spearman": stats.spearman(shared_acc, alone_acc), "n_architectures": len(rows),
                    "supernet_seconds": round(summary.supernet_seconds, 1), "reference": "standalone"}))


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  main()
