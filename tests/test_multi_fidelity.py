"""Multi-fidelity search: successive halving and Hyperband inside the multi-trial search.

Rungs, records, best.json and pareto.json, checkpoints deleted, exact resume after SIGKILL, flags.
"""

import json
import os
import signal
from collections import Counter

import benchmark_modules
import numpy as np
import pytest
from test_search import TINY_FLAGS, tiny_config

from launch_cli import run_launch, start_launch
from mnas_search.runs import records as records_lib
from mnas_search.search.multi_trial import run_search
from mnas_search.search.scheduler import promoted
from mnas_search.util import fileio, stats
from mnas_search.util.faults import FAULTS_ENV


def _records(d):
  return fileio.read_jsonl(os.path.join(d, "trials.jsonl"))


def _children_left(d):
  folder = os.path.join(d, "children")
  return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.slow  # default-suite time: the SIGKILL test below runs sha's rungs and continuations
def test_sha_trains_9_then_3_then_1_continuing_the_promoted(tmp_path, restore_determinism):
  d = str(tmp_path / "s")
  config = tiny_config(controller="random", controller_hparams=(), trials=9, trials_per_update=9,
                       scheduler="sha", min_budget=1, max_budget=9, eta=3)
  assert config.budgets == (1, 3, 9)
  summary = run_search(d, config, show_progress=False)
  recs = _records(d)
  assert Counter(r["budget"] for r in recs) == {1: 9, 3: 3, 9: 1}
  assert Counter(r["rung"] for r in recs) == {0: 9, 1: 3, 2: 1}
  assert summary.trials == 9 and sorted({r["trial"] for r in recs}) == list(range(9))
  at = {b: {r["trial"]: r for r in recs if r["budget"] == b} for b in (1, 3, 9)}
  # The promoted are the best third of each rung by reward (the lower trial on a tie).
  rank = lambda rs: sorted(rs.values(), key=lambda r: (-r["reward"], r["trial"]))
  assert set(at[3]) == {r["trial"] for r in rank(at[1])[:3]}
  assert set(at[9]) == {rank(at[3])[0]["trial"]}
  # best.json: the child that reached budget 9, whatever a budget-1 score was.
  (top,) = at[9].values()
  best = fileio.read_json(os.path.join(d, "best.json"))
  assert (best["trial"], best["budget"]) == (top["trial"], 9)
  # The readers see each child once, at its highest budget; pareto.json holds only budget-9 ones.
  finals = records_lib.read_trials(d)
  assert len(finals) == 9 and {r["trial"]: r["budget"] for r in finals}[top["trial"]] == 9
  front = fileio.read_json(os.path.join(d, "pareto.json"))
  front = front["front"] if isinstance(front, dict) else front
  assert [p["trial"] for p in front] == [top["trial"]]
  assert _children_left(d) == []  # every checkpoint deleted once nothing continues from it
  # The controller learned once, from all 9 children.
  assert [u["update"] for u in fileio.read_jsonl(os.path.join(d, "updates.jsonl"))] == [0]
  # The report draws the rungs and tabulates them.
  from mnas_search.analysis.report import write_report
  written = write_report(d)
  assert os.path.getsize(written["rungs"]) > 1000
  text = open(written["summary"]).read()
  for budget, n in ((1, 9), (3, 3), (9, 1)):
    assert f"| {budget} | {n} |" in text


