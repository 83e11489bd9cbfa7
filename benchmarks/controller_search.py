"""Compares the controllers on synthetic landscapes with equal sample budgets.

    python benchmarks/controller_search.py [--samples=500] [--seeds=5] [--batch=16]
        [--controllers=ppo,reinforce,evolution,random] [--landscapes=onemax,pairs]
        [--noise=0.01] [--hparams='{"ppo": {"learning_rate": 0.01}}']

Every controller searches the default search space's decisions; seed s fixes
both the controller and the hidden target, so all controllers face the same
targets. Samples go out in batches (`--batch`), as in the search loop, and
come back with the landscape's noisy reward. The table reports, over seeds
(mean ± std), on the noise-free score (the optimum is 1.0):

- best: the best score found within the budget;
- last-100: the mean score of the last 100 samples (what the controller now proposes);
- to-90%: samples until the first score >= 0.9 (median over the seeds that got
  there, and how many did);
- ms/arch: the controller's own time (sample + update) per sampled architecture,
  after the first batch;
- setup s: construction plus the first batch (for PPO, mostly TF graph tracing).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from absl import app, flags

import controller
from controller import landscapes
from mnas_search.cli import quiet
from search_space import default_space

FLAGS = flags.FLAGS
flags.DEFINE_integer("samples", 500, "Sample budget per run.")
flags.DEFINE_integer("seeds", 5, "Seeds per controller and landscape (0..seeds-1).")
flags.DEFINE_integer("batch", 16, "Samples per update (K).")
flags.DEFINE_list("controllers", ["ppo", "reinforce", "evolution", "random"], "Controllers to run.")
flags.DEFINE_list("landscapes", list(landscapes.LANDSCAPES), "Landscapes to run.")
flags.DEFINE_float("noise", 0.01, "Standard deviation of the reward noise.")
flags.DEFINE_string("hparams", "{}", "JSON: controller name -> hparams, e.g. "
                    '\'{"ppo": {"learning_rate": 0.01}}\'.')

LAST = 100
REACH = 0.9


def run_one(name: str, landscape: landscapes.Landscape, arities, seed: int, samples: int,
            batch: int, hparams: dict) -> dict:
  """One search: the noise-free score of every sample and the controller's time."""
  t0 = time.perf_counter()
  c = controller.make(name, arities, seed=seed, **hparams)
  noise_rng = np.random.default_rng([seed, 7])
  scores, setup, steady = [], 0.0, 0.0
  while len(scores) < samples:
    k = min(batch, samples - len(scores))
    t1 = time.perf_counter()
    batch_samples = c.sample(k)
    t2 = time.perf_counter()
    idx = [s.indices for s in batch_samples]
    rewards = landscape.reward(idx, noise_rng)
    t3 = time.perf_counter()
    c.update(batch_samples, rewards)
    t4 = time.perf_counter()
    if scores:
      steady += (t2 - t1) + (t4 - t3)
    else:
      setup = t4 - t0 - (t3 - t2)
    scores.extend(landscape.score(idx).tolist())
  scores = np.array(scores)
  reached = np.flatnonzero(scores >= REACH * landscapes.OPTIMUM)
  return {"best": float(scores.max()), "last": float(scores[-LAST:].mean()),
          "reach": int(reached[0]) + 1 if reached.size else None,
          "ms": 1e3 * steady / max(1, samples - batch), "setup": setup}


def summarize(runs: list[dict]) -> list[str]:
  def ms(key, fmt):
    v = np.array([r[key] for r in runs])
    return f"{v.mean():{fmt}} ± {v.std():{fmt}}"
  reach = [r["reach"] for r in runs if r["reach"] is not None]
  reach_text = f"{int(np.median(reach))} ({len(reach)}/{len(runs)})" if reach else f"- (0/{len(runs)})"
  return [ms("best", ".3f"), ms("last", ".3f"), reach_text, ms("ms", ".2f"), ms("setup", ".1f")]


def main(argv):
  del argv
  hparams = json.loads(FLAGS.hparams)
  arities = default_space().arities
  header = ["landscape", "controller", "best", f"last-{LAST}", f"to-{int(REACH * 100)}%",
            "ms/arch", "setup s"]
  rows = []
  for land in FLAGS.landscapes:
    for name in FLAGS.controllers:
      runs = [run_one(name, landscapes.make_landscape(land, arities, seed, FLAGS.noise), arities,
                      seed, FLAGS.samples, FLAGS.batch, hparams.get(name, {}))
              for seed in range(FLAGS.seeds)]
      rows.append([land, name] + summarize(runs))
      print(" | ".join(rows[-1]), file=sys.stderr, flush=True)  # progress
  widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
  line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
  print(f"{FLAGS.samples} samples, batches of {FLAGS.batch}, {FLAGS.seeds} seeds, "
        f"noise {FLAGS.noise}, {len(arities)} decisions (default_space)")
  print(line(header))
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in rows:
    print(line(r))


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  app.run(main)
