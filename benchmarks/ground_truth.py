"""The ground truth G: architectures trained the way a user trains the final network, on the test split.

    python benchmarks/ground_truth.py [--out=results/ground_truth] [--stages=ground_truth,proxies]
        [--workers=auto] [--max_hours=H]
    python benchmarks/ground_truth.py --summary --out=results/ground_truth

G is the fixed reference that every cheaper signal of this project (a proxy, a search's trials,
a one-shot supernet) is scored against. Two kinds of record, both append-only and written by this
process alone, one line per finished job:

  OUT/records.jsonl   one line per (architecture, seed) trained under G: name, blocks, seed,
                      test_accuracy (a fraction), val_accuracy, flops and params (at 224 px, 1000
                      classes, as the search counts them), epochs, wall_seconds, workers, commit
                      and the architecture itself. Training runs in OUT/runs/NAME/seedS
                      (`mnas_search.train`, checkpointed after every epoch, so a SIGKILL loses at
                      most one epoch); a record is appended when the run has finished.
  OUT/proxies.jsonl   one line per (proxy, architecture, seed): proxy, name, blocks, seed,
                      accuracy (validation, never test), status and seconds (the child's wall time
                      in one single-threaded worker, two such workers sharing the 2 cores).

The set (`architecture_set`): efficientnet-b0, mnasnet-a1 and mobilenet-v2; every distinct
finalist retrained in results/search_quality (their directory name is their name here); and
`RANDOM_COUNT` networks of the default space drawn with a fixed seed, one per log-FLOPs stratum
between 50M and 600M at 224 px, cycling through deep/shallow x SE-heavy/SE-light x
skip/no-skip. `EXTRA_SEED_NAMES` get a second seed.

Jobs run in priority order (`job_queue`): the references first, so that a partial run already
says whether G meets its criteria, then the recipe table, then the rest. Run the command again
to continue; what the records hold is skipped, nothing is run or recorded twice.

`--summary` reads only records.jsonl and proxies.jsonl and writes summary.json and summary.md; its
last line of output is a JSON object with the headline numbers.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Iterable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import search_space  # noqa: E402
from mnas_search import backends as backends_lib  # noqa: E402
from mnas_search import fileio, interrupt, stats  # noqa: E402
from mnas_search.proxy import ProxyTask  # noqa: E402

REFERENCES = ("efficientnet-b0", "mnasnet-a1", "mobilenet-v2")
SEARCH_QUALITY_TRAIN = os.path.join("results", "search_quality", "train")

# G: the whole training split but 2,000 monitored validation images, at 32 px in the small-image
# geometry (stem stride 1) and width 0.5, SGD with momentum, warm-up then cosine, gradients clipped
# to norm 1, label smoothing, weight decay, crop+flip and a weight EMA (train.py's defaults),
# scored on the 10,000 test images. Width 0.5 and 6 epochs fit the set in the 8-hour budget.
G_TASK = ProxyTask(train_images=None, val_images=2000, epochs=6, batch_size=128,
                   learning_rate=0.1, warmup_fraction=0.05, weight_decay=1e-4,
                   label_smoothing=0.1, bn_momentum=0.99, proxy_width=0.5, stem_stride=1,
                   clip_norm=1.0)
EXTRA_SEEDS = 2  # seeds 0..EXTRA_SEEDS-1 for the names below, seed 0 for the rest

RANDOM_COUNT = 16
RANDOM_SEED = 20261202
RANDOM_POOL = 20000
FLOPS_RANGE = (50e6, 600e6)

# Candidate proxies scored on every architecture of G (seed 0) and on B0 and A1 over NOISE_SEEDS.
# The names say what differs: images (k) x epochs, width, stem stride, recipe.
NOISE_SEEDS = 5
_NEW = dict(learning_rate=0.1, warmup_fraction=0.1, bn_momentum=0.9, clip_norm=1.0)
CANDIDATES = {
    # The search-quality proxy's recipe (no clipping), as its experiment ran it.
    "8k-e2-w0.25-s2-noclip": ProxyTask(train_images=8000, epochs=2, batch_size=64,
                                       learning_rate=0.1, proxy_width=0.25),
    "8k-e2-w0.25-s2": ProxyTask(train_images=8000, epochs=2, batch_size=64, proxy_width=0.25,
                                **_NEW),
    "8k-e2-w0.25-s1": ProxyTask(train_images=8000, epochs=2, batch_size=64, proxy_width=0.25,
                                stem_stride=1, **_NEW),
    "16k-e1-w0.25-s1": ProxyTask(train_images=16000, epochs=1, batch_size=64, proxy_width=0.25,
                                 stem_stride=1, **_NEW),
    "4k-e4-w0.25-s1": ProxyTask(train_images=4000, epochs=4, batch_size=64, proxy_width=0.25,
                                stem_stride=1, **_NEW),
    "8k-e2-w0.5-s2": ProxyTask(train_images=8000, epochs=2, batch_size=64, proxy_width=0.5,
                               **_NEW),
    "16k-e2-w0.25-s1": ProxyTask(train_images=16000, epochs=2, batch_size=64, proxy_width=0.25,
                                 stem_stride=1, **_NEW),
}
SUMMARY_COST_LIMIT_S = 60.0  # the default proxy is the best tau among those this cheap per child


def names_with_extra_seeds(names: Sequence[str]) -> tuple[str, ...]:
  """B0, A1, MobileNetV2 and every fifth other architecture: at least 8 with 2 seeds."""
  others = [n for n in names if n not in REFERENCES]
  return tuple(REFERENCES) + tuple(others[::5])


# ----------------------------------------------------------------------------- the set
def blocks_key(arch: search_space.Architecture) -> str:
  """The network's block strings joined by commas: the same string for the same network everywhere."""
  return ",".join(arch.block_strings)


