"""Tests for mnas_search.search.multi_trial: the loop, the directory it writes, exact resume after SIGKILL."""

import os
import signal

import pytest

from launch_cli import run_launch, start_launch
from mnas_search.execution import backends
from mnas_search.search.multi_trial import SearchConfig, run_search, trial_seed
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio
from mnas_search.util.faults import FAULTS_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TASK = ProxyTask(dataset="synthetic", resolution=16, train_images=128, val_images=64, epochs=1,
                      batch_size=64, proxy_width=0.25)
TINY_FLAGS = ["--search_space=micro", "--dataset=synthetic", "--proxy_resolution=16",
              "--proxy_train_images=128", "--proxy_val_images=64", "--proxy_epochs=1",
              "--proxy_batch_size=64", "--proxy_width=0.25", "--references=", "--target_flops=30e6", "--noprogress",
              "--backend=inline"]


def tiny_config(**kw):
  base = dict(space="micro", controller="evolution", controller_hparams=(("population_size", 4),
              ("tournament_size", 2)), trials=6, trials_per_update=3, task=TINY_TASK, references=(),
              target_flops=30e6, deterministic=True, seed=3, backend="inline", workers=1)
  base.update(kw)
  return SearchConfig(**base)


def run_cli(*args, env=None, timeout=600):
  return run_launch(*args, env=env, timeout=timeout)


def trial_essence(path):
  """What must be identical between an interrupted and an uninterrupted search."""
  return [(r["trial"], r["indices"], r["status"], r["accuracy"], r["reward"], r["seed"], r["update"])
          for r in sorted(fileio.read_jsonl(path), key=lambda r: r["trial"])]


def test_search_writes_a_consistent_directory(tmp_path):
  d = str(tmp_path / "s")
  seen_lines = []
  summary = run_search(d, tiny_config(references=("mnasnet-a1",)), show_progress=False,
                       on_trial=lambda rec: seen_lines.append(len(fileio.read_jsonl(d + "/trials.jsonl"))))
  # trials.jsonl is valid and complete after every trial.
  assert seen_lines == [1, 2, 3, 4, 5, 6]
  # Each trial once; within a batch the cached repeats are stored before the trained children.
  trials = sorted(fileio.read_jsonl(os.path.join(d, "trials.jsonl")), key=lambda r: r["trial"])
  assert [r["trial"] for r in trials] == list(range(6))
  assert summary.trials == 6 and summary.updates == 2
  for r in trials:
    assert set(r) >= {"trial", "arch", "blocks", "flops", "params", "accuracy", "reward", "status",
                      "error", "train_seconds", "update", "seed"}
    assert r["status"] in ("ok", "cached") and 0.0 <= r["accuracy"] <= 1.0
    assert r["seed"] == trial_seed(3, r["trial"])
    assert r["update"] == r["trial"] // 3
    import rewards
    import search_space
    arch = search_space.Architecture.from_dict(r["arch"])
    assert r["flops"] == search_space.count_flops(arch, 224, 1000)
    assert r["reward"] == pytest.approx(rewards.mnas(r["accuracy"], r["flops"], 30e6))
  params = fileio.read_json(os.path.join(d, "params.json"))
  assert params["controller"] == "evolution" and params["task"]["dataset"] == "synthetic"
  assert params["target_flops"] == 30e6
  best = fileio.read_json(os.path.join(d, "best.json"))
  assert best["reward"] == max(r["reward"] for r in trials)
  updates = fileio.read_jsonl(os.path.join(d, "updates.jsonl"))
  assert [u["update"] for u in updates] == [0, 1] and [u["trials"] for u in updates] == [3, 6]
  for u in updates:
    # Evolution has no loss; its entropy is that of the aged population's option frequencies
    # (the last population_size=4 trials), and mean_reward is the batch's.
    batch = trials[3 * u["update"]:3 * u["update"] + 3]
    population = trials[:3 * u["update"] + 3][-4:]
    assert u["loss"] == 0.0
    assert u["entropy"] == pytest.approx(_population_entropy([r["indices"] for r in population]))
    assert u["mean_reward"] == pytest.approx(sum(r["reward"] for r in batch) / 3)
    assert u["population_best_reward"] == max(r["reward"] for r in population)
  refs = fileio.read_json(os.path.join(d, "references.json"))
  assert list(refs) == ["mnasnet-a1"] and refs["mnasnet-a1"]["flops"] == 311579072
  pareto = fileio.read_json(os.path.join(d, "pareto.json"))
  # Trained children, and repeats of another architecture that trains as the same network.
  by_trial = {r["trial"]: r for r in trials}
  scored = [r for r in trials if r["status"] == "ok" or (
      r["status"] == "cached" and by_trial[r["cached_from"]]["blocks"] != r["blocks"])]
  front = _brute_force_front(scored)
  assert pareto == {"objectives": [["accuracy", "max"], ["flops", "min"], ["params", "min"]],
                    "considered": len(scored), "front": front}
  # TensorBoard: per-trial and per-update scalars, and the best architecture as text.
  scalars, texts = _read_board(os.path.join(d, "tb"))
  want = {(f"trial/{k}", r["trial"]): float(r[k]) for r in trials
          for k in ("accuracy", "reward", "flops", "params")}
  want.update({(f"controller/{k}", u["update"]): v for u in updates for k, v in u.items()
               if k not in ("update", "trials", "best_reward")})
  assert scalars == pytest.approx(want, rel=1e-6)  # float32 on disk
  assert texts[("best_architecture", best["trial"])] == (
      "\n".join(f"    {b}" for b in best["blocks"]) + f"\n\nreward {best['reward']:.4f}, "
      f"accuracy {best['accuracy']:.4f}, {best['flops'] / 1e6:.1f}M FLOPs")
  assert os.listdir(os.path.join(d, "controller"))


