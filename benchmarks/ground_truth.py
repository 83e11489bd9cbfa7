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
                      (`mnas_search.training.full_train`, checkpointed after every epoch, so a SIGKILL loses at
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
last line of output is a JSON object with the headline numbers. It also writes curves.json and
curves.md from the recorded runs' metrics.json: how well G's own training ranks the networks after
each epoch, the best a proxy that trains as G does for that long could do.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

import numpy as np
from absl import app, flags, logging

import search_space
from mnas_search.analysis import ground_truth as gt
from mnas_search.cli import quiet
from mnas_search.execution import backends as backends_lib
from mnas_search.runs.rundir import DirectoryLockedError, RunDir
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio, interrupt, stats

REFERENCES = ("efficientnet-b0", "mnasnet-a1", "mobilenet-v2")
SEARCH_QUALITY_TRAIN = os.path.join("results", "search_quality", "train")

# G: the whole training split but 2,000 monitored validation images, at 32 px in the small-image
# geometry (stem stride 1) and width 0.5, SGD with momentum, warm-up then cosine, gradients clipped
# to norm 1, label smoothing, weight decay and a weight EMA (train.py's default), no augmentation
# (six epochs underfit, and crop+flip lowered validation accuracy: see the README), scored on the
# 10,000 test images. Width 0.5 and 6 epochs fit the set in the 8-hour budget.
G_TASK = ProxyTask(train_images=None, val_images=2000, epochs=6, batch_size=128,
                   learning_rate=0.1, warmup_fraction=0.05, weight_decay=1e-4,
                   label_smoothing=0.1, bn_momentum=0.99, proxy_width=0.5, stem_stride=1,
                   clip_norm=1.0)
G_AUGMENT: tuple[str, ...] = ()
EXTRA_SEEDS = 2  # seeds 0..EXTRA_SEEDS-1 for the names below, seed 0 for the rest

RANDOM_COUNT = 16
RANDOM_SEED = 20261202
RANDOM_POOL = 20000
FLOPS_RANGE = (50e6, 600e6)

# Candidate proxies scored on every architecture of G (seed 0) and on B0 and A1 over NOISE_SEEDS.
# The names say what differs: images (k) x epochs, width, stem stride, recipe.
NOISE_SEEDS = 5
# Every field that a candidate's training depends on is spelled out, so that a later change of
# ProxyTask's defaults does not change what these names mean (the records were made with them).
_BASE = ProxyTask(dataset="fashion_mnist", resolution=32, train_images=8000, val_images=2000,
                  epochs=2, steps=None, batch_size=64, optimizer="sgd", learning_rate=0.1,
                  momentum=0.9, lr_schedule="cosine", warmup_fraction=0.1, weight_decay=0.0,
                  label_smoothing=0.0, bn_momentum=0.9, proxy_width=0.25, grayscale_to_rgb=False,
                  stem_stride=2, clip_norm=None)
CANDIDATES = {
    # The search-quality proxy's recipe (no clipping), as its experiment ran it.
    "8k-e2-w0.25-s2-noclip": _BASE,
    "8k-e2-w0.25-s2": _BASE.replace(clip_norm=1.0),
    "8k-e2-w0.25-s1": _BASE.replace(stem_stride=1, clip_norm=1.0),
    "16k-e1-w0.25-s1": _BASE.replace(train_images=16000, epochs=1, stem_stride=1, clip_norm=1.0),
    "4k-e4-w0.25-s1": _BASE.replace(train_images=4000, epochs=4, stem_stride=1, clip_norm=1.0),
    "8k-e2-w0.5-s2": _BASE.replace(proxy_width=0.5, clip_norm=1.0),
    "16k-e2-w0.25-s1": _BASE.replace(train_images=16000, stem_stride=1, clip_norm=1.0),
}
# The candidate that the default ProxyTask is (tests tie it to the committed summary's choice).
DEFAULT_PROXY = next(name for name, task in CANDIDATES.items() if task == ProxyTask())
SUMMARY_COST_LIMIT_S = 60.0  # the default proxy is the best tau among those this cheap per child
MIN_NETWORKS_FOR_DEFAULT = 30  # ... and scored on at least this many networks of G
# A fresh worker process after this many jobs: TF's start-up is paid rarely, memory stays bounded.
MAX_TASKS_PER_WORKER = 8


def names_with_extra_seeds(names: Sequence[str]) -> tuple[str, ...]:
  """B0, A1, MobileNetV2 and every sixth other architecture: 8 with 2 seeds."""
  others = [n for n in names if n not in REFERENCES]
  return tuple(n for n in REFERENCES if n in names) + tuple(others[::6])


# ----------------------------------------------------------------------------- the set
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


@functools.lru_cache(maxsize=None)
def random_architectures(count: int = RANDOM_COUNT, seed: int = RANDOM_SEED,
                         pool: int = RANDOM_POOL) -> tuple[tuple[str, dict], ...]:
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
  return tuple(chosen)


def architecture_set() -> list[tuple[str, dict]]:
  """(name, arch dict) of every architecture of G: references, old finalists, random draws."""
  entries = [(n, search_space.named(n).to_dict()) for n in REFERENCES]
  entries += search_quality_finalists() + list(random_architectures())
  seen, out = set(), []
  for name, d in entries:
    # One network, one name: two choices that G's width rounds to the same channels are one network.
    ident = search_space.scale(search_space.Architecture.from_dict(d),
                               width=G_TASK.proxy_width).network_identity()
    if ident not in seen:
      seen.add(ident)
      out.append((name, d))
  return out


# ----------------------------------------------------------------------------- jobs
@dataclasses.dataclass(frozen=True)
class Plan:
  """What to run: G's recipe, the candidate proxies and the seeds (`--quick` shrinks them)."""

  g_task: ProxyTask = G_TASK
  g_augment: tuple[str, ...] = G_AUGMENT
  candidates: tuple[tuple[str, ProxyTask], ...] = tuple(CANDIDATES.items())
  noise_seeds: int = NOISE_SEEDS
  extra_seeds: int = EXTRA_SEEDS


QUICK_DATASET = "synthetic:size=16,channels=1,classes=4,train=300,test=100"
QUICK_PLAN = Plan(
    g_task=ProxyTask(dataset=QUICK_DATASET, resolution=16, train_images=None, val_images=64,
                     epochs=1, batch_size=64, proxy_width=0.25, stem_stride=1, clip_norm=1.0),
    candidates=(("quick", ProxyTask(dataset=QUICK_DATASET, resolution=16, train_images=128,
                                    val_images=64, epochs=1, batch_size=64, proxy_width=0.25)),),
    noise_seeds=2, extra_seeds=2)


def quick_architectures() -> list[tuple[str, dict]]:
  """Two small networks of the micro space (for `--quick`)."""
  space = search_space.get_space("micro")
  rng = np.random.default_rng(0)
  return [(f"micro-{i}", space.decode(space.sample_indices(rng), name=f"micro-{i}").to_dict())
          for i in range(2)]


@dataclasses.dataclass(frozen=True)
class Job:
  """One unit of work: a G training (`proxy` None) or one proxy child, with its task."""

  name: str
  arch: dict
  seed: int
  proxy: str | None = None
  task: dict | None = None
  augment: tuple[str, ...] | None = None  # G trainings only; None: train.py's default

  @property
  def key(self) -> tuple[str | None, str, int]:
    return (self.proxy, self.name, self.seed)


def job_queue(archs: Sequence[tuple[str, dict]], stages: Sequence[str],
              plan: Plan = Plan()) -> list[Job]:
  """Every job, in priority order: what a partial run needs most comes first."""
  by_name = dict(archs)
  names = [n for n, _ in archs]
  refs = [n for n in REFERENCES[:2] if n in by_name]  # B0 and A1
  g = "ground_truth" in stages
  p = "proxies" in stages
  gt_job = lambda n, s: Job(n, by_name[n], s, task=plan.g_task.replace(seed=s).to_dict(),
                            augment=plan.g_augment)
  proxy_job = lambda n, s, c, t: Job(n, by_name[n], s, c, t.to_dict())
  jobs: list[Job] = []
  if g:  # the references with 2 seeds first: does G meet its criteria?
    jobs += [gt_job(n, s) for s in range(plan.extra_seeds) for n in refs]
  if p:  # the recipe table: B0 and A1 over the noise seeds on every candidate
    jobs += [proxy_job(n, s, c, t) for c, t in plan.candidates for n in refs
             for s in range(plan.noise_seeds)]
  if g:
    jobs += [gt_job(n, 0) for n in names]
    jobs += [gt_job(n, s) for s in range(1, plan.extra_seeds) for n in names_with_extra_seeds(names)]
  if p:
    jobs += [proxy_job(n, 0, c, t) for c, t in plan.candidates for n in names]
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


def _run_job(args: tuple[Job, str, int, str | None]) -> dict[str, Any]:
  """Runs one job in a worker process and returns its record (top level, for the pool).

  An error that is not the child's (bad settings, a locked or conflicting run folder) stops the
  whole run, as a RuntimeError: the library's own exceptions do not all survive pickling back to
  the parent, and one that does not hangs `Pool.imap_unordered`.
  """
  job = args[0]
  try:
    return _run_job_unchecked(*args)
  except Exception as e:
    raise RuntimeError(f"job {job.key}: {type(e).__name__}: {e}") from None


def _run_job_unchecked(job: Job, out: str, workers: int, commit: str | None) -> dict[str, Any]:
  arch = search_space.Architecture.from_dict(job.arch)
  flops, params = deploy_costs(arch)
  base = {"name": job.name, "blocks": gt.blocks_key(arch), "seed": job.seed, "flops": flops,
          "params": params, "workers": workers, "commit": commit}
  task = ProxyTask.from_dict(job.task).replace(seed=job.seed)  # the job's seed, whatever the task held
  t0 = time.monotonic()
  if job.proxy is None:
    from mnas_search.training import full_train as train_lib
    r = train_lib.train(arch, run_dir(out, job.name, job.seed),
                        train_lib.TrainConfig(task, augment=job.augment), verbose=0)
    m = r.metrics or {}
    return {**base, "status": r.status, "test_accuracy": m.get("test_accuracy"),
            "val_accuracy": m.get("val_accuracy"), "epochs": task.epochs,
            "augment": list(job.augment or ()),
            "wall_seconds": m.get("train_seconds"), "job_seconds": round(time.monotonic() - t0, 3),
            "error": r.error, "arch": job.arch}
  from mnas_search.training import evaluation
  res = evaluation.evaluate(arch, task, seed=job.seed)
  return {"proxy": job.proxy, **base, "accuracy": res.accuracy, "status": res.status,
          "seconds": round(time.monotonic() - t0, 3), "error": res.error}


OLD_PROXY = "search-quality-proxy"
SEARCH_QUALITY = os.path.join("results", "search_quality")


def old_proxy_records(sq_dir: str = SEARCH_QUALITY) -> list[dict[str, Any]]:
  """proxies.jsonl lines of the proxy that results/search_quality searched with, from its records.

  Its finalists' proxy accuracy (the best run's trial that found each; seed 0 here) and B0's and
  A1's scores on it over their noise seeds, so that the old proxy is scored against G like any
  candidate. The finalists were chosen by this proxy (the top 2 of each run), so their range is
  restricted: its tau among them understates how it ranks the whole space.
  """
  models = fileio.read_json(os.path.join(sq_dir, "results.json"))["models"]
  proxy = fileio.read_json(os.path.join(sq_dir, "results.json"))["proxy"]["name"]
  rows = []
  for m in models:
    if m["reference"]:
      continue
    found = m["found_by"][0]
    trials = fileio.read_jsonl(os.path.join(sq_dir, "searches", f"{found['arm']}-s{found['seed']}",
                                            "trials.jsonl"))
    trial = next(t for t in trials if t["trial"] == found["trial"])
    arch = search_space.Architecture.from_dict(trial["arch"])
    flops, params = deploy_costs(arch)
    rows.append({"proxy": OLD_PROXY, "name": m["key"], "blocks": gt.blocks_key(arch), "seed": 0,
                 "flops": flops, "params": params, "accuracy": trial["accuracy"],
                 "status": trial["status"], "seconds": trial["train_seconds"], "error": None,
                 "source": f"{sq_dir}/searches/{found['arm']}-s{found['seed']} trial {found['trial']}"})
  for r in fileio.read_jsonl(os.path.join(sq_dir, "noise.jsonl")):
    if r["proxy"] != proxy:
      continue
    arch = search_space.named(r["arch"])
    flops, params = deploy_costs(arch)
    rows.append({"proxy": OLD_PROXY, "name": r["arch"], "blocks": gt.blocks_key(arch),
                 "seed": r["seed"], "flops": flops, "params": params, "accuracy": r["accuracy"],
                 "status": r["status"], "seconds": r["train_seconds"], "error": r["error"],
                 "source": f"{sq_dir}/noise.jsonl"})
  return rows


def import_old_proxy(out: str) -> int:
  """Appends `old_proxy_records` to proxies.jsonl unless it holds them; returns how many."""
  done = done_keys(out)
  new = [r for r in old_proxy_records() if (r["proxy"], r["name"], r["seed"]) not in done]
  for r in new:
    fileio.append_jsonl(records_path(out, True), r)
  return len(new)


def records_path(out: str, proxy: bool) -> str:
  return os.path.join(out, gt.PROXIES if proxy else gt.RECORDS)


def done_keys(out: str) -> set[tuple[str | None, str, int]]:
  keys = set()
  for proxy in (False, True):
    path = records_path(out, proxy)
    if os.path.isfile(path):
      for r in fileio.read_jsonl(path):
        keys.add((r.get("proxy"), r["name"], r["seed"]))
  return keys


def pending(out: str, jobs: Sequence[Job]) -> list[Job]:
  """The jobs whose record is not in OUT yet, in order."""
  done = done_keys(out)
  return [j for j in jobs if j.key not in done]


def run_jobs(out: str, jobs: Sequence[Job], workers: int, max_hours: float | None) -> int:
  """Runs the jobs not yet recorded in `workers` single-purpose processes; returns how many ran."""
  todo = pending(out, jobs)
  logging.info("%d of %d jobs to run", len(todo), len(jobs))
  if not todo:
    return 0
  deadline = None if max_hours is None else time.monotonic() + max_hours * 3600
  threads = backends_lib.default_threads_per_worker(workers)
  commit = _commit()  # once, not per job
  ctx = multiprocessing.get_context("spawn")
  n = 0
  # A pool, not concurrent.futures: leaving the block on a stop terminates the trainings at once
  # (their checkpoints are written atomically; a rerun continues them).
  with ctx.Pool(workers, initializer=backends_lib.init_worker, initargs=(threads,),
                maxtasksperchild=MAX_TASKS_PER_WORKER) as pool:
    for record in pool.imap_unordered(_run_job, [(j, out, workers, commit) for j in todo]):
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


def summarize(out: str) -> dict[str, Any]:
  """The headline numbers, from records.jsonl and proxies.jsonl only."""
  recs, prox = gt.read_records(out, gt.RECORDS), gt.read_records(out, gt.PROXIES)
  ok = [r for r in recs if r.get("status") == "ok"]
  by_name: dict[str, list[float]] = {}
  for r in ok:
    by_name.setdefault(r["name"], []).append(float(r["test_accuracy"]))
  stds = [statistics.stdev(v) for v in by_name.values() if len(v) >= 2]
  truth = gt.truth(ok)
  # Each training's wall time shared with the other workers: the machine's hours for the set. The
  # training loop's time (`wall_seconds`, summed over sessions; the job's set-up and final
  # evaluation are in `job_seconds` for the records that have it).
  hours = sum(float(r.get("job_seconds") or r.get("wall_seconds") or 0) / int(r.get("workers", 1))
              for r in recs) / 3600
  proxies = summarize_proxies(prox, truth)
  default = choose_default(proxies)
  ref = lambda n: _mean_std(by_name.get(n, []))
  summary = {
      "n_architectures": len(by_name), "n_records": len(recs), "n_failed": len(recs) - len(ok),
      "a1_test_accuracy": ref("mnasnet-a1")["mean"], "b0_test_accuracy": ref("efficientnet-b0")["mean"],
      "references": {n: ref(n) for n in REFERENCES},
      "median_seed_std": statistics.median(stds) if stds else None,
      "n_multi_seed": len(stds), "hours": round(hours, 3),
      # How far G agrees with itself re-run on other seeds: the ceiling of any proxy's τ against it.
      "g_retest_tau": (round(stats.retest_tau(list(truth.values()), statistics.median(stds)), 3)
                       if stds and len(truth) >= 3 else None),
      "g_task": G_TASK.to_dict(), "proxies": proxies, "baselines": baselines(ok, truth),
      "default_proxy": default,
      "default_vs_best": default_vs_best(prox, truth, proxies, default),
      "between_candidates": between_candidates(prox),
      "default_proxy_kendall_tau": proxies[default]["vs_g"]["kendall_tau"] if default else None,
      "default_proxy_b0_std": proxies[default]["b0"]["std"] if default else None,
      "finalists_vs_b0": finalists_vs_b0(by_name),
      "architectures": architecture_rows(ok),
  }
  return summary


def baselines(ok: Sequence[dict[str, Any]], truth: dict[str, float]) -> dict[str, Any]:
  """τ and ρ against G of what costs no training: a network's deploy FLOPs and its parameters."""
  return {key: gt.score({r["blocks"]: float(r[key]) for r in ok}, truth) for key in ("flops", "params")}


def _tau_difference(a: dict[str, float], b: dict[str, float],
                    truth: dict[str, float]) -> dict[str, Any] | None:
  """τ(a, G) − τ(b, G) over the networks all three hold, with a paired 90% bootstrap interval."""
  keys = sorted(set(a) & set(b) & set(truth))
  if len(keys) < 4:
    return None
  xa, xb, t = (np.array([d[k] for k in keys]) for d in (a, b, truth))
  diff = lambda i: stats.kendall_tau(xa[i], t[i]) - stats.kendall_tau(xb[i], t[i])
  idx = np.arange(len(keys))
  interval = stats.bootstrap_interval(idx, idx, lambda i, _: diff(i.astype(int)))
  return {"n": len(keys), "difference": round(diff(idx), 4),
          "interval": None if interval is None else [round(v, 4) for v in interval]}


def default_vs_best(prox: Sequence[dict[str, Any]], truth: dict[str, float],
                    proxies: dict[str, Any], default: str | None) -> dict[str, Any] | None:
  """The default against the candidate of highest τ at any cost, when they differ: is it worse?"""
  ranked = [(p["vs_g"]["kendall_tau"], n) for n, p in proxies.items()
            if n in CANDIDATES and p["vs_g"]["kendall_tau"] is not None]
  if default is None or not ranked or max(ranked)[1] == default:
    return None
  best = max(ranked)[1]
  out = _tau_difference(gt.proxy_scores(prox, default), gt.proxy_scores(prox, best), truth)
  return None if out is None else {"best": best, **out}


def between_candidates(prox: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """τ between every two candidates over the networks both scored (seed 0), and each one's τ with
  deploy FLOPs: do the proxies agree with each other, and do they favour small networks?"""
  scores = {n: gt.proxy_scores(prox, n) for n in CANDIDATES}
  flops = {r["blocks"]: float(r["flops"]) for r in prox if r.get("flops") is not None}
  pairs, with_flops = [], {}
  for i, a in enumerate(CANDIDATES):
    keys = sorted(set(scores[a]) & set(flops))
    if len(keys) >= 3:
      with_flops[a] = round(stats.kendall_tau([scores[a][k] for k in keys], [flops[k] for k in keys]), 4)
    for b in list(CANDIDATES)[i + 1:]:
      keys = sorted(set(scores[a]) & set(scores[b]))
      if len(keys) >= 3:
        pairs.append(stats.kendall_tau([scores[a][k] for k in keys], [scores[b][k] for k in keys]))
  return {"n_pairs": len(pairs), "tau_min": round(min(pairs), 4) if pairs else None,
          "tau_max": round(max(pairs), 4) if pairs else None, "tau_with_flops": with_flops}


def finalists_vs_b0(by_name: dict[str, list[float]]) -> dict[str, Any] | None:
  """Do the old search's finalists (names arch-*) beat B0 in G? Means over seeds per network."""
  finalists = [statistics.fmean(v) for n, v in by_name.items() if n.startswith("arch-")]
  b0 = by_name.get("efficientnet-b0", [])
  if not finalists or not b0:
    return None
  b0_mean = statistics.fmean(b0)
  out = {"n_finalists": len(finalists), "b0_seeds": len(b0), "b0_mean": b0_mean,
         "finalists_mean": statistics.fmean(finalists), "best_finalist": max(finalists),
         "n_above_b0_mean": sum(f > b0_mean for f in finalists),
         "mean_difference": statistics.fmean(finalists) - b0_mean}
  if len(b0) >= 2 and len(finalists) >= 2:
    # B0's seeds against the finalists: is the average finalist better than B0 (one-sided)?
    out["p_finalists_greater"] = stats.permutation_test(finalists, b0, alternative="greater")
    out["min_p"] = stats.min_permutation_p(len(finalists), len(b0), alternative="greater")
    out["mean_difference_interval"] = list(stats.bootstrap_mean_difference_interval(finalists, b0))
  return out


def architecture_rows(ok: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per network of G: name, deploy MFLOPs and params, test accuracy over its seeds."""
  rows: dict[str, dict[str, Any]] = {}
  for r in ok:
    row = rows.setdefault(r["name"], {"name": r["name"], "mflops": round(r["flops"] / 1e6, 1),
                                      "params": r["params"], "test": []})
    row["test"].append(float(r["test_accuracy"]))
  out = []
  for row in rows.values():
    acc = _mean_std(row.pop("test"))
    out.append({**row, "n_seeds": acc["n"], "test_mean": acc["mean"], "test_std": acc["std"]})
  return sorted(out, key=lambda r: -r["test_mean"])


def summarize_proxies(prox: Sequence[dict[str, Any]], truth: dict[str, float]) -> dict[str, Any]:
  out = {}
  for name in sorted({r["proxy"] for r in prox}):
    rows = [r for r in prox if r["proxy"] == name]
    seed0 = gt.proxy_scores(rows, name)
    b0 = [float(r["accuracy"]) for r in rows if r["name"] == "efficientnet-b0"]
    a1 = [float(r["accuracy"]) for r in rows if r["name"] == "mnasnet-a1"]
    secs = [float(r["seconds"]) for r in rows]
    out[name] = {"vs_g": gt.score(seed0, truth), "b0": _mean_std(b0), "a1": _mean_std(a1),
                 "median_seconds": statistics.median(secs) if secs else None,
                 "n_records": len(rows), "n_failed": sum(r["status"] != "ok" for r in rows)}
  return out


def choose_default(proxies: dict[str, Any]) -> str | None:
  """The highest τ against G among the candidates costing at most SUMMARY_COST_LIMIT_S per child."""
  ok = [(p["vs_g"]["kendall_tau"], n) for n, p in proxies.items()
        if n in CANDIDATES and p["vs_g"]["kendall_tau"] is not None
        and p["vs_g"]["n"] >= MIN_NETWORKS_FOR_DEFAULT and p["median_seconds"] is not None
        and p["median_seconds"] <= SUMMARY_COST_LIMIT_S]
  return max(ok)[1] if ok else None


def _pct(stats_: dict[str, Any]) -> str:
  if not stats_ or stats_.get("mean") is None:
    return "n/a"
  std = "" if stats_.get("std") is None else f" ± {100 * stats_['std']:.2f}"
  return f"{100 * stats_['mean']:.2f}{std} (n={stats_['n']})"


def _rank(v: Any, interval: Any) -> str:
  if v is None:
    return "n/a"
  return f"{v:+.3f}" + ("" if interval is None else f" [{interval[0]:+.2f}, {interval[1]:+.2f}]")


def summary_markdown(s: dict[str, Any]) -> str:
  """summary.md: G's criteria, the proxies against G, the networks, the old finalists vs B0."""
  def fmt(v, scale=100.0, digits=2):
    return "n/a" if v is None else f"{scale * v:.{digits}f}"
  lines = ["# The ground truth G", "",
           f"{s['n_records']} trainings ({s['n_failed']} failed) of {s['n_architectures']} "
           f"networks, {s['n_multi_seed']} of them with 2 or more seeds; "
           f"{s['hours']:.2f} machine hours (sum of wall times / workers).", "",
           "| criterion | target | measured |", "|---|---|---|",
           f"| A1 test accuracy % | >= 91 | {fmt(s['a1_test_accuracy'])} |",
           f"| median seed std (points) | <= 0.5 | {fmt(s['median_seed_std'])} |",
           f"| hours for the set | <= 8 | {s['hours']:.2f} |",
           f"| networks | >= 32 | {s['n_architectures']} |",
           f"| networks with >= 2 seeds | >= 8 | {s['n_multi_seed']} |", "",
           "## Candidate proxies against G", "",
           "τ and ρ: seed-0 proxy accuracy against G's mean test accuracy per network, with 90% "
           "bootstrap intervals; a failed child counts with its recorded accuracy (0). Seconds: "
           "median wall time of one child in one single-threaded worker, two workers on 2 cores.", "",
           "| proxy | n | Kendall τ [90%] | Spearman ρ [90%] | B0 % (seeds) | A1 % (seeds) | s/child | failed |",
           "|---|---|---|---|---|---|---|---|"]
  for name, p in s["proxies"].items():
    v = p["vs_g"]
    few = v["n"] < 3  # a ranking of 2 networks is +-1 by construction
    lines.append(f"| {name} | {v['n']} | "
                 f"{'n/a' if few else _rank(v['kendall_tau'], v['kendall_tau_interval'])} | "
                 f"{'n/a' if few else _rank(v['spearman_rho'], v['spearman_rho_interval'])} | "
                 f"{_pct(p['b0'])} | "
                 f"{_pct(p['a1'])} | {fmt(p['median_seconds'], 1.0, 1)} | {p['n_failed']} |")
  for key, label in (("flops", "deploy FLOPs, no training"), ("params", "parameters, no training")):
    v = s.get("baselines", {}).get(key)
    if v is not None and v["n"] >= 3:
      lines.append(f"| *{label}* | {v['n']} | {_rank(v['kendall_tau'], v['kendall_tau_interval'])} | "
                   f"{_rank(v['spearman_rho'], v['spearman_rho_interval'])} | | | 0 | |")
  if s.get("g_retest_tau") is not None:
    lines += ["", f"G against itself re-run on other seeds: τ ≈ {s['g_retest_tau']:.2f} (simulated: "
              f"each network's mean plus Gaussian noise of G's median seed std, "
              f"{fmt(s['median_seed_std'])} points), the most a proxy can be expected to reach."]
  lines += ["", f"Default proxy (highest τ at <= {SUMMARY_COST_LIMIT_S:.0f} s per child, over at "
            f"least {MIN_NETWORKS_FOR_DEFAULT} networks): "
            f"{s['default_proxy'] or 'not decided yet'}."]
  d, bc = s.get("default_vs_best"), s.get("between_candidates") or {}
  if d:
    lines += ["", f"Its τ minus that of {d['best']} (the highest at any cost), paired over "
              f"{d['n']} networks: {_rank(d['difference'], d['interval'])}."]
  if bc.get("n_pairs"):
    lines += ["", f"τ between two candidates, over the networks both scored: {bc['tau_min']:+.2f} to "
              f"{bc['tau_max']:+.2f} ({bc['n_pairs']} pairs); each candidate's τ with deploy FLOPs: "
              + ", ".join(f"{n} {v:+.2f}" for n, v in bc["tau_with_flops"].items()) + "."]
  lines += ["", "## Networks", "",
            "| network | MFLOPs at 224 | params | test % | std | seeds |", "|---|---|---|---|---|---|"]
  for r in s["architectures"]:
    lines.append(f"| {r['name']} | {r['mflops']} | {r['params']:,} | {fmt(r['test_mean'])} | "
                 f"{fmt(r['test_std'])} | {r['n_seeds']} |")
  f = s.get("finalists_vs_b0")
  if f:
    lines += ["", "## The old search's finalists against B0 in G", "",
              f"{f['n_finalists']} finalists, mean {fmt(f['finalists_mean'])} %, best "
              f"{fmt(f['best_finalist'])} %; B0 {fmt(f['b0_mean'])} % over {f['b0_seeds']} seeds; "
              f"{f['n_above_b0_mean']} finalists above B0's mean."]
    if "p_finalists_greater" in f:
      lo, hi = f["mean_difference_interval"]
      lines.append(f"Mean finalist − B0: {fmt(f['mean_difference'])} points (90% bootstrap "
                   f"[{100 * lo:.2f}, {100 * hi:.2f}]); one-sided permutation p = "
                   f"{f['p_finalists_greater']:.3g} (smallest possible {f['min_p']:.3g}).")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI
FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined on demand, so that tests can import this module)."""
  flags.DEFINE_string("out", "results/ground_truth", "Output directory (resumed if it exists).")
  flags.DEFINE_list("stages", ["ground_truth", "proxies"], "What to run: ground_truth, proxies.")
  flags.DEFINE_integer("workers", None, "Worker processes (default: one single-threaded worker "
                       "per core, as --backend=auto packs them).", lower_bound=1)
  flags.DEFINE_float("max_hours", None, "Stop taking new jobs after this many hours.")
  flags.DEFINE_bool("summary", False, "Only summarize the records (no training).")
  flags.DEFINE_bool("quick", False, "Tiny tasks on synthetic data and two micro networks (tests).")


def main(argv):
  del argv
  out = FLAGS.out
  if FLAGS.summary:
    s = summarize(out)
    fileio.atomic_write_text(os.path.join(out, "summary.json"), _json(s) + "\n")
    fileio.atomic_write_text(os.path.join(out, "summary.md"), summary_markdown(s))
    c = curve_agreement(out)
    fileio.atomic_write_text(os.path.join(out, "curves.json"), _json(c) + "\n")
    fileio.atomic_write_text(os.path.join(out, "curves.md"), curves_markdown(c))
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
  lock = RunDir(out, "experiment")
  try:
    lock.acquire()  # one writer per folder: records are appended by this process alone
  except DirectoryLockedError as e:
    print(f"error: --out={out}: {e}", file=sys.stderr)
    sys.exit(2)
  if not FLAGS.quick:
    import_old_proxy(out)
  try:
    with interrupt.handlers():
      if FLAGS.quick:
        jobs = job_queue(quick_architectures(), FLAGS.stages, QUICK_PLAN)
      else:
        jobs = job_queue(architecture_set(), FLAGS.stages)
      run_jobs(out, jobs, workers, FLAGS.max_hours)
  except interrupt.Stopped as e:
    print("stopped; run the same command to continue", file=sys.stderr)
    sys.exit(e.exit_code)


# ----------------------------------------------------------------------------- learning curves
CURVE_METRICS = (("accuracy", 1.0, "training accuracy over the epoch"),
                 ("val_accuracy", 1.0, "validation accuracy (2,000 held-out images, EMA weights)"),
                 ("val_loss", -1.0, "validation loss, negated"))


def curve_agreement(out: str) -> dict[str, Any]:
  """How well G's own training ranks the networks part-way: τ per epoch against the final test.

  Reads each recorded run's `metrics.json` history (runs/NAME/seedS): for epoch k and each of
  CURVE_METRICS, the network's value at k (mean over its seeds) against its final test accuracy
  (mean over its seeds), with a bootstrap interval. This is the ranking a proxy that trained as G
  does for k epochs could at best give, at k x 58,000 images of width-0.5 training.
  """
  recs = [r for r in gt.read_records(out, gt.RECORDS) if r.get("status") == "ok"]
  curves: dict[str, list[list[dict]]] = {}
  final: dict[str, list[float]] = {}
  for r in recs:
    path = os.path.join(run_dir(out, r["name"], int(r["seed"])), "metrics.json")
    if os.path.isfile(path):
      curves.setdefault(r["name"], []).append(fileio.read_json(path).get("history", []))
      final.setdefault(r["name"], []).append(float(r["test_accuracy"]))
  epochs = min((len(h) for hs in curves.values() for h in hs), default=0)
  names = sorted(curves)
  truth = [statistics.fmean(final[n]) for n in names]
  rows = []
  for k in range(epochs):
    row: dict[str, Any] = {"epoch": k + 1}
    for key, sign, _ in CURVE_METRICS:
      values = [sign * statistics.fmean(float(h[k][key]) for h in curves[n]) for n in names]
      row[key] = stats.rank_agreement(values, truth) if len(names) >= 3 else None
    rows.append(row)
  return {"n_networks": len(names), "epochs": epochs, "rows": rows}


def curves_markdown(c: dict[str, Any]) -> str:
  lines = ["# G's learning curves against G's final test accuracy", "",
           f"{c['n_networks']} networks; Kendall τ [90% bootstrap] of each epoch's value (mean over "
           "a network's seeds) against the final test accuracy.", "",
           "| epoch | " + " | ".join(label for _, _, label in CURVE_METRICS) + " |",
           "|---" * (len(CURVE_METRICS) + 1) + "|"]
  for row in c["rows"]:
    cells = [_rank(v["kendall_tau"], v["kendall_tau_interval"]) if v else "n/a"
             for v in (row[key] for key, _, _ in CURVE_METRICS)]
    lines.append(f"| {row['epoch']} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


HEADLINE = ("n_architectures", "a1_test_accuracy", "b0_test_accuracy", "median_seed_std", "hours",
            "default_proxy", "default_proxy_kendall_tau", "default_proxy_b0_std")


def _json(obj: Any, indent: int | None = 2) -> str:
  import json
  return json.dumps(obj, indent=indent, sort_keys=False)


if __name__ == "__main__":
  quiet.install()  # quiet TF logs; legacy Keras for tf-agents
  define_flags()
  app.run(main)