def deploy_costs(arch: search_space.Architecture) -> tuple[int, int]:
  """(multiply-adds, parameters) at 224 px and 1000 classes, as the search counts them."""
  return search_space.count_flops(arch, 224, 1000), search_space.count_params(arch, 1000)


def search_quality_finalists(train_dir: str = SEARCH_QUALITY_TRAIN) -> list[tuple[str, dict]]:
  """(name, arch dict) of each architecture retrained in results/search_quality, references out."""
  out = []
  if not os.path.isdir(train_dir):
    return out
  for key in sorted(os.listdir(train_dir)):
    params = os.path.join(train_dir, key, "seed0", "params.json")
    if key in REFERENCES or not os.path.isfile(params):
      continue
    out.append((key, fileio.read_json(params)["arch"]))
  return out


def _features(arch: search_space.Architecture) -> tuple[int, int, int]:
  """(blocks, SE blocks, no-skip blocks) of the expanded network."""
  blocks = arch.expand_blocks()
  return (len(blocks), sum(b.se_ratio > 0 for b in blocks),
          sum(not b.id_skip for b in blocks))


def random_architectures(count: int = RANDOM_COUNT, seed: int = RANDOM_SEED,
                         pool: int = RANDOM_POOL) -> list[tuple[str, dict]]:
  """`count` networks of the default space, one per log-FLOPs stratum within FLOPS_RANGE.

  Stratum i takes the first pooled network whose (deep, SE-heavy, no-skip-heavy) profile, each
  relative to the pool's median, is combination i mod 8; if none has it, the first in the stratum.
  """
  space = search_space.default_space()
  rng = np.random.default_rng(seed)
  archs = [space.decode(space.sample_indices(rng), name="random") for _ in range(pool)]
  flops = np.array([search_space.count_flops(a, 224, 1000) for a in archs], dtype=np.float64)
  feats = np.array([_features(a) for a in archs])
  medians = np.median(feats, axis=0)
  edges = np.geomspace(*FLOPS_RANGE, count + 1)
  chosen, seen = [], set()
  for i in range(count):
    want = tuple(bool((i >> bit) & 1) for bit in range(3))
    in_bin = [j for j in np.flatnonzero((flops >= edges[i]) & (flops < edges[i + 1]))
              if archs[j].identity() not in seen]
    if not in_bin:
      continue
    match = [j for j in in_bin if tuple(feats[j] > medians) == want]
    j = (match or in_bin)[0]
    seen.add(archs[j].identity())
    chosen.append((f"random-{i:02d}", archs[j].replace(name=f"random-{i:02d}").to_dict()))
  return chosen


def architecture_set() -> list[tuple[str, dict]]:
  """(name, arch dict) of every architecture of G: references, old finalists, random draws."""
  entries = [(n, search_space.named(n).to_dict()) for n in REFERENCES]
  entries += search_quality_finalists() + random_architectures()
  seen, out = set(), []
  for name, d in entries:
    ident = search_space.Architecture.from_dict(d).identity()
    if ident not in seen:  # one network, one name
      seen.add(ident)
      out.append((name, d))
  return out