def _population_entropy(indices):
  """Sum over decisions of the entropy of the option frequencies, in nats."""
  import math
  from collections import Counter
  total = 0.0
  for column in zip(*indices):
    for count in Counter(column).values():
      p = count / len(column)
      total -= p * math.log(p)
  return total


def _brute_force_front(ok):
  """Trials no other beats on accuracy (up), FLOPs and params (down); twins kept once, the first."""
  def vec(r):
    return (-r["accuracy"], r["flops"], r["params"])
  def dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and a != b
  front = [r for r in ok if not any(dominates(vec(o), vec(r)) for o in ok)
           and not any(vec(o) == vec(r) and o["trial"] < r["trial"] for o in ok)]
  return sorted(front, key=lambda r: (r["flops"], r["trial"]))


def _read_board(logdir):
  """{(tag, step): value} of the scalars and {(tag, step): text} of the text summaries."""
  import glob

  import tensorflow as tf
  scalars, texts = {}, {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        value = tf.make_ndarray(v.tensor)
        if v.metadata.plugin_data.plugin_name == "text":
          texts[(v.tag, event.step)] = value.item().decode()
        else:
          scalars[(v.tag, event.step)] = float(value)
  return scalars, texts


def test_resume_extends_and_refuses_conflicts(tmp_path):
  d = str(tmp_path / "s")
  run_search(d, tiny_config(trials=3), show_progress=False)
  with pytest.raises(ValueError, match=r"--target_flops: stored 30000000.0, given 50000000.0"):
    run_search(d, tiny_config(trials=3, target_flops=50e6), show_progress=False)
  with pytest.raises(ValueError, match=r"--controller: stored 'evolution', given 'random'"):
    run_search(d, tiny_config(trials=3, controller="random", controller_hparams=()), show_progress=False)
  summary = run_search(d, tiny_config(trials=6), show_progress=False)  # --trials may be raised
  assert summary.trials == 6
  assert sorted(r["trial"] for r in fileio.read_jsonl(os.path.join(d, "trials.jsonl"))) == list(range(6))


def test_failed_children_are_recorded_and_the_search_goes_on(tmp_path):
  # A learning rate this large makes every child's loss overflow to NaN/Inf.
  task = TINY_TASK.replace(learning_rate=1e30, lr_schedule="constant", warmup_fraction=0.0)
  d = str(tmp_path / "s")
  summary = run_search(d, tiny_config(task=task, trials=3, controller="random", controller_hparams=()),
                       show_progress=False)
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert summary.trials == 3 and len(trials) == 3
  assert {r["status"] for r in trials} <= {"failed", "cached"}
  assert all(r["reward"] == 0.0 for r in trials)
  assert any(r["error"] for r in trials)


def test_timed_out_children_get_reward_0_and_the_search_goes_on(tmp_path):
  task = TINY_TASK.replace(timeout_s=1e-3)  # over before the first step ends
  d = str(tmp_path / "s")
  summary = run_search(d, tiny_config(task=task, trials=2, trials_per_update=2, controller="random",
                                      controller_hparams=()), show_progress=False)
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert summary.trials == 2 and summary.updates == 1
  assert [(r["trial"], r["status"], r["reward"]) for r in trials] == [(0, "timeout", 0.0),
                                                                      (1, "timeout", 0.0)]
  assert all(r["error"].startswith("timeout_s=0.001 reached after") for r in trials)
  assert [u["mean_reward"] for u in fileio.read_jsonl(os.path.join(d, "updates.jsonl"))] == [0.0]
  assert fileio.read_json(os.path.join(d, "pareto.json"))["front"] == []


def test_duplicate_architectures_are_cached_not_retrained(tmp_path):
  # A space with one point: every trial after the first is the same architecture.
  d = str(tmp_path / "s")
  import search_space
  from search_space import space as space_lib
  one = space_lib.SearchSpace(stages=tuple(
      space_lib.StageSpace(stride=s, kernel=(3,), expansion=(1,), se_ratio=(0.0,), skip=("identity",),
                           repeats=(1,), filters=(8,)) for s in (1, 2)), stem_filters=8, head_filters=16,
      resolution=32, name="one")
  search_space.SPACES["one"] = lambda: one
  try:
    run_search(d, tiny_config(space="one", controller="random", controller_hparams=(), trials=5),
               show_progress=False)
  finally:
    del search_space.SPACES["one"]
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert [r["status"] for r in trials] == ["ok", "cached", "cached", "cached", "cached"]
  assert [r["cached_from"] for r in trials] == [None, 0, 0, 0, 0]
  assert len({r["reward"] for r in trials}) == 1
  assert all(r["train_seconds"] == 0.0 for r in trials[1:])


def test_choices_that_build_the_same_proxy_network_are_scored_once(tmp_path):
  # Filters 24 and 32 both round to 8 channels at proxy width 0.25: the second choice is the
  # same trained network, so it is cached from the first, with its own deploy FLOPs and reward.
  d = str(tmp_path / "s")
  import search_space
  from search_space import space as space_lib
  two = space_lib.SearchSpace(stages=(
      space_lib.StageSpace(stride=1, kernel=(3,), expansion=(1,), se_ratio=(0.0,), skip=("identity",),
                           repeats=(1,), filters=(24, 32)),
      space_lib.StageSpace(stride=2, kernel=(3,), expansion=(1,), se_ratio=(0.0,), skip=("identity",),
                           repeats=(1,), filters=(16,))), stem_filters=8, head_filters=16,
      resolution=32, name="two")
  search_space.SPACES["two"] = lambda: two
  try:
    run_search(d, tiny_config(space="two", controller="random", controller_hparams=(), trials=8,
                              trials_per_update=4), show_progress=False)
  finally:
    del search_space.SPACES["two"]
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert [r["status"] for r in trials].count("ok") == 1  # one network trained, whatever was sampled
  first = trials[0]
  for r in trials[1:]:
    assert r["status"] == "cached" and r["cached_from"] == 0 and r["accuracy"] == first["accuracy"]
  by_filters = {r["blocks"][0]: r for r in trials}
  assert len(by_filters) == 2, "the random controller never sampled both filter choices"
  small, large = by_filters["r1_k3_s11_e1_i8_o24"], by_filters["r1_k3_s11_e1_i8_o32"]
  assert small["flops"] < large["flops"] and small["reward"] != large["reward"]
  import rewards
  for r in (small, large):
    assert r["reward"] == pytest.approx(rewards.compute("mnas", r["accuracy"], r["flops"], 30e6, None))
  # The cheaper choice, trained or cached, is the best and the only point of the front.
  assert fileio.read_json(os.path.join(d, "best.json"))["reward"] == small["reward"] > large["reward"]
  front = fileio.read_json(os.path.join(d, "pareto.json"))
  front = front["front"] if isinstance(front, dict) else front
  assert {tuple(p["blocks"]) for p in front} == {tuple(small["blocks"])}


def _kill_and_resume(tmp_path, controller_flags, kill_points):
  """Runs the CLI search uninterrupted, and again killed at each point then resumed."""
  ref = str(tmp_path / "ref")
  # The uninterrupted run goes on beside the killed ones (the machine has cores to spare).
  reference = start_launch("search", f"--search_dir={ref}", *TINY_FLAGS, *controller_flags)
  crashed = str(tmp_path / "crashed")
  try:
    for point in kill_points:
      p = run_cli("search", f"--search_dir={crashed}", *TINY_FLAGS, *controller_flags,
                  env={FAULTS_ENV: point})
      assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stderr[-3000:])
  finally:
    _, stderr = reference.communicate(timeout=600)
  assert reference.returncode == 0, stderr[-3000:]
  p = run_cli("search", f"--search_dir={crashed}", *TINY_FLAGS, *controller_flags)
  assert p.returncode == 0, p.stderr[-3000:]
  got = trial_essence(os.path.join(crashed, "trials.jsonl"))
  want = trial_essence(os.path.join(ref, "trials.jsonl"))
  # No lost or duplicated trial, and the same architectures and rewards as the uninterrupted run.
  assert [t[0] for t in got] == list(range(len(want)))
  assert got == want
  updates = fileio.read_jsonl(os.path.join(crashed, "updates.jsonl"))
  assert [u["update"] for u in updates] == sorted({t[6] for t in want})
  # The controller learned the same: each update's loss and entropy as in the uninterrupted run.
  ref_updates = fileio.read_jsonl(os.path.join(ref, "updates.jsonl"))
  assert len(updates) == len(ref_updates)
  for u, v in zip(updates, ref_updates):
    assert u == pytest.approx(v, rel=1e-6)
  return crashed