def test_hyperband_runs_one_bracket_per_batch():
  # The policy alone (the search around it is the sha test's): brackets in turn, from rung 0.
  from collections import namedtuple

  from mnas_search.search.scheduler import Hyperband
  C = namedtuple("C", "trial")
  policy, trained, dropped = Hyperband((1, 3, 9), 3), [], []

  def train_rung(alive, rung):
    trained.append((rung.previous, rung.budget, [c.trial for c in alive]))
    return {c.trial: {"reward": float(c.trial % 5), "rung": rung.index} for c in alive}

  finals = {u: policy.bracket([C(t) for t in range(9)], u, train_rung,
                              lambda ts, b: dropped.append((b, sorted(ts)))) for u in range(4)}
  assert trained[:3] == [(0, 1, list(range(9))), (1, 3, [3, 4, 8]), (3, 9, [4])]  # rewards 3,4,3
  assert trained[3:5] == [(0, 3, list(range(9))), (3, 9, [3, 4, 8])]  # bracket 2 starts at rung 1
  assert trained[5] == (0, 9, list(range(9)))  # bracket 3: every child at the full budget
  assert trained[6][:2] == (0, 1)  # then round again
  assert {t: r["rung"] for t, r in finals[0].items()} == {**{t: 0 for t in range(9)}, 3: 1, 8: 1, 4: 2}
  # Checkpoints: budget 0 is never saved; each rung's losers and the winners' previous are dropped.
  assert (1, [0, 1, 2, 5, 6, 7]) in dropped and (1, [3, 4, 8]) in dropped and (3, [3, 8]) in dropped


def test_promotion_keeps_the_best_third_and_a_failed_child_last():
  from collections import namedtuple
  C = namedtuple("C", "trial")
  cands = [C(t) for t in range(7)]
  rewards = {0: 0.5, 1: 0.0, 2: 0.9, 3: 0.5, 4: 0.1, 5: 0.7, 6: 0.2}
  kept = promoted(cands, {t: {"reward": r} for t, r in rewards.items()}, eta=3)
  assert [c.trial for c in kept] == [0, 2, 5]  # ceil(7/3) = 3: 0.9, 0.7, then 0.5 (trial 0 before 3)


def _essence(d):
  return sorted((r["trial"], r["budget"], r["rung"], r["indices"], r["status"], r["accuracy"],
                 r["reward"], r["seed"], r["update"]) for r in _records(d))


SHA_FLAGS = ["--trials=6", "--trials_per_update=3", "--seed=5", "--deterministic",
             "--controller=reinforce", "--scheduler=sha", "--min_budget=1", "--max_budget=3"]


def test_sigkill_during_rungs_then_resume_equals_uninterrupted_run(tmp_path):
  ref = str(tmp_path / "ref")
  reference = start_launch("search", f"--search_dir={ref}", *TINY_FLAGS, *SHA_FLAGS)
  crashed = str(tmp_path / "crashed")
  # First, half of batch 0's first rung (its second child trained, not stored); then, after the
  # resume has finished that rung, the promoted child continued from its checkpoint to budget 3
  # and not stored (the resume must continue it again from the same checkpoint); then right after
  # batch 0's controller checkpoint (its pareto.json and HParams runs not yet written).
  try:
    for point in ("child_trained:2", "child_trained:3", "checkpoint_saved:1"):
      p = run_launch("search", f"--search_dir={crashed}", *TINY_FLAGS, *SHA_FLAGS,
                     env={FAULTS_ENV: point})
      assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stderr[-3000:])
      stored = [(r["trial"], r["budget"]) for r in _records(crashed)]
      if point == "child_trained:2":
        assert stored == [(0, 1)]
      elif point == "child_trained:3":  # rung 0 done, its promoted child's checkpoint kept, the others' deleted
        assert sorted(stored) == [(0, 1), (1, 1), (2, 1)]
        assert len(_children_left(crashed)) == 1 and _children_left(crashed)[0].endswith("-b1.npz")
  finally:
    _, stderr = reference.communicate(timeout=600)
  assert reference.returncode == 0, stderr[-3000:]
  p = run_launch("search", f"--search_dir={crashed}", *TINY_FLAGS, *SHA_FLAGS)
  assert p.returncode == 0, p.stderr[-3000:]
  got, want = _essence(crashed), _essence(ref)
  assert len({(t[0], t[1]) for t in got}) == len(got)  # no (trial, budget) twice
  assert got == want and Counter(t[1] for t in want) == {1: 6, 3: 2}
  assert _children_left(crashed) == []
  # One HParams run per child, batch 0's backfilled by the resume after the kill at its checkpoint.
  runs = lambda d: sorted(n for n in os.listdir(os.path.join(d, "tb", "hparams")) if n.startswith("trial-"))
  assert runs(crashed) == runs(ref) == [f"trial-{t:05d}" for t in range(6)]
  ref_updates = fileio.read_jsonl(os.path.join(ref, "updates.jsonl"))
  updates = fileio.read_jsonl(os.path.join(crashed, "updates.jsonl"))
  assert len(updates) == len(ref_updates) == 2
  for u, v in zip(updates, ref_updates):
    assert u == pytest.approx(v, rel=1e-6)


