"""Tests of mnas_search.analysis.fidelity and `launch.py fidelity`: selection, the longer task, a tiny run."""

import math
import os

import pytest
from png_check import colored_pixels

import search_space
from launch_cli import run_launch
from mnas_search.analysis import fidelity
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio, stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = search_space.get_space("micro")
TASK = ProxyTask(dataset="synthetic:size=16,channels=1,classes=4,train=400,test=10", resolution=16,
                 train_images=128, val_images=64, epochs=1, batch_size=64, proxy_width=0.25,
                 timeout_s=300.0)


def _arch(i):
  """A distinct micro architecture per i (the first decision's options, then the second's...)."""
  indices = [0] * len(SPACE.arities)
  for d, arity in enumerate(SPACE.arities):
    if arity > 1 and i:
      indices[d] = i % arity
      i //= arity
  return SPACE.decode(indices, name="x")


def _trial(trial, reward, status="ok", arch=None, accuracy=None):
  arch = arch if arch is not None else _arch(trial)
  return {"trial": trial, "arch": arch.to_dict(), "blocks": arch.block_strings, "flops": 1000 + trial,
          "params": 10 + trial, "accuracy": reward if accuracy is None else accuracy,
          "reward": reward, "status": status, "error": None, "train_seconds": 1.0, "update": 0,
          "seed": 100 + trial, "cached_from": None}


# Ten trials: 3 failed, 5 a cached repeat of trial 1, and 7 the same network as 2 with a lower
# reward. Distinct ok trials by reward: 4 (.9), 1 (.8), 8 (.7), 2 (.6), 0 (.5), 9 (.4), 6 (.3).
HAND_MADE = [_trial(0, 0.5), _trial(1, 0.8), _trial(2, 0.6), _trial(3, 0.0, "failed"),
             _trial(4, 0.9), dict(_trial(5, 0.8, "cached", _arch(1)), cached_from=1),
             _trial(6, 0.3), _trial(7, 0.55, arch=_arch(2)), _trial(8, 0.7), _trial(9, 0.4)]


def test_distinct_ok_trials_by_reward():
  assert [r["trial"] for r in fidelity.distinct_ok_trials(HAND_MADE)] == [4, 1, 8, 2, 0, 9, 6]


