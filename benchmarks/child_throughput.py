"""Training throughput of `evaluation.evaluate` against a plain `model.fit`, side by side.

Both train the same B0-shaped child (width 0.25, 32x32, batch 128) on the same tf.data input
(built by `evaluation.proxy_datasets`) with the same compiled model (`evaluation.build_child`), so the
difference is what `evaluate` adds to the training loop: its guard callback (NaN/Inf and timeout
checks, step timing, which makes Keras dispatch callbacks synchronously) and its bookkeeping.

Both sides are measured in steady state, because the first step of a child traces and optimizes
the graph (about 8-13 s for this child on 2 cores), which is the same on both sides but swamps the
comparison with its noise:
  plain     a warm-up `model.fit` of one step, then the wall time of a second `model.fit` over
            all epochs: steps x batch / seconds;
  evaluate  `TrialResult.images_per_sec`: the images after the first step over the time from the
            end of the first step to the end of the last one.
The images/s of evaluate's whole `model.fit` (tracing included) is printed too, for reference.
The runs alternate (plain, evaluate, evaluate, plain, ...) to spread machine noise over both
sides; the medians are compared.

  python benchmarks/child_throughput.py [--rounds=3] [--epochs=2] [--dataset=synthetic]

Exits 1 when the ratio evaluate/plain falls below --min_ratio (0.95).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from absl import app, flags

import search_space
from mnas_search.cli import quiet
from mnas_search.training import evaluation
from mnas_search.training.proxy import ProxyTask

flags.DEFINE_integer("rounds", 3, "Runs of each side (they alternate).")
flags.DEFINE_integer("epochs", 2, "Epochs per run.")
flags.DEFINE_integer("train_images", 5000, "Training images per epoch.")
flags.DEFINE_string("dataset", "synthetic:size=32,channels=3,classes=10,train=7000,test=10",
                    "Dataset (any name mnas_search.data.datasets understands).")
flags.DEFINE_float("min_ratio", 0.95, "Lowest acceptable evaluate/plain throughput ratio.")
FLAGS = flags.FLAGS

WIDTH, RESOLUTION, BATCH = 0.25, 32, 128


def plain_fit(arch, task: ProxyTask) -> float:
  """Steady-state images/s of a plain model.fit on the pipeline and model that evaluate() uses."""
  import keras
  splits = evaluation.load_proxy_splits(task)
  steps = task.epochs * (len(splits.train[1]) // task.batch_size)
  keras.utils.set_random_seed(task.seed)
  train_ds, _ = evaluation.proxy_datasets(task, splits, task.seed)
  model = evaluation.build_child(evaluation.proxy_child(arch, task), task, splits, steps)
  model.fit(train_ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)  # traces the step
  started = time.monotonic()
  model.fit(train_ds, epochs=task.epochs, verbose=0, shuffle=False)
  seconds = time.monotonic() - started
  del model, train_ds
  keras.backend.clear_session()
  return steps * task.batch_size / seconds


def evaluate_fit(arch, task: ProxyTask) -> tuple[float, float]:
  """(evaluate's steady-state images/s, images/s over its whole model.fit with tracing)."""
  r = evaluation.evaluate(arch, task)
  if r.status != "ok":
    raise SystemExit(f"evaluate() returned {r.status}: {r.error}")
  return r.images_per_sec, r.steps * task.batch_size / r.train_seconds


def main(argv) -> None:
  del argv
  arch = search_space.named("efficientnet-b0")
  task = ProxyTask(dataset=FLAGS.dataset, resolution=RESOLUTION, train_images=FLAGS.train_images,
                   val_images=500, epochs=FLAGS.epochs, batch_size=BATCH, proxy_width=WIDTH)
  plain, evaluated, whole = [], [], []
  for i in range(FLAGS.rounds):
    # ABBA order: neither side always runs first on a warmer (or busier) machine.
    for side in (("plain", "evaluate") if i % 2 == 0 else ("evaluate", "plain")):
      if side == "plain":
        plain.append(plain_fit(arch, task))
        print(f"round {i + 1} plain model.fit     {plain[-1]:8.1f} img/s", flush=True)
      else:
        ips, with_tracing = evaluate_fit(arch, task)
        evaluated.append(ips)
        whole.append(with_tracing)
        print(f"round {i + 1} evaluation.evaluate    {ips:8.1f} img/s  (whole fit with tracing: "
              f"{with_tracing:.1f})", flush=True)
  p, e = statistics.median(plain), statistics.median(evaluated)
  ratio = e / p
  print(f"child: efficientnet-b0 width {WIDTH}, {RESOLUTION}x{RESOLUTION}, batch {BATCH}, "
        f"{FLAGS.epochs} epochs x {FLAGS.train_images} images, {FLAGS.rounds} rounds, "
        f"{os.cpu_count()} CPUs")
  print(f"median plain model.fit   {p:8.1f} img/s  (steady state)")
  print(f"median evaluation.evaluate  {e:8.1f} img/s  (steady state; whole fit with tracing: "
        f"{statistics.median(whole):.1f})")
  print(f"ratio evaluate/plain     {ratio:8.3f}  (required >= {FLAGS.min_ratio})")
  if ratio < FLAGS.min_ratio:
    sys.exit(1)


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  app.run(main)