@pytest.mark.parametrize("flags, fragment", [
    (["--scheduler=bogus"], "--scheduler"),
    (["--min_budget=2"], "--min_budget=2 is taken only with scheduler=sha or hyperband"),
    (["--eta=2"], "--eta=2 is taken only with scheduler=sha or hyperband"),
    (["--scheduler=sha", "--min_budget=2", "--max_budget=5"],
     "--min_budget=2 is invalid; allowed: an integer <= max_budget / eta = 1.66667 (at least two rungs)"),
    (["--scheduler=sha", "--max_budget=4", "--eta=1"], "--eta=1 is invalid; allowed: an integer >= 2"),
    (["--scheduler=hyperband", "--min_budget=0", "--max_budget=3"], "--min_budget=0 is invalid"),
    (["--mode=oneshot", "--scheduler=sha"], "--scheduler is not taken by search --mode=oneshot"),
])
def test_bad_scheduler_flags_give_one_clear_line(tmp_path, flags, fragment):
  base = [f for f in TINY_FLAGS if not f.startswith("--backend")]  # one-shot takes no --backend
  p = run_launch("search", f"--search_dir={tmp_path / 's'}", *base, *flags)
  assert p.returncode == 2, p.stderr[-2000:]
  assert fragment in p.stderr and "Traceback" not in p.stderr
  assert not os.path.exists(tmp_path / "s" / "trials.jsonl")


def test_budgets_follow_max_over_powers_of_eta():
  sha = lambda **kw: tiny_config(scheduler="sha", **kw)
  assert sha(min_budget=1, max_budget=9, eta=3).budgets == (1, 3, 9)
  assert sha(max_budget=4).budgets == (2, 4)  # 4/3 >= 1, rounded up; 4/9 < 1
  assert sha(min_budget=1, max_budget=8, eta=2).budgets == (1, 2, 4, 8)
  with pytest.raises(ValueError, match=r"max_budget=1 is invalid \(default: the proxy's epochs or steps\); "
                     "allowed: an integer >= eta"):  # the task's 1 epoch is the default max
    sha()
  assert sha(max_budget=500).budgets == (56, 167, 500)  # min_budget's default: max / eta^2
  assert "scheduler" not in tiny_config().to_params()  # an older params.json stays as it is
  assert tiny_config(scheduler="sha", max_budget=3).to_params()["eta"] == 3


def test_the_real_stage_compares_at_the_default_proxy():
  from mnas_search.training.proxy import ProxyTask
  mf, gtb = benchmark_modules.load("multi_fidelity"), benchmark_modules.load("ground_truth")
  assert gtb.CANDIDATES[gtb.DEFAULT_PROXY] == ProxyTask()
  if "proxy" not in mf.FLAGS:
    mf.define_flags()
  assert mf.FLAGS["proxy"].default == gtb.DEFAULT_PROXY
  assert [seed for _, _, seed in mf.real_runs({"seeds": 2, "controllers": ["random", "ppo"]})] == [0] * 6 + [1] * 6


