"""Does the supernet train a single path as well as that network trained alone?

    python benchmarks/oneshot_single_path.py [--out=results/oneshot/single_path.jsonl]

For each of three paths of the micro space (smallest choices, largest, a mix) and two lengths of
training (1 and 3 epochs of 1,280 synthetic 16-px images in 10 classes), it trains the supernet
along that path only with the proxy child's recipe, recalibrates BN on 16 training batches and
scores the validation split; and it trains the same network alone (`evaluation.evaluate`, the
proxy child). It also scores another, never trained, path of the same supernet (near chance if the
masks keep the paths apart). One JSON line per (path, epochs); the last line is a summary.
tests/test_supernet.py keeps the 3-epoch case of the first path as a default-suite test.
"""

from __future__ import annotations

import json
import os
import platform
import sys

from mnas_search.cli import quiet

PATHS = [(0, 0, 0, 0, 0, 0) * 3,
         (1, 2, 1, 0, 1, 0, 1, 2, 1, 0, 1, 1, 1, 2, 1, 0, 1, 1),
         (0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 2, 1, 0, 0, 1)]
TASK = dict(dataset="synthetic:size=16,classes=10,train=1600,test=200", resolution=16, train_images=1280,
            val_images=320, batch_size=64, proxy_width=1.0, learning_rate=0.05, seed=0)
RECALIBRATION_BATCHES = 16


def measure(indices, epochs: int) -> dict:
  """One (path, epochs) row: alone, shared before and after recalibration, an untrained path."""
  import search_space
  from mnas_search.search.oneshot import supernet as sn
  from mnas_search.search.oneshot.search import train_one_path
  from mnas_search.training import evaluation
  from mnas_search.training.proxy import ProxyTask
  space = search_space.get_space("micro")
  task = ProxyTask(**TASK, epochs=epochs)
  arch = space.decode(indices)
  alone = evaluation.evaluate(arch, task)
  runner, feed, path = train_one_path(space, task, arch)
  steps = task.epochs * feed.steps_per_epoch
  no_recal = runner.accuracy(feed.val_x, feed.val_y, path, task.batch_size)
  runner.recalibrate(path, (feed.train_batch(s)[0] for s in range(RECALIBRATION_BATCHES)))
  shared = runner.accuracy(feed.val_x, feed.val_y, path, task.batch_size)
  other_indices = PATHS[(PATHS.index(tuple(indices)) + 1) % len(PATHS)]
  other = sn.encode_path(space, task.proxy_width, space.decode(other_indices))
  runner.recalibrate(other, (feed.train_batch(s)[0] for s in range(RECALIBRATION_BATCHES)))
  untrained = runner.accuracy(feed.val_x, feed.val_y, other, task.batch_size)
  return {"path": list(indices), "epochs": epochs, "steps": steps, "alone": alone.accuracy,
          "alone_status": alone.status, "shared_before_recalibration": no_recal, "shared": shared,
          "untrained_path": untrained, "chance": 1 / feed.num_classes}


def main() -> None:
  out = "results/oneshot/single_path.jsonl"
  for arg in sys.argv[1:]:
    if arg.startswith("--out="):
      out = arg.split("=", 1)[1]
    else:
      print(f"error: {arg} is not understood; allowed: --out=PATH", file=sys.stderr)
      sys.exit(2)
  rows = []
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    for epochs in (1, 3):
      for indices in PATHS:
        row = dict(measure(indices, epochs), machine=f"{platform.machine()}, {os.cpu_count()} cores")
        rows.append(row)
        f.write(json.dumps(row) + "\n")
        f.flush()
        print(json.dumps(row))
  gaps = [r["shared"] - r["alone"] for r in rows]
  print(json.dumps({"n": len(rows), "min_shared_minus_alone": min(gaps), "max_shared_minus_alone": max(gaps),
                    "max_untrained_path": max(r["untrained_path"] for r in rows)}))


if __name__ == "__main__":
  quiet.install()  # quiet TF logs
  main()