# ----------------------------------------------------------------------------- jobs
@dataclasses.dataclass(frozen=True)
class Job:
  """One unit of work: a G training (`proxy` None) or one proxy child."""

  name: str
  arch: dict
  seed: int
  proxy: str | None = None

  @property
  def key(self) -> tuple[str | None, str, int]:
    return (self.proxy, self.name, self.seed)


def job_queue(archs: Sequence[tuple[str, dict]], stages: Sequence[str]) -> list[Job]:
  """Every job, in priority order: what a partial run needs most comes first."""
  by_name = dict(archs)
  names = [n for n, _ in archs]
  extra = names_with_extra_seeds(names)
  g = "ground_truth" in stages
  p = "proxies" in stages
  jobs: list[Job] = []
  if g:  # the references, 2 seeds: does G meet its criteria?
    jobs += [Job(n, by_name[n], s) for s in range(EXTRA_SEEDS) for n in REFERENCES[:2]]
  if p:  # the recipe table: B0 and A1 over NOISE_SEEDS seeds on every candidate
    jobs += [Job(n, by_name[n], s, c) for c in CANDIDATES for n in REFERENCES[:2]
             for s in range(NOISE_SEEDS)]
  if g:
    jobs += [Job(n, by_name[n], 0) for n in names]
    jobs += [Job(n, by_name[n], s) for s in range(1, EXTRA_SEEDS) for n in extra]
  if p:
    jobs += [Job(n, by_name[n], 0, c) for c in CANDIDATES for n in names]
  out, seen = [], set()
  for j in jobs:
    if j.key not in seen:
      seen.add(j.key)
      out.append(j)
  return out


def run_dir(out: str, name: str, seed: int) -> str:
  return os.path.join(out, "runs", name, f"seed{seed}")


def _commit() -> str | None:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def _run_job(args: tuple[Job, str, int]) -> dict[str, Any]:
  """Runs one job in a worker process and returns its record (top level, for the pool)."""
  job, out, workers = args
  arch = search_space.Architecture.from_dict(job.arch)
  flops, params = deploy_costs(arch)
  base = {"name": job.name, "blocks": blocks_key(arch), "seed": job.seed, "flops": flops,
          "params": params, "workers": workers, "commit": _commit()}
  if job.proxy is None:
    from mnas_search import train as train_lib
    config = train_lib.TrainConfig(G_TASK.replace(seed=job.seed))
    r = train_lib.train(arch, run_dir(out, job.name, job.seed), config, verbose=0)
    m = r.metrics or {}
    return {**base, "status": r.status, "test_accuracy": m.get("test_accuracy"),
            "val_accuracy": m.get("val_accuracy"), "epochs": G_TASK.epochs,
            "wall_seconds": m.get("train_seconds"), "error": r.error, "arch": job.arch}
  from mnas_search import trainer
  t0 = time.monotonic()
  res = trainer.evaluate(arch, CANDIDATES[job.proxy], seed=job.seed)
  return {"proxy": job.proxy, **base, "accuracy": res.accuracy, "status": res.status,
          "seconds": round(time.monotonic() - t0, 3), "error": res.error}


def records_path(out: str, proxy: bool) -> str:
  return os.path.join(out, "proxies.jsonl" if proxy else "records.jsonl")


def done_keys(out: str) -> set[tuple[str | None, str, int]]:
  keys = set()
  for proxy in (False, True):
    path = records_path(out, proxy)
    if os.path.isfile(path):
      for r in fileio.read_jsonl(path):
        keys.add((r.get("proxy"), r["name"], r["seed"]))
  return keys


def run_jobs(out: str, jobs: Sequence[Job], workers: int, max_hours: float | None) -> int:
  """Runs the jobs not yet recorded in `workers` single-purpose processes; returns how many ran."""
  done = done_keys(out)
  todo = [j for j in jobs if j.key not in done]
  logging.info("%d of %d jobs to run", len(todo), len(jobs))
  if not todo:
    return 0
  deadline = None if max_hours is None else time.monotonic() + max_hours * 3600
  threads = backends_lib.default_threads_per_worker(workers)
  ctx = multiprocessing.get_context("spawn")
  n = 0
  # A pool, not concurrent.futures: leaving the block on a stop terminates the trainings at once
  # (their checkpoints are written atomically; a rerun continues them).
  with ctx.Pool(workers, initializer=backends_lib.init_worker, initargs=(threads,),
                maxtasksperchild=1) as pool:
    for record in pool.imap_unordered(_run_job, [(j, out, workers) for j in todo]):
      with interrupt.deferred():
        fileio.append_jsonl(records_path(out, "proxy" in record), record)
      n += 1
      print(_line(record), flush=True)
      if deadline is not None and time.monotonic() > deadline:
        logging.info("--max_hours reached; run again to continue")
        break
  return n