@pytest.mark.slow
def test_real_stage_of_the_benchmark_runs_end_to_end_quick(tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  p = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "multi_fidelity.py"),
                      "--stages=real", "--quick", f"--out={tmp_path}", "--controllers=random",
                      "--real_seeds=1", "--real_compute=4", "--workers=1"],
                     capture_output=True, text=True, timeout=900, cwd=root)
  assert p.returncode == 0, p.stderr[-3000:]
  import json
  out = json.loads(p.stdout.strip().splitlines()[-1])
  assert out["n_runs"] == 3 and {r["scheduler"] for r in out["runs"]} == {"none", "sha", "hyperband"}
  g = fileio.read_jsonl(os.path.join(tmp_path, "real", "g", "records.jsonl"))
  # One G training per distinct best (runs that found the same network share it), named by the
  # network; every run is scored.
  bests = {n: fileio.read_json(os.path.join(tmp_path, "real", n, "best.json"))["arch"]["blocks"]
           for n in out_names(out)}
  assert len(g) == len({tuple(b) for b in bests.values()}) and all(r["name"].startswith("net-") for r in g)
  # The schedulers were planned with the fixed cost measured on the none run, stored once.
  fixed = fileio.read_json(os.path.join(tmp_path, "real", "fixed_cost.json"))
  assert fixed["measured_on"] == "none-random-s0" and fixed["fixed_steps"] > 0
  assert fileio.read_json(os.path.join(tmp_path, "real", "sha-random-s0", "run.json"))["fixed_steps"] == fixed["fixed_steps"]
  assert {r["blocks"] for r in g} == {",".join(b) for b in bests.values()}
  assert all(0 <= r["test_accuracy"] <= 1 for r in g)
  sha = [r for r in fileio.read_jsonl(os.path.join(tmp_path, "real", "sha-random-s0", "trials.jsonl"))]
  assert len({r["budget"] for r in sha}) >= 2  # it ran rungs
  # Each run ran in one go, so the table gives its wall time; the plot is drawn.
  assert all(not r["resumed"] and r["one_go"] for r in out["runs"])
  table = p.stdout[p.stdout.index("| controller |"):]
  assert "in one go" not in table and "fixed cost per job" in table
  assert os.path.getsize(os.path.join(tmp_path, "real.png")) > 0
  # A rerun finds every run done: no record changes, none is added.
  before = {n: open(os.path.join(tmp_path, "real", n, "run.json")).read() for n in out_names(out)}
  p = subprocess.run(p.args, capture_output=True, text=True, timeout=900, cwd=root)
  assert p.returncode == 0, p.stderr[-3000:]
  assert {n: open(os.path.join(tmp_path, "real", n, "run.json")).read() for n in out_names(out)} == before
  assert len(fileio.read_jsonl(os.path.join(tmp_path, "real", "g", "records.jsonl"))) == len(g)


@pytest.mark.slow
def test_the_equal_seconds_top_up_extends_a_copy_by_whole_batches_to_nones_seconds(tmp_path):
  import subprocess
  import sys
  mf = benchmark_modules.load("multi_fidelity")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  args = [sys.executable, os.path.join(root, "benchmarks", "multi_fidelity.py"), "--stages=real", "--quick",
          f"--out={tmp_path}", "--controllers=random", "--real_seeds=1", "--real_compute=4", "--workers=1"]
  p = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=root)
  assert p.returncode == 0, p.stderr[-3000:]
  real = os.path.join(tmp_path, "real")
  planned = {n: open(os.path.join(real, n, "trials.jsonl")).read() for n in ("sha-random-s0", "hyperband-random-s0")}
  p = subprocess.run(args + ["--real_topup_seeds=0"], capture_output=True, text=True, timeout=900, cwd=root)
  assert p.returncode == 0, p.stderr[-3000:]
  reference = mf.job_seconds(records_lib.read_trials(os.path.join(real, "none-random-s0"), rungs=True))
  for name, before in planned.items():
    assert open(os.path.join(real, name, "trials.jsonl")).read() == before  # the planned run is kept
    eqs = os.path.join(real, name + "-eqs")
    after = open(os.path.join(eqs, "trials.jsonl")).read()
    assert after.startswith(before)  # the copy continues the same search
    run = fileio.read_json(os.path.join(eqs, "run.json"))
    children = len({r["trial"] for r in records_lib.read_trials(eqs)})
    assert run["plan"] == "seconds" and run["children"] == children and children % 3 == 0
    spent = mf.job_seconds(records_lib.read_trials(eqs, rungs=True))
    # Stopped where one more batch, at its mean so far, would overrun none's seconds.
    assert spent + spent / (children // 3) > reference
    assert run["reference_seconds"] == pytest.approx(reference, abs=0.1)
  out = json.loads(p.stdout.strip().splitlines()[-1])
  assert {r["run"] for r in out["runs"]} >= {"sha-random-s0-eqs", "hyperband-random-s0-eqs"}
  assert "sha (equal s)" in p.stdout
  g = {r["blocks"] for r in fileio.read_jsonl(os.path.join(real, "g", "records.jsonl"))}
  assert all(",".join(fileio.read_json(os.path.join(real, n + "-eqs", "best.json"))["arch"]["blocks"]) in g
             for n in planned)


def test_bad_top_up_seeds_give_one_clear_line(tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  p = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "multi_fidelity.py"),
                      "--stages=real_summary", f"--out={tmp_path}", "--real_topup_seeds=1,x"],
                     capture_output=True, text=True, timeout=300, cwd=root)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines()[-1].startswith("error: --real_topup_seeds=1,x is invalid; allowed:")
  assert "Traceback" not in p.stderr