def test_group_sizes():
  assert [fidelity.group_sizes(k) for k in (2, 3, 4, 5, 6, 7)] == [
      (1, 1, 0), (1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (3, 2, 2)]


@pytest.mark.parametrize("k, expected", [
    (3, [("top", 4), ("middle", 2), ("bottom", 6)]),               # ranks 0 | 3 | 6
    (4, [("top", 4), ("top", 1), ("middle", 2), ("bottom", 6)]),   # ranks 0,1 | 3 | 6
    (5, [("top", 4), ("top", 1), ("middle", 8), ("middle", 2), ("bottom", 6)]),  # middle 2,3
    (6, [("top", 4), ("top", 1), ("middle", 8), ("middle", 2), ("bottom", 9), ("bottom", 6)]),
    (7, [("top", 4), ("top", 1), ("top", 8), ("middle", 2), ("middle", 0), ("bottom", 9),
         ("bottom", 6)]),
    (20, [("top", 4), ("top", 1), ("top", 8), ("middle", 2), ("middle", 0), ("bottom", 9),
          ("bottom", 6)]),  # more than there are: all of them
])
def test_select_top_middle_bottom_is_exact(k, expected):
  assert [(g, r["trial"]) for g, r in fidelity.select_trials(HAND_MADE, k)] == expected


def test_select_bad_input():
  with pytest.raises(ValueError, match="sample=1 is invalid; allowed: an integer >= 2"):
    fidelity.select_trials(HAND_MADE, 1)
  with pytest.raises(ValueError, match=r"has 1 distinct trial\(s\) with status ok"):
    fidelity.select_trials([HAND_MADE[1], HAND_MADE[5], HAND_MADE[3]], 3)  # ok, cached, failed


def test_longer_task():
  long = fidelity.longer_task(TASK)
  assert (long.epochs, long.steps, long.timeout_s, long.train_images) == (4, None, None, 128)
  assert fidelity.longer_task(TASK, epochs=7, train_images=256).to_dict() == TASK.replace(
      epochs=7, train_images=256, timeout_s=None).to_dict()
  stepped = TASK.replace(steps=50)
  assert (fidelity.longer_task(stepped).steps, fidelity.longer_task(stepped, epochs=3).steps) == (
      200, None)
  assert fidelity.longer_task(TASK, timeout_s=60.0, batch_size=32).timeout_s == 60.0


def test_correlations_skip_failed_and_constant():
  rows = [{"status": "ok", "proxy_accuracy": p, "accuracy": a}
          for p, a in ((0.5, 0.6), (0.7, 0.8), (0.6, 0.9))]
  c = fidelity.correlations(rows + [{"status": "failed", "proxy_accuracy": 0.9, "accuracy": 0.0}])
  assert c == {"n": 3, "kendall_tau": round(1 / 3, 6), "spearman_rho": 0.5}
  flat = [dict(r, accuracy=0.5) for r in rows]
  assert fidelity.correlations(flat) == {"n": 3, "kendall_tau": None, "spearman_rho": None}


def _search_dir(path, n=4):
  fileio.atomic_write_json(os.path.join(path, "params.json"), {"task": TASK.to_dict()})
  for i in range(n):
    fileio.append_jsonl(os.path.join(path, "trials.jsonl"),
                        _trial(i, 0.9 - 0.1 * i, accuracy=0.5 + 0.1 * (i % 2)))
  return path


def test_tiny_run_writes_the_files_and_resumes(tmp_path):
  search = _search_dir(str(tmp_path / "search"))
  config = fidelity.FidelityConfig(sample=3, task=fidelity.longer_task(TASK, epochs=2))
  s = fidelity.run_fidelity(search, config)
  out = os.path.join(search, "fidelity")
  assert sorted(os.listdir(out)) == [".lock", "fidelity.json", "fidelity.jsonl", "fidelity.png",
                                     "params.json"]
  assert colored_pixels(os.path.join(out, "fidelity.png")) > 150  # the three trials' points
  records = fileio.read_jsonl(os.path.join(out, "fidelity.jsonl"))
  assert [(r["group"], r["trial"], r["seed"], r["proxy_accuracy"]) for r in records] == [
      ("top", 0, 100, 0.5), ("middle", 1, 101, 0.6), ("bottom", 3, 103, 0.6)]
  assert all(r["status"] == "ok" and 0 <= r["accuracy"] <= 1 for r in records)
  summary = fileio.read_json(os.path.join(out, "fidelity.json"))
  assert summary["trials"] == records and (summary["n"], summary["selected"]) == (3, 3)
  x, y = [r["proxy_accuracy"] for r in records], [r["accuracy"] for r in records]
  for key, fn in (("kendall_tau", stats.kendall_tau), ("spearman_rho", stats.spearman)):
    v = fn(x, y)
    assert summary[key] == (None if math.isnan(v) else round(v, 6))
  assert summary["long_task"]["epochs"] == 2 and summary["proxy_task"] == TASK.to_dict()
  assert s["trained"] == 3
  # A second run retrains nothing; other settings are refused.
  assert fidelity.run_fidelity(search, config)["trained"] == 0
  with pytest.raises(ValueError, match="--sample: stored 3, given 2"):
    fidelity.run_fidelity(search, fidelity.FidelityConfig(sample=2, task=config.task))


def test_read_search_needs_a_task(tmp_path):
  search = _search_dir(str(tmp_path / "s"))
  fileio.atomic_write_json(os.path.join(search, "params.json"), {"controller": "random"})
  with pytest.raises(ValueError, match="has no 'task' object"):
    fidelity.read_search(search)


def _launch(*args):
  return run_launch("fidelity", *args)


def test_cli_bad_input(tmp_path):
  search = _search_dir(str(tmp_path / "s"))
  for args, message in (
      (["--sample=3"], "error: --search_dir=DIR is required"),
      ([f"--search_dir={search}"], "error: --sample=K is required"),
      ([f"--search_dir={search}", "--sample=3", "--proxy_epochs=9"],
       "error: --proxy_epochs is not taken by fidelity; allowed: --fidelity_epochs=N"),
      ([f"--search_dir={search}", "--sample=3", "--fidelity_epochs=0"],
       "error: --fidelity_epochs=0 is invalid"),
      ([f"--search_dir={search}", "--sample=3", "--proxy_batch_size=0"],
       "error: --proxy_batch_size=0 is invalid"),
      ([f"--search_dir={tmp_path}/none", "--sample=3"], "error: --search_dir="),
  ):
    r = _launch(*args)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(message), r.stderr
