"""Tests for mnas_search.search.oneshot.search: the directory it writes, finalists, export, SIGKILL resume."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import launch
import rewards
import search_space
from mnas_search.search.oneshot import search as oneshot
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio
from mnas_search.util.faults import FAULTS_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 128 training images in batches of 32: 4 steps per epoch.
TASK = ProxyTask(dataset="synthetic", resolution=16, train_images=128, val_images=64, epochs=1,
                 batch_size=32, proxy_width=0.5, seed=3)  # the CLI's --seed sets both seeds
CONFIG = dict(space="micro", task=TASK, target_flops=30e6, references=(), oneshot_epochs=2,
              oneshot_top_k=1, checkpoint_every=3, seed=3)


def test_config_checks_and_controller_defaults():
  c = oneshot.OneShotConfig(**CONFIG)
  assert c.hparams == (("baseline_decay", 0.95), ("learning_rate", 0.01))
  assert oneshot.OneShotConfig(**CONFIG, controller_hparams=(("learning_rate", 0.3),)).hparams \
      == (("baseline_decay", 0.95), ("learning_rate", 0.3))
  assert c.to_params()["controller_hparams"] == {"baseline_decay": 0.95, "learning_rate": 0.01}
  params = c.to_params()
  assert (params["mode"], params["reward"], params["oneshot_warmup_fraction"]) == ("oneshot", "abs", 0.25)
  with pytest.raises(ValueError, match="controller='evolution' is invalid for a one-shot search"):
    oneshot.OneShotConfig(**CONFIG, controller="evolution")
  with pytest.raises(ValueError, match=r"oneshot_warmup_fraction=1.0 is invalid; allowed: a number in \[0, 1\)"):
    oneshot.OneShotConfig(**CONFIG, oneshot_warmup_fraction=1.0)
  with pytest.raises(ValueError, match="cost='latency' is invalid for a one-shot search"):
    oneshot.OneShotConfig(**CONFIG, cost="latency")


def test_select_finalists_most_likely_then_most_sampled():
  space = search_space.get_space("micro")
  probs = [[0.1, 0.9] if a == 2 else [0.2, 0.5, 0.3] if a == 3 else [1.0] for a in space.arities]
  ml = oneshot.most_likely(probs)
  a, b, c = [1] * 5 + [0] + [0] * 12, [0] * 18, [0] * 6 + [1] * 12
  counts = {json.dumps(list(ml)): [1, 9], json.dumps(a): [3, 5], json.dumps(b): [3, 8],
            json.dumps(c): [2, 9]}
  got = oneshot.select_finalists(space, probs, counts, top_k=2)
  assert [(f["trial"], f["source"], f["count"]) for f in got] == [(0, "most_likely", 1), (1, "sampled", 3),
                                                                 (2, "sampled", 3)]
  assert [f["indices"] for f in got] == [list(ml), b, a]  # ties: the latest sampled first


# `launch.py search --mode=oneshot` flags that give CONFIG (checkpoint_every may change on a resume).
CLI_FLAGS = ["--mode=oneshot", "--search_space=micro", "--dataset=synthetic", "--proxy_resolution=16",
             "--proxy_train_images=128", "--proxy_val_images=64", "--proxy_epochs=1",
             "--proxy_batch_size=32", "--proxy_width=0.5", "--target_flops=30e6", "--references=",
             "--oneshot_epochs=2", "--oneshot_top_k=1", "--seed=3", "--noprogress"]


@pytest.mark.slow  # default-suite time: the SIGKILL test below runs the same search to its end
def test_oneshot_search_writes_the_search_directory_contract(tmp_path, capsys):
  d = str(tmp_path / "s")
  summary = oneshot.run_oneshot(d, oneshot.OneShotConfig(**CONFIG), show_progress=False)
  assert (summary.steps, summary.controller_steps) == (8, 6)  # 2 warm-up steps of 8
  log = fileio.read_jsonl(os.path.join(d, "oneshot.jsonl"))
  assert [r["step"] for r in log] == list(range(2, 8))
  assert [r["controller_step"] for r in log] == list(range(6))
  space = search_space.get_space("micro")
  for r in log:
    assert [len(p) for p in r["probabilities"]] == list(space.arities)
    assert all(abs(sum(p) - 1) < 1e-3 for p in r["probabilities"])
    arch = space.decode(r["indices"][0])
    assert r["cost"] == search_space.count_flops(arch, 224, 1000)
    assert r["reward"] == pytest.approx(rewards.abs_reward(r["accuracy"], r["cost"], 30e6))
  finalists = fileio.read_json(os.path.join(d, "finalists.json"))["finalists"]
  assert finalists[0]["source"] == "most_likely"
  assert finalists[0]["indices"] == list(oneshot.most_likely(log[-1]["probabilities"]))
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert [t["trial"] for t in trials] == [0, 1]
  for t, f in zip(trials, finalists):
    assert t["indices"] == f["indices"] and t["status"] == "ok"
    arch = search_space.Architecture.from_dict(t["arch"])
    assert t["flops"] == search_space.count_flops(arch, 224, 1000)
    assert t["reward"] == pytest.approx(rewards.abs_reward(t["accuracy"], t["flops"], 30e6))
    assert set(t) >= {"trial", "arch", "blocks", "indices", "flops", "params", "accuracy", "reward",
                      "status", "error", "train_seconds", "update", "seed"}
  best = fileio.read_json(os.path.join(d, "best.json"))
  assert best["reward"] == max(t["reward"] for t in trials)
  assert fileio.read_json(os.path.join(d, "params.json"))["mode"] == "oneshot"
  assert os.listdir(os.path.join(d, "tb"))
  # export, scale and train read the directory unchanged.
  from mnas_search.analysis import export
  from mnas_search.cli.common import resolve_arch
  entries = export.export_search(d, str(tmp_path / "export"), top_k=2, options=export.ExportOptions(formats=("json",)))
  assert len(entries) == 2
  assert resolve_arch(d).block_strings == best["blocks"]
  from mnas_search.analysis.oneshot_plot import write_oneshot_plot
  assert os.path.getsize(write_oneshot_plot(d)) > 0
  # The CLI too: scale takes the directory as its baseline (its best), report adds oneshot.png.
  family_dir = str(tmp_path / "family")
  launch.run_command("scale", ["launch.py", f"--baseline={d}", f"--out={family_dir}"], flags.FlagValues())
  family = fileio.read_json(os.path.join(family_dir, "family.json"))
  assert search_space.Architecture.from_dict(family["baseline"]).block_strings == best["blocks"]
  assert len(family["members"]) == 8  # the paper's B0-B7 rows
  launch.run_command("report", ["launch.py", f"--search_dir={d}"], flags.FlagValues())
  assert sorted(os.listdir(os.path.join(d, "report"))) == [
      "accuracy_flops.png", "oneshot.png", "reward.png", "summary.md"]
  # `search --mode=oneshot` with the same settings resumes the finished search: nothing is added.
  capsys.readouterr()
  launch.run_command("search", ["launch.py", f"--search_dir={d}", *CLI_FLAGS, "--json"], flags.FlagValues())
  out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert (out["mode"], out["steps"], out["controller_steps"]) == ("oneshot", 8, 6)
  assert [f["trial"] for f in out["finalists"]] == [0, 1]
  assert out["best"]["reward"] == best["reward"] and out["references"] == {}
  assert len(fileio.read_jsonl(os.path.join(d, "trials.jsonl"))) == 2


# One finalist (oneshot_top_k=0): each stand-alone training costs about as much CPU as the whole
# supernet phase, and one is enough to be killed mid-training and redone once.
SIGKILL_CONFIG = dict(CONFIG, oneshot_top_k=0)
SCRIPT = """
import sys
from mnas_search.training.proxy import ProxyTask
from mnas_search.search.oneshot.search import OneShotConfig, run_oneshot
task = ProxyTask(dataset="synthetic", resolution=16, train_images=128, val_images=64, epochs=1,
                 batch_size=32, proxy_width=0.5, seed=3)