def test_the_fixed_cost_is_measured_on_the_none_run_and_kept(tmp_path):
  mf = benchmark_modules.load("multi_fidelity")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "results", "multi_fidelity", "real", "none-random-s0", "trials.jsonl")) as f:
    base = json.loads(f.readline())
  run = tmp_path / "none-random-s0"
  run.mkdir()
  rows = [{"fixed_seconds": f, "steady_seconds": s, "status": "ok", "cached_from": None}
          for f, s in ((10.0, 20.0), (12.0, 25.0), (30.0, 30.0), (1.0, 0.0))]
  (run / "trials.jsonl").write_text("".join(json.dumps(dict(base, trial=i, **r)) + "\n"
                                            for i, r in enumerate(rows)))
  # Median fixed 12 s over median 25 s / 250 steps = 120 steps (the no-steady child left out).
  assert mf.measured_fixed_steps(str(tmp_path), "none-random-s0", 250) == pytest.approx(120.0)
  (run / "trials.jsonl").write_text("")  # stored: the first measurement is kept
  assert mf.measured_fixed_steps(str(tmp_path), "none-random-s0", 250) == pytest.approx(120.0)


def test_a_continued_jobs_steady_time_is_per_the_steps_it_ran_not_its_budget():
  mf = benchmark_modules.load("multi_fidelity")
  ok = {"status": "ok", "cached_from": None}
  jobs = [dict(ok, trial=0, budget=28, fixed_seconds=6.0, steady_seconds=2.8),
          dict(ok, trial=1, budget=28, fixed_seconds=8.0, steady_seconds=2.8),
          dict(ok, trial=0, budget=84, fixed_seconds=7.0, steady_seconds=5.6),  # ran 56 steps
          dict(ok, trial=0, budget=250, fixed_seconds=9.0, steady_seconds=16.6)]  # ran 166
  fixed, per_step, n = mf.fixed_cost(jobs, 250)
  assert (fixed, per_step, n) == (pytest.approx(7.5), pytest.approx(0.1), 4)
  # A cached record is not a job that ran; a record without a budget ran a full child.
  more = jobs + [dict(jobs[0], trial=2, cached_from=0), dict(ok, trial=3, fixed_seconds=7.2, steady_seconds=25.0)]
  assert mf.fixed_cost([{k: v for k, v in r.items() if k != "budget"} if r["trial"] == 3 else r
                        for r in more], 250) == (pytest.approx(7.2), pytest.approx(0.1), 5)


