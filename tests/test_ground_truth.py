"""Tests of benchmarks/ground_truth.py: the set, the job queue, resume, and the committed summary."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import benchmark_modules
import numpy as np
import pytest

import search_space
from mnas_search.analysis import ground_truth as gt
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "ground_truth.py")
RESULTS = os.path.join(ROOT, "results", "ground_truth")


g = benchmark_modules.load("ground_truth")


def test_the_set_holds_the_references_the_old_finalists_and_stratified_random_networks():
  archs = g.architecture_set()
  names = [n for n, _ in archs]
  assert len(archs) >= 32 and len(set(names)) == len(names)
  keys = [gt.blocks_key(d) for _, d in archs]
  assert len(set(keys)) == len(keys)
  trained = {search_space.scale(search_space.Architecture.from_dict(d), width=g.G_TASK.proxy_width
                                ).network_identity() for _, d in archs}
  assert len(trained) == len(archs)  # one network, one name, also after G's width rounding
  for ref in g.REFERENCES:
    d = dict(archs)[ref]
    assert search_space.Architecture.from_dict(d).identity() == search_space.named(ref).identity()
  finalists = [n for n in names if n.startswith("arch-")]
  retrained = [k for k in os.listdir(g.SEARCH_QUALITY_TRAIN) if k not in g.REFERENCES]
  # Every distinct one: two of the 16 differ only in filters that width 0.5 rounds alike.
  assert set(finalists) <= set(retrained) and len(finalists) == len(retrained) - 1 == 15
  rand = [search_space.Architecture.from_dict(d) for n, d in archs if n.startswith("random-")]
  assert len(rand) >= 13
  flops = [g.deploy_costs(a)[0] for a in rand]
  assert min(flops) >= 50e6 and max(flops) < 600e6
  assert max(flops) / min(flops) > 4  # spread over the range, not bunched
  feats = np.array([g._features(a) for a in rand])
  for column in range(3):  # deep and shallow, SE-heavy and SE-light, skip-heavy and no-skip-heavy
    assert feats[:, column].max() > np.median(feats[:, column]) > feats[:, column].min()
  assert g.random_architectures() == g.random_architectures()  # drawn with a fixed seed


def test_the_queue_runs_the_references_first_and_every_job_once():
  archs = g.architecture_set()
  jobs = g.job_queue(archs, ["ground_truth", "proxies"])
  assert len({j.key for j in jobs}) == len(jobs)
  assert [(j.proxy, j.name, j.seed) for j in jobs[:4]] == [
      (None, "efficientnet-b0", 0), (None, "mnasnet-a1", 0),
      (None, "efficientnet-b0", 1), (None, "mnasnet-a1", 1)]
  g_jobs = [j for j in jobs if j.proxy is None]
  seeds = {}
  for j in g_jobs:
    seeds.setdefault(j.name, set()).add(j.seed)
    assert j.task == g.G_TASK.replace(seed=j.seed).to_dict() and j.augment == g.G_AUGMENT
  assert set(seeds) == {n for n, _ in archs}
  multi = [n for n, s in seeds.items() if len(s) >= 2]
  assert len(multi) >= 8 and {"efficientnet-b0", "mnasnet-a1"} <= set(multi)
  for name, task in g.CANDIDATES.items():
    on = [j for j in jobs if j.proxy == name]
    assert {j.name for j in on if j.seed == 0} == set(seeds)
    for ref in ("efficientnet-b0", "mnasnet-a1"):
      assert sorted(j.seed for j in on if j.name == ref) == list(range(g.NOISE_SEEDS))
    assert all(j.task == task.to_dict() for j in on)
  assert g.job_queue(archs, ["proxies"]) == [j for j in jobs if j.proxy is not None]


def test_pending_skips_what_the_records_hold(tmp_path):
  jobs = g.job_queue(g.quick_architectures(), ["ground_truth", "proxies"], g.QUICK_PLAN)
  assert g.pending(str(tmp_path), jobs) == jobs
  done = [jobs[0], jobs[-1]]
  for j in done:
    row = {"name": j.name, "seed": j.seed, "blocks": gt.blocks_key(j.arch)}
    if j.proxy:
      row["proxy"] = j.proxy
    with open(g.records_path(str(tmp_path), j.proxy is not None), "a") as f:
      f.write(json.dumps(row) + "\n")
  assert g.pending(str(tmp_path), jobs) == jobs[1:-1]


def _record(name, blocks, seed, acc, wall=3600.0, workers=2):
  return {"name": name, "blocks": blocks, "seed": seed, "test_accuracy": acc, "status": "ok",
          "flops": 1, "params": 1, "epochs": 6, "wall_seconds": wall, "workers": workers}


def _proxy(proxy, name, blocks, seed, acc, seconds=30.0, status="ok"):
  return {"proxy": proxy, "name": name, "blocks": blocks, "seed": seed, "accuracy": acc,
          "status": status, "seconds": seconds}


FAST, SLOW = "8k-e2-w0.25-s1", "16k-e2-w0.25-s1"  # two of the candidates


def test_summary_of_hand_made_records(tmp_path, monkeypatch):
  out = str(tmp_path)
  monkeypatch.setattr(g, "MIN_NETWORKS_FOR_DEFAULT", 4)
  recs = [_record("efficientnet-b0", "b0", 0, 0.90), _record("efficientnet-b0", "b0", 1, 0.92),
          _record("mnasnet-a1", "a1", 0, 0.90), _record("mnasnet-a1", "a1", 1, 0.91),
          _record("x", "x", 0, 0.80), _record("y", "y", 0, 0.85)]
  prox = [_proxy(FAST, n, b, 0, a) for n, b, a in
          [("efficientnet-b0", "b0", 0.7), ("mnasnet-a1", "a1", 0.6), ("x", "x", 0.5), ("y", "y", 0.4)]]
  prox += [_proxy(FAST, "efficientnet-b0", "b0", s, a) for s, a in ((1, 0.72), (2, 0.68))]
  prox += [_proxy(SLOW, n, b, 0, a, seconds=90) for n, b, a in
           [("efficientnet-b0", "b0", 0.9), ("mnasnet-a1", "a1", 0.8), ("x", "x", 0.6), ("y", "y", 0.7)]]
  for name, rows in ((gt.RECORDS, recs), (gt.PROXIES, prox)):
    with open(os.path.join(out, name), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  s = g.summarize(out)
  assert s["n_architectures"] == 4 and s["hours"] == 3.0  # 6 h of runs on 2 workers
  assert s["a1_test_accuracy"] == pytest.approx(0.905) and s["b0_test_accuracy"] == pytest.approx(0.91)
  assert s["median_seed_std"] == pytest.approx(statistics.median([statistics.stdev([0.9, 0.92]),
                                                                  statistics.stdev([0.9, 0.91])]))
  # SLOW ranks perfectly (tau 1) but costs 90 s a child: the default is the cheap one.
  assert s["proxies"][SLOW]["vs_g"]["kendall_tau"] == 1.0
  assert s["default_proxy"] == FAST
  assert "| 8k-e2-w0.25-s1 | 4 |" in g.summary_markdown(s)
  monkeypatch.setattr(g, "MIN_NETWORKS_FOR_DEFAULT", 5)  # too few networks to choose by
  assert g.summarize(out)["default_proxy"] is None
  truth = [0.91, 0.905, 0.80, 0.85]
  assert s["default_proxy_kendall_tau"] == round(stats.kendall_tau([0.7, 0.6, 0.5, 0.4], truth), 4)
  assert s["default_proxy_b0_std"] == pytest.approx(statistics.stdev([0.7, 0.72, 0.68]))
  # The default against the best at any cost (SLOW, tau 1), paired over the 4 networks.
  assert s["default_vs_best"]["best"] == SLOW and s["default_vs_best"]["n"] == 4
  assert s["default_vs_best"]["difference"] == round(s["default_proxy_kendall_tau"] - 1.0, 4)
  # The two candidates between themselves: FAST 0.7, 0.6, 0.5, 0.4 against SLOW 0.9, 0.8, 0.6, 0.7.
  assert s["between_candidates"]["n_pairs"] == 1
  assert s["between_candidates"]["tau_min"] == round(stats.kendall_tau([0.7, 0.6, 0.5, 0.4],
                                                                       [0.9, 0.8, 0.6, 0.7]), 4)
  # The no-training baselines: every hand-made record has 1 FLOP, so FLOPs rank nothing.
  assert s["baselines"]["flops"]["n"] == 4 and s["baselines"]["flops"]["kendall_tau"] is None
  # G's retest ceiling: its median seed noise (~0.009) against a spread of 0.11 leaves most pairs.
  assert s["g_retest_tau"] == round(stats.retest_tau(truth, s["median_seed_std"]), 3)
  assert 0.5 < s["g_retest_tau"] < 1.0


def test_the_old_search_proxy_is_imported_once_from_the_search_quality_records(tmp_path):
  rows = g.old_proxy_records()
  names = {n for n, _ in g.architecture_set()}
  assert len(rows) == 16 + 10  # every finalist, B0 and A1 x 5
  assert len({r["name"] for r in rows} - names) == 1  # the finalist G holds under its twin's name
  sq = json.load(open(os.path.join(ROOT, "results", "search_quality", "results.json")))
  b0 = sorted(r["accuracy"] for r in rows if r["name"] == "efficientnet-b0")
  assert statistics.fmean(b0) == pytest.approx(sq["proxy"]["b0_accuracy"]["mean"])
  by_key = {m["key"]: m for m in sq["models"]}
  for r in rows:
    if r["name"].startswith("arch-"):
      assert r["accuracy"] == by_key[r["name"]]["proxy_accuracy"]
  assert g.import_old_proxy(str(tmp_path)) == len(rows)
  assert g.import_old_proxy(str(tmp_path)) == 0  # nothing twice
  # It is scored like a candidate but never becomes the default: it is not one of them.
  assert g.choose_default({g.OLD_PROXY: {"vs_g": {"kendall_tau": 1.0}, "median_seconds": 1.0}}) is None


def _assert_committed(stem: str, obj: dict, markdown: str) -> None:
  """results/ground_truth/STEM.json and STEM.md hold exactly what was recomputed."""
  with open(os.path.join(RESULTS, f"{stem}.json")) as f:
    assert json.load(f) == json.loads(json.dumps(obj))
  with open(os.path.join(RESULTS, f"{stem}.md")) as f:
    assert f.read() == markdown


def test_the_committed_summary_is_recomputed_from_the_committed_records(tmp_path):
  assert os.path.isfile(os.path.join(RESULTS, gt.RECORDS)), "results/ground_truth has no records"
  out = str(tmp_path / "g")
  os.makedirs(out)
  for name in (gt.RECORDS, gt.PROXIES):
    if os.path.isfile(os.path.join(RESULTS, name)):
      shutil.copy(os.path.join(RESULTS, name), out)
  s = g.summarize(out)
  _assert_committed("summary", s, g.summary_markdown(s))
  # The headline numbers, independently of summarize.
  recs = [json.loads(line) for line in open(os.path.join(RESULTS, gt.RECORDS))]
  ok = [r for r in recs if r["status"] == "ok"]
  by_name = {}
  for r in ok:
    by_name.setdefault(r["name"], []).append(r["test_accuracy"])
  assert s["n_architectures"] == len(by_name)
  if "mnasnet-a1" in by_name:
    assert s["a1_test_accuracy"] == pytest.approx(statistics.fmean(by_name["mnasnet-a1"]))
  stds = [statistics.stdev(v) for v in by_name.values() if len(v) > 1]
  assert s["median_seed_std"] == (pytest.approx(statistics.median(stds)) if stds else None)
  flops = {r["name"]: r["flops"] for r in ok}
  names = sorted(by_name)
  assert s["baselines"]["flops"]["kendall_tau"] == round(stats.kendall_tau(
      [flops[n] for n in names], [statistics.fmean(by_name[n]) for n in names]), 4)
  for r in recs:  # the contract of each line
    assert {"name", "blocks", "seed", "test_accuracy", "flops", "params", "epochs",
            "wall_seconds"} <= set(r)
    arch = search_space.Architecture.from_dict(r["arch"])
    assert r["blocks"] == gt.blocks_key(arch) and r["flops"] == search_space.count_flops(arch, 224)
  names = {r["blocks"]: r["name"] for r in recs}
  for ref in g.REFERENCES:
    key = gt.blocks_key(search_space.named(ref))
    assert names.get(key, ref) == ref  # a reference is always recorded under its own name


def test_the_default_proxy_task_is_the_candidate_the_committed_summary_chose():
  with open(os.path.join(RESULTS, "summary.json")) as f:
    chosen = json.load(f)["default_proxy"]
  assert ProxyTask() == g.CANDIDATES[chosen]


def test_the_readme_gives_b0s_spread_on_the_default_proxy_as_its_records_do():
  with open(os.path.join(RESULTS, "default_proxy_b0", "evaluate.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["name"] for r in rows] == ["efficientnet-b0"] * 5 and {r["status"] for r in rows} == {"ok"}
  acc = [100 * r["accuracy"] for r in rows]
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  assert f"B0 **{statistics.fmean(acc):.2f} ± {statistics.stdev(acc):.2f} %** (n = 5)" in readme
  assert f"missed by {statistics.stdev(acc) - 1.5:.2f} points" in readme


def test_the_readme_proxy_table_gives_the_committed_summarys_numbers():
  with open(os.path.join(RESULTS, "summary.json")) as f:
    s = json.load(f)
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  sign = lambda v: f"{v:+.2f}".replace("-", "−")
  rank = lambda v: (f"| {sign(v['kendall_tau'])} [{sign(v['kendall_tau_interval'][0])}, "
                    f"{sign(v['kendall_tau_interval'][1])}] | {sign(v['spearman_rho'])} |")
  for name, p in s["proxies"].items():
    noise = (f" {100 * p['b0']['mean']:.1f} ± {100 * p['b0']['std']:.1f} | "
             f"{100 * p['a1']['mean']:.1f} ± {100 * p['a1']['std']:.1f} | {p['median_seconds']:.1f} |")
    label = name if name != g.OLD_PROXY else "the old search-quality proxy"
    # The row whose first cell starts with the name (8k-e2-w0.25-s2 is not 8k-e2-w0.25-s2-noclip).
    row = next(line for line in readme.splitlines()
               if line.startswith("| ") and line[2:].lstrip("*").startswith(label + " "))
    assert rank(p["vs_g"]) + noise in row, name
  for key in ("flops", "params"):
    assert rank(s["baselines"][key]) in readme, key


def test_the_committed_learning_curves_are_recomputed_from_the_committed_runs():
  c = g.curve_agreement(RESULTS)
  _assert_committed("curves", c, g.curves_markdown(c))
  # The last epoch's training accuracy, independently: one value per network, mean over its seeds.
  recs = [json.loads(line) for line in open(os.path.join(RESULTS, gt.RECORDS))]
  train, test = {}, {}
  for r in recs:
    with open(os.path.join(RESULTS, "runs", r["name"], f"seed{r['seed']}", "metrics.json")) as f:
      train.setdefault(r["name"], []).append(json.load(f)["history"][-1]["accuracy"])
    test.setdefault(r["name"], []).append(r["test_accuracy"])
  names = sorted(train)
  assert c["n_networks"] == len(names) and c["epochs"] == 6
  assert c["rows"][-1]["accuracy"]["kendall_tau"] == round(stats.kendall_tau(
      [statistics.fmean(train[n]) for n in names], [statistics.fmean(test[n]) for n in names]), 4)


def _run(*args, **kw):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, SCRIPT, "--quick", "--workers=2", *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_a_sigkilled_run_resumes_with_every_record_once(tmp_path):
  out = str(tmp_path / "g")
  jobs = g.job_queue(g.quick_architectures(), ["ground_truth", "proxies"], g.QUICK_PLAN)
  p = _run(f"--out={out}")
  path = os.path.join(out, gt.RECORDS)
  deadline = time.monotonic() + 300
  while not (os.path.isfile(path) and os.path.getsize(path)) and time.monotonic() < deadline:
    time.sleep(0.2)
  p.send_signal(signal.SIGKILL)  # the workers exit with it
  p.communicate()
  first = [json.loads(line) for line in open(path)]
  assert 1 <= len(first) < len(jobs)
  p = _run(f"--out={out}")
  _, err = p.communicate(timeout=600)
  assert p.returncode == 0, err[-2000:]
  keys = []
  for name in (gt.RECORDS, gt.PROXIES):
    keys += [(r.get("proxy"), r["name"], r["seed"]) for r in
             (json.loads(line) for line in open(os.path.join(out, name)))]
  assert sorted(keys, key=str) == sorted((j.key for j in jobs), key=str)  # each once
  assert [json.loads(line) for line in open(path)][:len(first)] == first  # appended, not rewritten
  summary = subprocess.run([sys.executable, SCRIPT, "--summary", f"--out={out}"], cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
  last = json.loads(summary.stdout.strip().splitlines()[-1])
  assert list(last) == list(g.HEADLINE) and last["n_architectures"] == 2


def test_a_g_job_trains_on_its_own_seed_whatever_its_task_holds(tmp_path):
  name, arch = g.quick_architectures()[0]
  task = g.QUICK_PLAN.g_task.replace(seed=0).to_dict()  # as a caller may pass G's task for every seed
  records = {s: g._run_job_unchecked(g.Job(name, arch, s, task=task, augment=()), str(tmp_path), 1, None)
             for s in (0, 1)}
  params = {s: json.load(open(os.path.join(g.run_dir(str(tmp_path), name, s), "params.json"))) for s in (0, 1)}
  assert [params[s]["task"]["seed"] for s in (0, 1)] == [0, 1]
  assert [records[s]["seed"] for s in (0, 1)] == [0, 1]