run_oneshot(sys.argv[1], OneShotConfig(space="micro", task=task, target_flops=30e6, references=(),
                                       oneshot_epochs=2, oneshot_top_k=0, checkpoint_every=3, seed=3),
            show_progress=False)
"""


def _run(d, kill=None):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop(FAULTS_ENV, None)
  if kill:
    env[FAULTS_ENV] = kill
  return subprocess.run([sys.executable, "-c", SCRIPT, d], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def test_sigkill_mid_search_and_mid_finalists_resumes_and_finishes(tmp_path):
  d = str(tmp_path / "s")
  # Killed at step 5 (checkpoint at step 3), then while the finalist is trained but not stored.
  for kill in ("oneshot_step:6", "child_trained:1"):
    p = _run(d, kill)
    assert p.returncode == -signal.SIGKILL, (kill, p.returncode, p.stderr[-3000:])
    if kill.startswith("oneshot_step"):
      state = fileio.read_json(os.path.join(d, "oneshot_ckpt",
                                            fileio.read_json(os.path.join(d, "oneshot_ckpt", "LATEST"))
                                            ["checkpoint"], "state.json"))
      assert state["step"] == 3
      assert [r["step"] for r in fileio.read_jsonl(os.path.join(d, "oneshot.jsonl"))] == [2, 3, 4, 5]
  assert not os.path.exists(os.path.join(d, "trials.jsonl"))  # killed before it was stored
  # The same command resumes (in this process: a fresh start reads only the directory).
  config = oneshot.OneShotConfig(**SIGKILL_CONFIG)
  oneshot.run_oneshot(d, config, show_progress=False)
  log = fileio.read_jsonl(os.path.join(d, "oneshot.jsonl"))
  assert [r["step"] for r in log] == list(range(2, 8))  # steps past the checkpoint were redone once
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert [t["trial"] for t in trials] == [0]  # the finalist neither lost nor scored twice
  finalists = fileio.read_json(os.path.join(d, "finalists.json"))["finalists"]
  assert [t["indices"] for t in trials] == [f["indices"] for f in finalists]
  assert [f["source"] for f in finalists] == ["most_likely"]
  oneshot.run_oneshot(d, config, show_progress=False)  # a finished search run again adds nothing
  assert len(fileio.read_jsonl(os.path.join(d, "trials.jsonl"))) == 1


def test_the_small_image_geometry_is_refused_for_a_one_shot_search():
  # The supernet's stem has stride 2: its finalists would train in another geometry than it.
  from mnas_search.search.oneshot.search import OneShotConfig
  from mnas_search.training.proxy import ProxyTask
  with pytest.raises(ValueError, match="stem_stride=1 is invalid for a one-shot search; allowed: 2"):
    OneShotConfig(task=ProxyTask(stem_stride=1))


def test_a_zero_init_residual_search_runs_resumes_and_is_recorded(tmp_path):
  config = oneshot.OneShotConfig(**dict(CONFIG, oneshot_epochs=1, oneshot_top_k=0), zero_init_residual=True)
  d = str(tmp_path / "s")
  summary = oneshot.run_oneshot(d, config, show_progress=False)
  assert summary.steps == 4 and len(summary.finalists) == 1
  assert fileio.read_json(os.path.join(d, "params.json"))["zero_init_residual"] is True
  # Its checkpoint holds the extra projection BNs: a supernet built the same way loads it.
  search = oneshot.OneShotSearch(d, config, show_progress=False)
  search.build()
  from controller import base as controller_base
  folder = controller_base.latest_checkpoint(os.path.join(d, oneshot.CHECKPOINT_DIR))
  search.runner.load_weights(os.path.join(folder, "weights.npz"))
  assert any(b.private_skip for b in search.runner.net.blocks)


def test_sandwich_training_runs_and_is_recorded(tmp_path):
  config = oneshot.OneShotConfig(**dict(CONFIG, oneshot_epochs=1, oneshot_top_k=0), path_rule="sandwich",
                                 paths_per_step=3, oneshot_warmup_fraction=0.0)
  summary = oneshot.run_oneshot(str(tmp_path / "s"), config, show_progress=False)
  assert summary.steps == 4 and len(summary.finalists) == 1
  params = fileio.read_json(str(tmp_path / "s" / "params.json"))
  assert (params["path_rule"], params["paths_per_step"]) == ("sandwich", 3)
  steps = fileio.read_jsonl(str(tmp_path / "s" / "oneshot.jsonl"))
  assert [r["step"] for r in steps] == [0, 1, 2, 3] and all(np.isfinite(r["loss"]) for r in steps)
