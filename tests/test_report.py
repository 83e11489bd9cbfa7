"""Tests of mnas_search.analysis.report (readers, PNG plots, summary.md) and of `launch.py report`."""

import json
import os
import struct
import subprocess
import sys

import pytest
from png_check import colored_pixels

import search_space
from mnas_search.analysis import report
from mnas_search.runs import records
from mnas_search.scaling import family

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = search_space.named("efficientnet-b0").to_dict()


def _t(trial, status, reward, accuracy=None, flops=None, params=None):
  return {"trial": trial, "arch": ARCH, "blocks": ARCH["blocks"], "indices": [], "flops": flops,
          "params": params, "accuracy": accuracy, "reward": reward, "status": status,
          "error": "boom" if status == "failed" else None, "train_seconds": 2.0, "update": 0,
          "seed": 0}


# By hand: best is trial 2 (reward 0.84); the front is 5, 0, 2 (6 is beaten by 2 on every
# objective, 3 repeats 2 as a cached trial).
TRIALS = [
    _t(0, "ok", 0.82, 0.80, 300_000_000, 3_000_000),
    _t(1, "failed", 0.0),
    _t(2, "ok", 0.84, 0.85, 450_000_000, 5_000_000),
    _t(3, "cached", 0.84, 0.85, 450_000_000, 5_000_000),
    _t(4, "timeout", 0.0),
    _t(5, "ok", 0.80, 0.78, 200_000_000, 2_000_000),
    _t(6, "ok", 0.83, 0.84, 500_000_000, 6_000_000),
]
# As the search writes them: trial records with a placeholder trial number.
REFERENCES = {"efficientnet-b0": {**_t(-1, "ok", 0.8622, 0.86, 385_814_752, 5_330_564)},
              "mnasnet-a1": {**_t(-2, "ok", 0.8701, 0.855, 311_579_072, 3_920_526)}}
UPDATES = [{"update": u, "trials": 2 * (u + 1), "loss": 0.5, "entropy": 20.0 - u,
            "mean_reward": 0.5 + 0.1 * u} for u in range(3)]