COMMON = ["--trials=6", "--trials_per_update=3", "--seed=5", "--deterministic"]


@pytest.mark.slow  # the default suite kills a search at child_trained (here and in test_multi_fidelity) and at checkpoint_saved
def test_sigkill_at_three_points_then_resume_equals_uninterrupted_run(tmp_path):
  flags = COMMON + ["--controller=evolution", "--controller_hparams=population_size=4,tournament_size=2"]
  # During training (a child trained but not stored), during the controller update (updated in
  # memory, not checkpointed), and right after a checkpoint.
  _kill_and_resume(tmp_path, flags, ["child_trained:2", "controller_updated:1", "checkpoint_saved:1"])


def test_sigkill_mid_update_then_resume_with_small_ppo_equals_uninterrupted_run(tmp_path):
  # PPO, the default controller, killed after its first update and checkpoint, while the second
  # child was trained but not stored: the resume restores the checkpoint (weights and RNG), must
  # sample that child again exactly, train it, and make the same second update.
  flags = ["--trials=2", "--trials_per_update=1", "--seed=5", "--deterministic", "--controller=ppo",
           "--controller_hparams=lstm_size=16,num_epochs=1", "--proxy_train_images=64"]
  d = _kill_and_resume(tmp_path, flags, ["child_trained:2"])
  trials = sorted(fileio.read_jsonl(os.path.join(d, "trials.jsonl")), key=lambda r: r["trial"])
  updates = fileio.read_jsonl(os.path.join(d, "updates.jsonl"))
  import math

  import search_space
  uniform = sum(math.log(a) for a in search_space.get_space("micro").arities)
  for u, r in zip(updates, trials):
    assert u["mean_reward"] == r["reward"]
    assert math.isfinite(u["loss"]) and 0.0 < u["entropy"] <= uniform
  # The moving-average baseline (decay 0.9) starts at the first batch's mean, then moves:
  # update 1 subtracts 0.9 * r0 + 0.1 * r0 = r0.
  r0 = trials[0]["reward"]
  assert [u["baseline"] for u in updates] == pytest.approx([r0, r0])