def _line(r: dict[str, Any]) -> str:
  if "proxy" in r:
    return (f"proxy {r['proxy']} {r['name']} s{r['seed']}: {r['accuracy']:.4f} "
            f"({r['status']}, {r['seconds']:.0f}s)")
  acc = r["test_accuracy"]
  return (f"G {r['name']} s{r['seed']}: test {acc if acc is None else round(acc, 4)} "
          f"({r['status']}, {r['wall_seconds']}s)")


GITIGNORE = """# Weights, checkpoints and TensorBoard logs stay out of git; the records stay in.
*.keras
*.h5
tb/
checkpoint/
"""


# ----------------------------------------------------------------------------- summary
def _mean_std(values: Sequence[float]) -> dict[str, Any]:
  vals = [float(v) for v in values]
  return {"n": len(vals), "mean": statistics.fmean(vals) if vals else None,
          "std": statistics.stdev(vals) if len(vals) >= 2 else None}


def bootstrap_interval(x: Sequence[float], y: Sequence[float], fn, level: float = 0.9,
                       resamples: int = 2000, seed: int = 0) -> list[float] | None:
  """Percentile bootstrap interval of fn(x, y) over resampled pairs (None below 4 pairs)."""
  xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if len(xs) < 4:
    return None
  rng = np.random.default_rng(seed)
  vals = []
  for _ in range(resamples):
    idx = rng.integers(0, len(xs), len(xs))
    v = fn(xs[idx], ys[idx]) if len(set(xs[idx])) > 1 and len(set(ys[idx])) > 1 else math.nan
    if not math.isnan(v):
      vals.append(v)
  lo, hi = np.percentile(vals, [50 * (1 - level), 50 * (1 + level)])
  return [round(float(lo), 4), round(float(hi), 4)]


def rank_agreement(signal: dict[str, float], truth: dict[str, float]) -> dict[str, Any]:
  """Kendall τ and Spearman ρ (with bootstrap 90% intervals) of `signal` against `truth` by key."""
  keys = sorted(set(signal) & set(truth))
  out: dict[str, Any] = {"n": len(keys), "kendall_tau": None, "spearman_rho": None,
                         "kendall_tau_90": None, "spearman_rho_90": None}
  if len(keys) < 3:
    return out
  x, y = [signal[k] for k in keys], [truth[k] for k in keys]
  for name, fn in (("kendall_tau", stats.kendall_tau), ("spearman_rho", stats.spearman)):
    v = fn(x, y)
    out[name] = None if math.isnan(v) else round(v, 4)
    out[name + "_90"] = bootstrap_interval(x, y, fn)
  return out


def truth_by_blocks(records: Iterable[dict[str, Any]]) -> dict[str, float]:
  """Mean G test accuracy per network (keyed by `blocks`), over its ok seeds."""
  acc: dict[str, list[float]] = {}
  for r in records:
    if r.get("status", "ok") == "ok" and r.get("test_accuracy") is not None:
      acc.setdefault(r["blocks"], []).append(float(r["test_accuracy"]))
  return {k: statistics.fmean(v) for k, v in acc.items()}


def summarize(out: str) -> dict[str, Any]:
  """The headline numbers, from records.jsonl and proxies.jsonl only."""
  recs = fileio.read_jsonl(records_path(out, False)) if os.path.isfile(records_path(out, False)) else []
  prox = fileio.read_jsonl(records_path(out, True)) if os.path.isfile(records_path(out, True)) else []
  ok = [r for r in recs if r.get("status") == "ok"]
  by_name: dict[str, list[float]] = {}
  for r in ok:
    by_name.setdefault(r["name"], []).append(float(r["test_accuracy"]))
  stds = [statistics.stdev(v) for v in by_name.values() if len(v) >= 2]
  truth = truth_by_blocks(ok)
  workers = max([int(r.get("workers", 1)) for r in recs] or [1])
  hours = sum(float(r.get("wall_seconds") or 0) for r in recs) / workers / 3600
  proxies = summarize_proxies(prox, truth)
  default = choose_default(proxies)
  ref = lambda n: _mean_std(by_name.get(n, []))
  summary = {
      "n_architectures": len(by_name), "n_records": len(recs), "n_failed": len(recs) - len(ok),
      "a1_test_accuracy": ref("mnasnet-a1")["mean"], "b0_test_accuracy": ref("efficientnet-b0")["mean"],
      "references": {n: ref(n) for n in REFERENCES},
      "median_seed_std": statistics.median(stds) if stds else None,
      "n_multi_seed": len(stds), "hours": round(hours, 3),
      "g_task": G_TASK.to_dict(), "proxies": proxies,
      "default_proxy": default,
      "default_proxy_kendall_tau": proxies[default]["vs_g"]["kendall_tau"] if default else None,
      "default_proxy_b0_std": proxies[default]["b0"]["std"] if default else None,
  }
  return summary