def _write_jsonl(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _search_dir(tmp_path, updates=True, references=True, params=True):
  d = tmp_path / "search"
  d.mkdir()
  _write_jsonl(d / "trials.jsonl", TRIALS)
  if updates:
    _write_jsonl(d / "updates.jsonl", UPDATES)
  if references:
    (d / "references.json").write_text(json.dumps(REFERENCES))
  if params:
    (d / "params.json").write_text(json.dumps({"target_flops": 400e6, "reward": "mnas",
                                               "w": -0.07}))
  return d


def _png_size(path):
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
  return struct.unpack(">II", head[16:24])


def test_report_writes_pngs_of_the_expected_size(tmp_path):
  d = _search_dir(tmp_path)
  written = report.write_report(str(d))
  out = d / "report"
  assert written == {"reward": str(out / "reward.png"),
                     "accuracy_flops": str(out / "accuracy_flops.png"),
                     "controller": str(out / "controller.png"), "summary": str(out / "summary.md")}
  for name in ("reward", "accuracy_flops", "controller"):
    assert _png_size(written[name]) == (900, 550)
    assert colored_pixels(written[name]) > 150, name  # the data was drawn, not only axes


def test_summary_has_the_counts_best_references_and_front(tmp_path):
  d = _search_dir(tmp_path)
  text = open(report.write_report(str(d), str(tmp_path / "r"))["summary"]).read()
  lines = text.splitlines()
  assert ("Target T: 400,000,000 FLOPs (multiply-adds) (cost: flops); reward `mnas`, w = -0.07."
          in lines)
  assert "| 7 | 4 | 1 | 1 | 1 |" in lines
  assert ("Controller updates: 3 (last: update 2, entropy 18.0000, mean reward 0.7000).") in lines
  assert "| best | 2 | 450,000,000 | 5,000,000 | 0.8500 | 0.8400 | 1.000 | +0.0000 |" in lines
  # 450e6 / 385,814,752 = 1.1664; 0.85 - 0.86 = -0.01.
  assert ("| efficientnet-b0 | - | 385,814,752 | 5,330,564 | 0.8600 | 0.8622 | 1.166 | -0.0100 |"
          in lines)
  assert "| mnasnet-a1 | - | 311,579,072 | 3,920,526 | 0.8550 | 0.8701 | 1.444 | -0.0050 |" in lines
  assert "    r4_k5_s22_e6_i112_o192_se0.25" in lines
  i = lines.index("## Pareto front (accuracy ↑, flops ↓, params ↓; 3 of 5 successful trials)")
  assert lines[i + 4:i + 8] == ["| 5 | ok | 200,000,000 | 2,000,000 | 0.7800 | 0.8000 |",
                                "| 0 | ok | 300,000,000 | 3,000,000 | 0.8000 | 0.8200 |",
                                "| 2 | ok | 450,000,000 | 5,000,000 | 0.8500 | 0.8400 |", ""]
  assert lines[-3:] == ["![reward](reward.png)", "![accuracy_flops](accuracy_flops.png)",
                          "![controller](controller.png)"]


def test_optional_files_may_be_missing(tmp_path):
  d = _search_dir(tmp_path, updates=False, references=False, params=False)
  written = report.write_report(str(d))
  assert sorted(written) == ["accuracy_flops", "reward", "summary"]
  text = open(written["summary"]).read()
  assert "Target T" not in text
  assert "Controller updates: none recorded (no updates.jsonl)." in text
  assert "efficientnet-b0 |" not in text


def test_family_plot_and_table(tmp_path):
  d = _search_dir(tmp_path)
  fam = tmp_path / "family"
  base = search_space.named("efficientnet-b0")
  members = family.scale_family(base, "compound", phis=[1])
  family.write_family(str(fam), family.family_record(base, members, "compound", (1.2, 1.1, 1.15),
                                                     1000), members)
  (fam / "efficientnet-b0-phi1").mkdir()
  (fam / "efficientnet-b0-phi1" / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9}))
  written = report.write_report(str(d), family_dir=str(fam))
  assert _png_size(written["family"]) == (1200, 500)
  assert colored_pixels(written["family"]) > 150
  lines = open(written["summary"]).read().splitlines()
  ratio = members[1].flops / members[0].flops
  assert f"| efficientnet-b0-phi1 | 1 | {members[1].flops:,} | {ratio:.3f} | 2.000 | 0.9000 |" in lines
  assert f"| efficientnet-b0 | 0 | {members[0].flops:,} | 1.000 | 1.000 | - |" in lines


def test_read_family_refuses_bad_metrics(tmp_path):
  base = search_space.named("mobilenet-v2")
  members = family.scale_family(base, "compound", phis=[1])
  family.write_family(str(tmp_path), family.family_record(base, members, "compound",
                                                          (1.2, 1.1, 1.15), 1000), members)
  (tmp_path / "mobilenet-v2").mkdir()
  (tmp_path / "mobilenet-v2" / "metrics.json").write_text(json.dumps({"loss": 0.3}))
  with pytest.raises(ValueError, match=r"has none of the keys \['test_accuracy', 'accuracy'"):
    family.read_family(str(tmp_path))


def test_child_time_split_sums_trained_children_only():
  recs = [{"status": "ok", "fixed_seconds": 2.5, "steady_seconds": 10.0},
          {"status": "failed", "fixed_seconds": 1.0, "steady_seconds": 0.5},
          {"status": "cached", "fixed_seconds": 0.0, "steady_seconds": 0.0, "cached_from": 0},
          {"status": "ok", "train_seconds": 4.0}]  # an old record: no split
  assert report.child_time_split(recs) == (3.5, 10.5)
  assert report.child_time_split([]) == (0.0, 0.0)


def test_best_and_counts():
  assert records.best_by_reward(TRIALS)["trial"] == 2
  assert records.best_by_reward(TRIALS[1:2]) is None
  assert report.status_counts(TRIALS) == {"ok": 4, "failed": 1, "timeout": 1, "cached": 1}