@pytest.mark.slow
def test_sigkill_resume_with_ppo_equals_uninterrupted_run(tmp_path):
  _kill_and_resume(tmp_path, COMMON + ["--controller=ppo"],
                   ["child_trained:2", "controller_updated:1", "checkpoint_saved:1"])


@pytest.mark.parametrize("flag, fragment", [
    ("--controller=bogus", "--controller='bogus' is invalid; allowed: ppo"),
    ("--reward=bogus", "--reward='bogus' is invalid; allowed: mnas"),
    ("--backend=bogus", "--backend=bogus is invalid; allowed: auto, inline, process, ray"),
    ("--dataset=bogus", "bogus"),
    ("--target_flops=-5", "--target_flops=-5.0 is invalid"),
    ("--trials=0", "--trials=0 is invalid; allowed: an integer >= 1"),
    ("--search_space=huge", "--search_space='huge' is invalid; allowed: default, micro"),
])
def test_bad_search_flags_give_clear_errors(tmp_path, flag, fragment):
  p = run_cli("search", f"--search_dir={tmp_path / 's'}", *TINY_FLAGS, flag)
  assert p.returncode == 2, p.stderr[-2000:]
  assert fragment in p.stderr and "Traceback" not in p.stderr
  assert not os.path.exists(tmp_path / "s" / "trials.jsonl")