def test_the_paired_table_pairs_each_scheduler_run_with_nones_on_its_controller_and_seed():
  mf = benchmark_modules.load("multi_fidelity")

  def row(sched, ctrl, seed, acc, plan="steps"):
    return {"scheduler": sched, "controller": ctrl, "seed": seed, "best_g_test": acc, "plan": plan}

  none = {("random", 0): 0.90, ("random", 1): 0.92, ("ppo", 0): 0.91, ("ppo", 1): 0.93}
  rows = [row("none", c, s, a) for (c, s), a in none.items()]
  # sha beats none by exactly 1 point on every pair, though its runs are no better than none's
  # unpaired; the equal-seconds copy of random s1 found none's best (a tie); ppo s2 has no none.
  rows += [row("sha", c, s, a + 0.01) for (c, s), a in none.items()]
  rows += [row("sha", "random", 1, 0.92, "seconds"), row("sha", "ppo", 2, 0.99)]
  lines = mf.paired_real(rows).splitlines()
  cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}
  assert cells["sha"][:3] == ["4", "0", "+1.00"]
  assert cells["sha"][4:] == ["0.125", "0.125 |"]  # all four the same sign: 2 of 16 patterns
  assert cells["sha (equal s)"] == ["1", "1", "+0.00", "—", "—", "1 |"]


def out_names(out: dict) -> list[str]:
  return [f"{r['scheduler']}-{r['controller']}-s{r['seed']}" for r in out["runs"]]


def test_the_readme_synthetic_table_is_the_committed_records():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  module = benchmark_modules.load("multi_fidelity")
  runs = module.selected(fileio.read_jsonl(os.path.join(root, "results", "multi_fidelity", "synthetic.jsonl")),
                         64, module.FIXED, 5)  # the README's runs: the benchmark's defaults
  assert len(runs) == 35
  readme = open(os.path.join(root, "README.md")).read()
  for line in module.summarize(runs).splitlines():
    assert line in readme, line


def test_the_readme_gives_the_lowest_rungs_accuracies_as_the_committed_records_do():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  trials = fileio.read_jsonl(os.path.join(root, "results", "multi_fidelity", "real_undercharged",
                                          "sha-random-s0", "trials.jsonl"))
  low = [r["accuracy"] for r in trials if r["budget"] == 28]
  mid = [r["accuracy"] for r in trials if r["budget"] == 84]
  with open(os.path.join(root, "README.md")) as f:
    readme = " ".join(f.read().split())
  assert (f"{sum(a <= 0.15 for a in low)} of the random controller's {len(low)} children in "
          f"`sha-random-s0` scored 15 % or less (mean {100 * sum(low) / len(low):.1f} %") in readme
  assert f"at 84 steps {sum(a > 0.15 for a in mid)} of {len(mid)} were above 15 %" in readme


def test_the_readme_gives_seed_0s_job_minutes_as_the_committed_records_do():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def job_minutes(run: str) -> float:
    rows = fileio.read_jsonl(os.path.join(root, "results", "multi_fidelity", "real", run, "trials.jsonl"))
    return sum(r["fixed_seconds"] + r["steady_seconds"] for r in rows) / 60

  none = [job_minutes(f"none-{c}-s0") for c in ("random", "ppo")]
  rest = [job_minutes(f"{s}-{c}-s0") for s in ("sha", "hyperband") for c in ("random", "ppo")]
  with open(os.path.join(root, "README.md")) as f:
    readme = " ".join(f.read().split())
  assert f"({none[0]:.0f} and {none[1]:.0f} job-minutes)" in readme
  assert f"on a quieter machine ({min(rest):.0f} to {max(rest):.0f})" in readme
  assert fileio.read_json(os.path.join(root, "results", "multi_fidelity", "real", "fixed_cost.json"))["fixed_steps"] == 127.0