@pytest.mark.parametrize("record, message", [
    ({"trial": 9, "status": "weird", "reward": 0.0}, r"\(trial 9\): status='weird' is invalid; "
     r"allowed: \['ok', 'failed', 'timeout', 'cached'\]"),
    ({"trial": "9", "status": "ok"}, "record 2: trial='9' is invalid"),
    (dict(_t(9, "ok", 0.5, None, 10, 10)), r"\(trial 9\): accuracy=None is invalid"),
    ({**_t(9, "ok", 0.5, 0.5, 10, 10), "arch": None}, r"arch=None is invalid"),
    ({"trial": 9, "status": "failed", "reward": None}, r"reward=None is invalid"),
])
def test_malformed_trials_are_refused(tmp_path, record, message):
  _write_jsonl(tmp_path / "trials.jsonl", [TRIALS[0], record, TRIALS[2]])
  with pytest.raises(ValueError, match=message):
    records.read_trials(str(tmp_path))


def test_torn_last_line_is_ignored_but_a_torn_middle_line_is_not(tmp_path):
  path = tmp_path / "trials.jsonl"
  good = json.dumps(TRIALS[0]) + "\n"
  path.write_text(good + '{"trial": 1, "sta')
  assert [r["trial"] for r in records.read_trials(str(tmp_path))] == [0]
  path.write_text('{"trial": 1, "sta\n' + good + good)
  with pytest.raises(ValueError, match="line 1 is not valid JSON"):
    records.read_trials(str(tmp_path))


def test_malformed_optional_files_are_refused(tmp_path):
  d = _search_dir(tmp_path)
  (d / "references.json").write_text(json.dumps({"efficientnet-b0": {"accuracy": "high"}}))
  with pytest.raises(ValueError, match=r"reference 'efficientnet-b0': accuracy='high' is invalid"):
    report.write_report(str(d))
  (d / "references.json").write_text(json.dumps(REFERENCES))
  _write_jsonl(d / "updates.jsonl", [{"update": 0, "entropy": "x"}, UPDATES[1]])
  with pytest.raises(ValueError, match=r"updates.jsonl record 1: entropy='x' is invalid"):
    report.write_report(str(d))
  _write_jsonl(d / "updates.jsonl", UPDATES)
  (d / "params.json").write_text(json.dumps({"target_flops": "400M"}))
  with pytest.raises(ValueError, match=r"params.json: target_flops='400M' is invalid"):
    report.write_report(str(d))
  (d / "params.json").write_text(json.dumps({"cost": "energy"}))
  with pytest.raises(ValueError, match=r"cost='energy' is invalid; allowed: \['flops', 'params', "):
    report.write_report(str(d))


def test_failed_reference_and_params_target(tmp_path):
  d = _search_dir(tmp_path)
  refs = dict(REFERENCES, **{"mnasnet-a1": _t(-2, "failed", 0.0, 0.0, 311_579_072, 3_920_526)})
  (d / "references.json").write_text(json.dumps(refs))
  (d / "params.json").write_text(json.dumps({"cost": "params", "target_params": 5e6,
                                             "target_flops": 400e6, "reward": "abs", "w": None}))
  lines = open(report.write_report(str(d))["summary"]).read().splitlines()
  assert ("Target T: 5,000,000 parameters (cost: params); reward `abs`, w = the default."
          in lines)
  assert "| mnasnet-a1 (failed) | - | 311,579,072 | 3,920,526 | - | - | 1.444 | - |" in lines


def test_cli(tmp_path):
  d = _search_dir(tmp_path)
  out = tmp_path / "out"
  res = subprocess.run([sys.executable, "launch.py", "report", f"--search_dir={d}", f"--out={out}"],
                       cwd=ROOT, capture_output=True, text=True)
  assert res.returncode == 0, res.stderr
  assert res.stdout.splitlines() == [
      f"{'reward':<15} {out / 'reward.png'}", f"{'accuracy_flops':<15} {out / 'accuracy_flops.png'}",
      f"{'controller':<15} {out / 'controller.png'}", f"{'summary':<15} {out / 'summary.md'}"]
  res = subprocess.run([sys.executable, "launch.py", "report", f"--search_dir={tmp_path / 'no'}"],
                       cwd=ROOT, capture_output=True, text=True)
  assert res.returncode == 2
  assert res.stderr.startswith(f"error: --search_dir='{tmp_path / 'no'}' has no trials.jsonl")