def summarize_proxies(prox: Sequence[dict[str, Any]], truth: dict[str, float]) -> dict[str, Any]:
  out = {}
  for name in sorted({r["proxy"] for r in prox}):
    rows = [r for r in prox if r["proxy"] == name]
    seed0 = {r["blocks"]: float(r["accuracy"]) for r in rows if r["seed"] == 0}
    b0 = [float(r["accuracy"]) for r in rows if r["name"] == "efficientnet-b0"]
    a1 = [float(r["accuracy"]) for r in rows if r["name"] == "mnasnet-a1"]
    secs = [float(r["seconds"]) for r in rows]
    out[name] = {"vs_g": rank_agreement(seed0, truth), "b0": _mean_std(b0), "a1": _mean_std(a1),
                 "median_seconds": statistics.median(secs) if secs else None,
                 "n_records": len(rows), "n_failed": sum(r["status"] != "ok" for r in rows)}
  return out


def choose_default(proxies: dict[str, Any]) -> str | None:
  """The highest τ against G among the candidates costing at most SUMMARY_COST_LIMIT_S per child."""
  ok = [(p["vs_g"]["kendall_tau"], n) for n, p in proxies.items()
        if p["vs_g"]["kendall_tau"] is not None and p["median_seconds"] is not None
        and p["median_seconds"] <= SUMMARY_COST_LIMIT_S]
  return max(ok)[1] if ok else None


# ----------------------------------------------------------------------------- CLI
FLAGS = flags.FLAGS
flags.DEFINE_string("out", "results/ground_truth", "Output directory (resumed if it exists).")
flags.DEFINE_list("stages", ["ground_truth", "proxies"], "What to run: ground_truth, proxies.")
flags.DEFINE_integer("workers", None, "Worker processes (default: one single-threaded worker "
                     "per core, as --backend=auto packs them).", lower_bound=1)
flags.DEFINE_float("max_hours", None, "Stop taking new jobs after this many hours.")
flags.DEFINE_bool("summary", False, "Only summarize the records (no training).")


def main(argv):
  del argv
  out = FLAGS.out
  if FLAGS.summary:
    s = summarize(out)
    fileio.atomic_write_text(os.path.join(out, "summary.json"), _json(s) + "\n")
    print(_json({k: s[k] for k in HEADLINE}, indent=None))
    return
  bad = [s for s in FLAGS.stages if s not in ("ground_truth", "proxies")]
  if bad:
    print(f"error: --stages={','.join(FLAGS.stages)} is invalid; allowed: ground_truth, proxies",
          file=sys.stderr)
    sys.exit(2)
  os.makedirs(out, exist_ok=True)
  gi = os.path.join(out, ".gitignore")
  if not os.path.isfile(gi):
    fileio.atomic_write_text(gi, GITIGNORE)
  workers = FLAGS.workers or backends_lib.available_cores()
  try:
    with interrupt.handlers():
      run_jobs(out, job_queue(architecture_set(), FLAGS.stages), workers, FLAGS.max_hours)
  except interrupt.Stopped as e:
    print("stopped; run the same command to continue", file=sys.stderr)
    sys.exit(e.exit_code)


HEADLINE = ("n_architectures", "a1_test_accuracy", "b0_test_accuracy", "median_seed_std", "hours",
            "default_proxy", "default_proxy_kendall_tau", "default_proxy_b0_std")


def _json(obj: Any, indent: int | None = 2) -> str:
  import json
  return json.dumps(obj, indent=indent, sort_keys=False)


if __name__ == "__main__":
  app.run(main)