def test_bad_controller_hparam_writes_nothing(tmp_path):
  d = tmp_path / "s"
  with pytest.raises(ValueError, match="unknown hparam 'bogus' for controller 'evolution'"):
    run_search(str(d), tiny_config(controller_hparams=(("bogus", 1),)), show_progress=False)
  assert not (d / "params.json").exists()


def test_trial_seeds_are_distinct_and_cover_references():
  seeds = [trial_seed(0, t) for t in range(-3, 100)]
  assert len(set(seeds)) == len(seeds)
  assert all(0 <= s < 2 ** 31 - 1 for s in seeds)
  assert trial_seed(0, 5) != trial_seed(1, 5)
  # Fixed values, not just per-process consistency: a resumed search (a new process, maybe another
  # machine) must give trial t the seed it had, so these may never change.
  assert [trial_seed(0, 0), trial_seed(0, 5), trial_seed(0, -1), trial_seed(1, 5)] == [
      821328063, 1387925762, 901243215, 60518626]


@pytest.mark.slow  # default-suite time: latency costs are checked in tests/test_latency.py
def test_latency_cost_search_records_measured_latency(tmp_path):
  import rewards
  cfg = tiny_config(trials=2, trials_per_update=2, cost="latency", target_latency_ms=0.5,
                    target_flops=None, cost_resolution=32, latency_cache_dir=str(tmp_path / "lut"),
                    controller="random", controller_hparams=())
  run_search(str(tmp_path / "s"), cfg, show_progress=False)
  trials = fileio.read_jsonl(str(tmp_path / "s" / "trials.jsonl"))
  assert len(trials) == 2
  for r in trials:
    assert r["latency_ms"] > 0
    assert r["reward"] == pytest.approx(rewards.mnas(r["accuracy"], r["latency_ms"], 0.5))
  assert os.listdir(tmp_path / "lut")  # the lookup table was cached on disk


def test_latency_cost_needs_its_target():
  with pytest.raises(ValueError, match="target_latency_ms=None is invalid for cost=latency"):
    tiny_config(cost="latency")