def test_the_readme_gives_seed_0s_own_fixed_costs_as_the_committed_records_do():
  mf = benchmark_modules.load("multi_fidelity")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  own = []
  for run in (f"{s}-{c}-s0" for s in ("none", "sha", "hyperband") for c in ("random", "ppo")):
    fixed, per_step, _ = mf.fixed_cost(fileio.read_jsonl(os.path.join(
        root, "results", "multi_fidelity", "real", run, "trials.jsonl")), 250)
    own.append(fixed / per_step)
  with open(os.path.join(root, "README.md")) as f:
    readme = " ".join(f.read().split())
  assert f"it is {min(own):.0f} to {max(own):.0f} steps, median {np.median(own):.0f}," in readme


def test_the_readme_fixed_cost_table_is_the_committed_records():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  module = benchmark_modules.load("multi_fidelity")
  runs = fileio.read_jsonl(os.path.join(root, "results", "multi_fidelity", "synthetic.jsonl"))
  table = module.fixed_cost_table(runs).splitlines()
  assert len(table) == 6 and all("| 50 |" in line for line in table)
  readme = open(os.path.join(root, "README.md")).read()
  for line in table:
    assert line in readme, line
  assert module.REAL_FIXED == pytest.approx(
      fileio.read_json(os.path.join(root, "results", "multi_fidelity", "real", "fixed_cost.json"))["fixed_steps"]
      / 250 * module.MAX_BUDGET, abs=1e-3)


def test_the_readme_real_children_table_is_the_committed_records():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  module = benchmark_modules.load("multi_fidelity")
  rows, table = module.summarize_real(os.path.join(root, "results", "multi_fidelity"), 250)
  assert len(rows) >= 12 and len({r["seed"] for r in rows}) >= 2
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  for line in (x for x in table.splitlines() if x.startswith("|")):
    assert line in readme, line
  tau = stats.kendall_tau([r["best_proxy"] for r in rows], [r["best_g_test"] for r in rows])
  flat = " ".join(readme.split())
  assert f"Across the {len(rows)} runs, a best's proxy score ranks its G accuracy at Kendall τ {tau:+.2f}" in flat
  g = [100 * r["best_g_test"] for r in rows]
  assert f"The bests span {min(g):.2f} to {max(g):.2f} %" in flat


def test_the_readme_gives_the_quiet_seeds_job_second_ratios_as_the_committed_records_do():
  mf = benchmark_modules.load("multi_fidelity")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  real = os.path.join(root, "results", "multi_fidelity", "real")
  with open(os.path.join(root, "README.md")) as f:
    readme = " ".join(f.read().split())
  for seed, template in ((1, "took {lo:.2f} to {hi:.2f} of `none`'s seconds"),
                         (2, "(on seed 2, {lo:.2f} to {hi:.2f})")):
    def seconds(run: str) -> float:
      return mf.job_seconds(records_lib.read_trials(os.path.join(real, run), rungs=True))

    ratios = [seconds(f"{s}-{c}-s{seed}") / seconds(f"none-{c}-s{seed}") for s in ("sha", "hyperband")
              for c in ("random", "ppo")]
    assert template.format(lo=min(ratios), hi=max(ratios)) in readme


def test_the_readme_gives_seed_1s_quiet_fixed_cost_as_the_committed_records_do():
  mf = benchmark_modules.load("multi_fidelity")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  costs = [mf.fixed_cost(fileio.read_jsonl(os.path.join(root, "results", "multi_fidelity", "real",
                                                        f"{s}-{c}-s1", "trials.jsonl")), 250)
           for s in ("sha", "hyperband") for c in ("random", "ppo")]
  fixed, per_step = [c[0] for c in costs], [c[1] for c in costs]
  planned = fileio.read_json(os.path.join(root, "results", "multi_fidelity", "real", "fixed_cost.json"))["fixed_steps"]
  with open(os.path.join(root, "README.md")) as f:
    readme = " ".join(f.read().split())
  assert (f"({min(fixed):.1f} to {max(fixed):.1f} s on seed 1's scheduler runs) is below what the "
          f"plan charges ({planned:.0f} steps, {planned * min(per_step):.1f} to {planned * max(per_step):.1f} s "
          f"at their {min(per_step):.3f} to {max(per_step):.3f} s per step)") in readme
