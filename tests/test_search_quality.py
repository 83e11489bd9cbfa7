"""Tests of benchmarks/search_quality.py: end to end on synthetic data, recomputation, resume."""

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "search_quality.py")
ARMS = ("ppo", "evolution", "random", "reinforce")
REFERENCES = ("efficientnet-b0", "mnasnet-a1")


def run_script(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
  p = subprocess.run([sys.executable, SCRIPT, "--quick", *args], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def snapshot(out):
  """(path, mtime, size) of every record file the stages write."""
  files = []
  for base, _, names in os.walk(out):
    for n in names:
      if n in ("trials.jsonl", "noise.jsonl", "metrics.json", "fidelity.jsonl", "timings.jsonl",
               "updates.jsonl", "best.json"):
        p = os.path.join(base, n)
        files.append((os.path.relpath(p, out), os.stat(p).st_mtime_ns, os.path.getsize(p)))
  return sorted(files)


@pytest.mark.slow
def test_quick_run_recomputes_from_records_and_resumes_without_retraining(tmp_path):
  out = str(tmp_path / "sq")
  first = run_script(f"--out={out}")
  assert "stage searches: 16 trained" in first  # 4 arms x 2 seeds x 2 children
  res = json.load(open(os.path.join(out, "results.json")))
  assert set(res) >= {"options", "proxy", "retrain_recipe", "noise", "runs", "arms", "models",
                      "fidelity", "wall_seconds", "target_flops", "reward", "w"}
  assert (res["target_flops"], res["reward"], res["w"]) == (400e6, "mnas", -0.07)
  for name in ("results.md", "curves.png", "final.png", ".gitignore"):
    assert os.path.getsize(os.path.join(out, name)) > 0

  # Noise: B0 and A1 on the quick proxy, 2 child seeds each, recomputed from noise.jsonl.
  noise = read_jsonl(os.path.join(out, "noise.jsonl"))
  assert sorted((r["arch"], r["seed"]) for r in noise) == [
      ("efficientnet-b0", 0), ("efficientnet-b0", 1), ("mnasnet-a1", 0), ("mnasnet-a1", 1)]
  for n in res["noise"]:
    accs = [r["accuracy"] for r in sorted(noise, key=lambda r: r["seed"]) if r["arch"] == n["arch"]]
    assert n["accuracy"] == accs
    assert n["accuracy_stats"]["mean"] == statistics.fmean(accs)
    assert n["accuracy_stats"]["std"] == statistics.stdev(accs)
  b0 = next(n for n in res["noise"] if n["arch"] == "efficientnet-b0")
  assert res["proxy"]["b0_accuracy"] == b0["accuracy_stats"]
  assert res["proxy"]["within_limit"] == (b0["accuracy_stats"]["std"] <= 0.015)

  # Searches: every arm x seed, the best-so-far curve and best reward from trials.jsonl.
  assert sorted((r["arm"], r["seed"]) for r in res["runs"]) == sorted(
      (a, s) for a in ARMS for s in (0, 1))
  top1 = {}
  for run in res["runs"]:
    trials = sorted(read_jsonl(os.path.join(out, "searches", f"{run['arm']}-s{run['seed']}",
                                            "trials.jsonl")), key=lambda r: r["trial"])
    assert len(trials) == run["children"] == 2
    rewards = [r["reward"] for r in trials]
    assert run["curve"] == [max(rewards[:i + 1]) for i in range(len(rewards))]
    assert run["best_reward"] == max(rewards)
    ok = [r for r in trials if r["status"] == "ok"]
    best = max(ok, key=lambda r: (r["reward"], -r["trial"]))
    top1[(run["arm"], run["seed"])] = best["blocks"]
  late = {a: [read_jsonl(os.path.join(out, "searches", f"{a}-s{s}", "trials.jsonl"))
              for s in (0, 1)] for a in ARMS}
  late = {a: [r["reward"] for trials in runs
              for r in sorted(trials, key=lambda r: r["trial"])[1:]] for a, runs in late.items()}
  for arm in ARMS:
    bests = [r["best_reward"] for r in res["runs"] if r["arm"] == arm]
    assert res["arms"][arm]["best_reward"]["mean"] == statistics.fmean(bests)
    assert res["arms"][arm]["best_reward"]["std"] == statistics.stdev(bests)
    # 2 children: no quarter to average; the second half is each run's second child.
    assert res["arms"][arm]["first_quarter_mean_reward"]["n"] == 0
    wins = sum((a > b) + 0.5 * (a == b) for a in late[arm] for b in late["random"])
    assert res["arms"][arm]["late_children_beat_random"] == (
        None if arm == "random" else round(wins / 4, 6))

  # Retraining: each run's top-1 architecture once (deduplicated) plus B0 and A1, 2 seeds each,
  # test accuracies from the train directories' metrics.json.
  models = {m["key"]: m for m in res["models"]}
  assert set(REFERENCES) <= set(models)
  found = {(f["arm"], f["seed"]) for m in res["models"] for f in m["found_by"]}
  assert found == {(a, s) for a in ARMS for s in (0, 1)}
  distinct_blocks = {tuple(b) for b in top1.values()}
  assert len(models) == len(distinct_blocks) + 2
  train_root = os.path.join(out, "train")
  assert sorted(os.listdir(train_root)) == sorted(models)
  for key, m in models.items():
    assert sorted(os.listdir(os.path.join(train_root, key))) == ["seed0", "seed1"]
    metrics = [json.load(open(os.path.join(train_root, key, f"seed{s}", "metrics.json")))
               for s in (0, 1)]
    accs = [x["test_accuracy"] for x in metrics]
    assert m["test_accuracy"] == accs
    assert m["test_accuracy_stats"]["mean"] == statistics.fmean(accs)
    assert m["test_accuracy_stats"]["std"] == statistics.stdev(accs)
    assert [x["test_images"] for x in metrics] == [100, 100]
    assert m["deploy_flops"] > 0 and m["deploy_params"] > 0
    for f in m["found_by"]:
      assert tuple(metrics[0]["arch"]["blocks"]) == tuple(top1[(f["arm"], f["seed"])])
  for run in res["runs"]:  # each run's retrained top-1, with that model's mean test accuracy
    (x,) = run["retrained"]
    assert (x["rank"], x["key"] in models) == (0, True)
    assert x["test_accuracy_mean"] == models[x["key"]]["test_accuracy_stats"]["mean"]
    assert x["trial"] == next(f["trial"] for f in models[x["key"]]["found_by"]
                              if (f["arm"], f["seed"]) == (run["arm"], run["seed"]))
  assert models["efficientnet-b0"]["deploy_flops"] == 385814752
  assert res["fidelity"]["selected"] == 2
  # No weights under the committed folders' eyes: .gitignore covers them.
  assert "*.keras" in open(os.path.join(out, ".gitignore")).read()

  # Second run: nothing is retrained, no record file is touched, results.json is identical.
  before = snapshot(out)
  second = run_script(f"--out={out}")
  for stage in ("noise", "searches", "fidelity", "retrain"):
    assert f"stage {stage}: 0 trained" in second
  assert snapshot(out) == before
  assert json.load(open(os.path.join(out, "results.json"))) == res


def test_bad_options_are_refused_with_the_flag_name(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  p = subprocess.run([sys.executable, SCRIPT, f"--out={tmp_path}", "--arms=ppo,bogus",
                      "--stages=noise"], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=300)
  assert p.returncode == 2
  assert "--arms=ppo,bogus is invalid; allowed: any of ppo, evolution, random, reinforce" in p.stderr
  assert os.listdir(tmp_path) == []


RESULTS = os.path.join(ROOT, "results", "search_quality")
RECOMPUTE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("search_quality", sys.argv[1])
sq = sys.modules["search_quality"] = importlib.util.module_from_spec(spec)  # for dataclasses
spec.loader.exec_module(sq)
opts = json.load(open(sys.argv[3]))["options"]
opts = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
sq.summarize(sq.Options(out=sys.argv[2], **opts))
"""


def test_quarter_means_are_the_first_and_last_quarter_in_trial_order():
  recs = [{"trial": t, "reward": r, "accuracy": r + 0.1, "flops": 1e6 * t} for t, r in
          [(7, 0.8), (0, 0.1), (1, 0.3), (2, 0.5), (3, 0.2), (4, 0.0), (5, 0.4), (6, 0.6)]]
  code = ("import importlib.util, json, sys\n"
          "spec = importlib.util.spec_from_file_location('sq', sys.argv[1])\n"
          "sq = sys.modules['sq'] = importlib.util.module_from_spec(spec)\n"
          "spec.loader.exec_module(sq)\n"
          "recs = json.loads(sys.argv[2])\n"
          "print(json.dumps([sq.quarter_means(recs), sq.quarter_means(recs[:3])]))")
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  p = subprocess.run([sys.executable, "-c", code, SCRIPT, json.dumps(recs)], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  eight, three = json.loads(p.stdout.strip().splitlines()[-1])
  assert eight == {"first_quarter_mean_reward": statistics.fmean([0.1, 0.3]),
                   "first_quarter_mean_accuracy": statistics.fmean([0.1 + 0.1, 0.3 + 0.1]),
                   "first_quarter_mean_flops": 0.5e6,
                   "last_quarter_mean_reward": statistics.fmean([0.6, 0.8]),
                   "last_quarter_mean_accuracy": statistics.fmean([0.6 + 0.1, 0.8 + 0.1]),
                   "last_quarter_mean_flops": 6.5e6}
  assert three == {f"{side}_quarter_mean_{k}": None for side in ("first", "last")
                   for k in ("reward", "accuracy", "flops")}


def test_the_committed_results_are_recomputed_from_the_committed_records(tmp_path):
  """results.json and results.md under results/search_quality follow from its records alone."""
  committed = os.path.join(RESULTS, "results.json")
  assert os.path.isfile(committed), "results/search_quality/results.json is not committed"
  res = json.load(open(committed))
  out = tmp_path / "sq"
  shutil.copytree(RESULTS, out, ignore=shutil.ignore_patterns(
      "results.json", "results.md", "*.png", "*.keras", "tb", "controller"))
  env = dict(os.environ, PYTHONPATH=ROOT, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
  p = subprocess.run([sys.executable, "-c", RECOMPUTE, SCRIPT, str(out), committed], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  assert json.load(open(out / "results.json")) == res
  assert open(out / "results.md").read() == open(os.path.join(RESULTS, "results.md")).read()

  # The acceptance: all four arms, at least 2 seeds each, with the full budget; B0 and A1
  # retrained with 2 seeds; B0's proxy noise over 5 seeds.
  children = res["options"]["children"]
  assert sorted({r["arm"] for r in res["runs"]}) == sorted(ARMS)
  for arm in ARMS:
    assert res["arms"][arm]["runs"] >= 2
  b0 = res["proxy"]["b0_accuracy"]
  assert b0["n"] == 5 and b0["std"] > 0
  models = {m["key"]: m for m in res["models"]}
  for name in REFERENCES:
    assert len(models[name]["test_accuracy"]) == 2

  # Independent recomputation of the headline numbers from the raw files.
  late = {}
  for run in res["runs"]:
    trials = sorted(read_jsonl(os.path.join(RESULTS, run["dir"], "trials.jsonl")),
                    key=lambda r: r["trial"])
    assert [r["trial"] for r in trials] == list(range(children)) == list(range(run["children"]))
    rewards = [r["reward"] for r in trials]
    assert run["best_reward"] == max(rewards)
    q = children // 4
    assert run["first_quarter_mean_reward"] == statistics.fmean(rewards[:q])
    assert run["last_quarter_mean_reward"] == statistics.fmean(rewards[-q:])
    assert run["last_quarter_mean_flops"] == statistics.fmean(r["flops"] for r in trials[-q:])
    late.setdefault(run["arm"], []).extend(rewards[children // 2:])
  for arm in ARMS:
    bests = [r["best_reward"] for r in res["runs"] if r["arm"] == arm]
    assert res["arms"][arm]["best_reward"]["mean"] == statistics.fmean(bests)
    if arm != "random":  # P(late child > random's late child), ties half, by counting pairs
      wins = sum((a > b) + 0.5 * (a == b) for a in late[arm] for b in late["random"])
      assert res["arms"][arm]["late_children_beat_random"] == round(
          wins / (len(late[arm]) * len(late["random"])), 6)
  top1 = {}  # (arm, seed) -> mean test accuracy of the run's retrained top-1, from metrics.json
  for m in models.values():
    accs = [json.load(open(os.path.join(RESULTS, d, "metrics.json")))["test_accuracy"]
            for d in m["dirs"]]
    assert m["test_accuracy"] == accs and m["test_accuracy_stats"]["mean"] == statistics.fmean(accs)
    top1.update({(f["arm"], f["seed"]): statistics.fmean(accs) for f in m["found_by"]
                 if f["rank"] == 0})

  # Each arm against random, a run as the unit: the exact two-sided permutation p-value of the
  # difference of means, by listing every choice of which pooled runs are the arm's.
  def exact_p(a, b):
    pooled, observed = a + b, statistics.fmean(a) - statistics.fmean(b)
    diffs = [statistics.fmean(pooled[i] for i in chosen)
             - statistics.fmean(pooled[i] for i in range(len(pooled)) if i not in chosen)
             for chosen in itertools.combinations(range(len(pooled)), len(a))]
    return sum(abs(d) >= abs(observed) - 1e-12 for d in diffs) / len(diffs)

  seeds = range(res["options"]["search_seeds"])
  best = {(r["arm"], r["seed"]): r["best_reward"] for r in res["runs"]}
  for arm in ARMS:
    if arm == "random":
      continue
    for key, per_run in (("top1_test_accuracy", top1), ("best_reward", best)):
      a, b = [per_run[(arm, s)] for s in seeds], [per_run[("random", s)] for s in seeds]
      c = res["vs_random"]["arms"][arm][key]
      assert (c["arm"], c["random"]) == (a, b)
      assert c["difference"] == round(statistics.fmean(a) - statistics.fmean(b), 6)
      assert c["p_two_sided"] == round(exact_p(a, b), 6)
      # 2 runs against 2: 6 relabelings, the observed and its mirror as extreme as can be.
      assert c["min_p_two_sided"] == round(1 / 3, 6) and c["relabelings"] == 6
  # The README's reading: PPO's top-1s beat random's with no overlap, and that is still p = 1/3.
  ppo = res["vs_random"]["arms"]["ppo"]["top1_test_accuracy"]
  assert min(ppo["arm"]) > max(ppo["random"]) and ppo["p_two_sided"] == round(1 / 3, 6)