def test_auto_backend_packs_the_cores_and_records_its_choice(monkeypatch):
  monkeypatch.setattr(backends, "available_cores", lambda: 2)
  config = SearchConfig(strategy="cpu").resolved()  # the defaults: backend auto, workers 0
  assert (config.backend, config.workers, config.threads_per_worker) == ("process", 2, 1)
  params = config.to_params()
  assert (params["backend"], params["workers"], params["backend_requested"],
          params["threads_per_worker"]) == ("process", 2, "auto", 1)
  # An explicit choice is kept as given; a given worker count caps auto.
  assert SearchConfig(backend="inline", workers=1).resolved().backend_requested is None
  capped = SearchConfig(strategy="cpu", workers=1).resolved()
  assert (capped.backend, capped.workers, capped.backend_requested) == ("inline", 1, "auto")
  with pytest.raises(ValueError, match="workers=-1 is invalid; allowed: an integer >= 0"):
    SearchConfig(workers=-1)


def _events(folder):
  """(tag, plugin name, summary value) of every value in the event files of `folder` (not below)."""
  import tensorflow as tf
  out = []
  for name in sorted(os.listdir(folder)):
    if name.startswith("events."):
      for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
        out += [(v.tag, v.metadata.plugin_data.plugin_name, v) for v in event.summary.value]
  return out


def test_tensorboard_hparams_has_the_experiment_once_and_a_run_per_trial(tmp_path):
  import tensorflow as tf
  from tensorboard.plugins.hparams import plugin_data_pb2

  import search_space
  d = str(tmp_path / "s")
  run_search(d, tiny_config(trials=2, trials_per_update=2), show_progress=False)
  logdir = os.path.join(d, "tb", "hparams")
  (experiment,) = [v for tag, plugin, v in _events(logdir) if plugin == "hparams"]
  data = plugin_data_pb2.HParamsPluginData.FromString(experiment.metadata.plugin_data.content)
  space = search_space.get_space("micro")
  assert [h.name for h in data.experiment.hparam_infos] == [dec.name for dec in space.decisions]
  assert [m.name.tag for m in data.experiment.metric_infos] == ["reward", "accuracy", "flops", "params",
                                                                "budget"]
  trials = {r["trial"]: r for r in fileio.read_jsonl(os.path.join(d, "trials.jsonl"))}
  assert sorted(os.listdir(logdir))[-2:] == [f"trial-{t:05d}" for t in range(2)]
  for t, rec in trials.items():
    values = _events(os.path.join(logdir, f"trial-{t:05d}"))
    (start,) = [v for tag, plugin, v in values if plugin == "hparams"]
    info = plugin_data_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info
    chosen = {dec.name: dec.options[i] for dec, i in zip(space.decisions, rec["indices"])}
    got = {k: (v.number_value if v.HasField("number_value") else v.string_value if v.HasField("string_value")
               else v.bool_value) for k, v in info.hparams.items()}
    assert got == pytest.approx(chosen)
    scalars = {tag: float(tf.make_ndarray(v.tensor)) for tag, plugin, v in values if plugin == "scalars"}
    assert scalars == pytest.approx({"reward": rec["reward"], "accuracy": rec["accuracy"],
                                     "flops": rec["flops"], "params": rec["params"], "budget": 1.0})
  # A resume writes neither the experiment nor a trial's run a second time.
  run_search(d, tiny_config(trials=2, trials_per_update=2), show_progress=False)
  assert len([1 for _, plugin, _ in _events(logdir) if plugin == "hparams"]) == 1
  assert len(_events(os.path.join(logdir, "trial-00000"))) == 6


def test_scored_trials_keep_other_networks_cached_and_drop_exact_repeats():
  from mnas_search.search.recorder import scored_trials
  ok = {"trial": 0, "status": "ok", "blocks": ["a"], "arch": {"name": "trial-0"}}
  repeat = {"trial": 1, "status": "cached", "cached_from": 0, "blocks": ["a"], "arch": {"name": "trial-1"}}
  other = {"trial": 2, "status": "cached", "cached_from": 0, "blocks": ["b"], "arch": {"name": "trial-2"}}
  failed = {"trial": 3, "status": "failed", "blocks": ["c"], "arch": {"name": "trial-3"}}
  by_trial = {r["trial"]: r for r in (ok, repeat, other, failed)}
  assert [r["trial"] for r in scored_trials(by_trial)] == [0, 2]
