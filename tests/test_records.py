"""Tests of mnas_search.runs.records against run directories written before it existed (fixtures/v1)."""

import json
import os
import shutil

import pytest

import search_space
from mnas_search.analysis import fidelity, report
from mnas_search.runs import records
from mnas_search.runs.records import FidelityRecord, GridRecord, Sampled, TrialRecord
from mnas_search.scaling import grid
from mnas_search.training.evaluation import TrialResult

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "v1")


def _lines(*parts):
  with open(os.path.join(FIXTURES, *parts)) as f:
    return f.read().splitlines()


@pytest.mark.parametrize("path, cls", [
    (("search", "trials.jsonl"), TrialRecord), (("search_edge", "trials.jsonl"), TrialRecord),
    (("golden_trials.jsonl",), TrialRecord),
    (("grid", "grid.jsonl"), GridRecord), (("grid_edge", "grid.jsonl"), GridRecord),
    (("fidelity", "fidelity.jsonl"), FidelityRecord),
    (("fidelity_edge", "fidelity.jsonl"), FidelityRecord),
])
def test_every_stored_record_is_rewritten_byte_for_byte(path, cls):
  lines = _lines(*path)
  assert len(lines) >= 2
  for i, line in enumerate(lines):
    assert json.dumps(cls.from_json(json.loads(line), f"line {i + 1}").to_json()) == line


def test_references_best_and_pareto_are_trial_records():
  for d in ("search", "search_edge"):
    refs = json.load(open(os.path.join(FIXTURES, d, "references.json")))
    for name, ref in refs.items():
      assert "indices" not in ref
      assert TrialRecord.from_json(ref, name).to_json() == ref
    for r in json.load(open(os.path.join(FIXTURES, d, "pareto.json")))["front"]:
      assert json.dumps(TrialRecord.from_json(r).to_json()) == json.dumps(r)


def test_readers_return_the_records_unchanged():
  d = os.path.join(FIXTURES, "search_edge")
  trials = records.read_trials(d)
  assert [json.dumps(r) for r in trials] == _lines("search_edge", "trials.jsonl")
  assert [(r["trial"], r["status"]) for r in trials] == [
      (0, "timeout"), (1, "ok"), (2, "ok"), (3, "failed"), (4, "timeout"), (5, "ok"), (6, "ok")]
  assert records.read_updates(d) == [json.loads(u) for u in _lines("search_edge", "updates.jsonl")]
  best = records.best_by_reward(trials)
  assert best["trial"] == json.load(open(os.path.join(d, "best.json")))["trial"] == 6
  assert report.status_counts(trials) == {"ok": 4, "failed": 1, "timeout": 2, "cached": 0}
  assert [r["trial"] for r in fidelity.distinct_ok_trials(trials)] == [6, 2, 1, 5]


def test_new_records_match_the_old_writers():
  golden = [json.loads(line) for line in _lines("golden_trials.jsonl")]
  space = search_space.get_space("micro")
  indices = [0] * len(space.arities)
  arch = space.decode(indices, name="trial-11")
  ok = TrialResult(status="ok", accuracy=0.75, train_seconds=3.5, images_per_sec=123.25,
                   proxy_flops=4321, proxy_params=65, seed=9)
  reward = lambda status, accuracy: 1.625 if status == "ok" else 0.0  # noqa: E731
  first = TrialRecord.from_result(Sampled(11, 2, arch, indices, golden[0]["seed"]), ok,
                                  (1000, 200, 1.625), reward)
  # Today's trainer also reports its fixed/steady split: two keys appended after the old ones.
  split = {"fixed_seconds": 0.0, "steady_seconds": 0.0}
  assert first.to_json() == {**golden[0], "reward": 1.625, **split}
  assert list(first.to_json()) == list(golden[0]) + list(split)
  cached = first.replace(reward=golden[0]["reward"]).cached_as(
      Sampled(13, 3, arch.replace(name="trial-13"), indices, golden[2]["seed"]))
  assert json.dumps(cached.to_json()) == json.dumps({**golden[2], **split})
  old = TrialRecord.from_json(golden[0]).cached_as(
      Sampled(13, 3, arch.replace(name="trial-13"), indices, golden[2]["seed"]))
  assert "fixed_seconds" not in old.to_json()  # a record without the split stays without it
  inf = TrialResult(status="ok", accuracy=float("inf"), train_seconds=1.0, images_per_sec=2.0,
                    proxy_flops=3, proxy_params=4)
  second = TrialRecord.from_result(Sampled(12, 2, arch.replace(name="trial-11"), indices, golden[1]["seed"]),
                                   inf, (1000, 200, None), lambda s, a: golden[1]["reward"])
  assert json.dumps(second.to_json()) == json.dumps({**golden[1], **split})


def test_trainer_timings_are_appended_only_when_reported():
  space = search_space.get_space("micro")
  arch = space.decode([0] * len(space.arities), name="t")

  class Timed:
    status, accuracy, error, train_seconds, images_per_sec, proxy_flops = "ok", 0.5, None, 2, 3, 4
    fixed_seconds, steady_seconds = 1.5, 0.5

  rec = TrialRecord.from_result(Sampled(0, 0, arch, [0], 7), Timed(), (1, 2, None), lambda s, a: a).to_json()
  assert list(rec)[-3:] == ["cached_from", "fixed_seconds", "steady_seconds"]
  assert (rec["fixed_seconds"], rec["steady_seconds"]) == (1.5, 0.5)
  cached = TrialRecord.from_json(rec).cached_as(Sampled(1, 0, arch, [0], 8)).to_json()
  assert (cached["fixed_seconds"], cached["steady_seconds"], cached["train_seconds"]) == (0.0, 0.0, 0.0)


def test_unknown_keys_and_bad_values_are_refused_by_name():
  line = json.loads(_lines("search", "trials.jsonl")[0])
  with pytest.raises(ValueError, match=r"f.jsonl record 3: unknown key 'bogus'; allowed: \['trial'"):
    TrialRecord.from_json({**line, "bogus": 1}, "f.jsonl record 3")
  with pytest.raises(ValueError, match=r"\(trial 0\): accuracy='high' is invalid"):
    TrialRecord.from_json({**line, "accuracy": "high"})
  with pytest.raises(ValueError, match=r"candidate: status='cached' is invalid"):
    GridRecord.from_json({**json.loads(_lines("grid", "grid.jsonl")[0]), "status": "cached"})
  assert records.RESULT_STATUSES == ("ok", "failed", "timeout")


def test_fixture_grid_and_search_resume_without_training(tmp_path):
  # Every candidate and trial is stored: a resume with the same settings trains nothing and
  # leaves the logs byte-identical.
  for d in ("grid", "search"):
    shutil.copytree(os.path.join(FIXTURES, d), tmp_path / d)
  before = (tmp_path / "grid" / "grid.jsonl").read_text()
  params = json.load(open(tmp_path / "grid" / "params.json"))
  from mnas_search.training.proxy import ProxyTask
  config = grid.GridConfig(
      baseline=search_space.Architecture.from_dict(params["baseline"]),
      task=ProxyTask.from_dict(params["task"]), step=params["grid_step"],
      alpha_range=tuple(params["alpha_range"]), beta_range=tuple(params["beta_range"]),
      gamma_range=tuple(params["gamma_range"]), tolerance=params["grid_tolerance"],
      deterministic=params["deterministic"])
  summary = grid.run_grid(str(tmp_path / "grid"), config)
  assert summary.trained == 0 and (tmp_path / "grid" / "grid.jsonl").read_text() == before
  assert summary.best["candidate"] == 1


def test_fixture_search_resumes_without_training(tmp_path):
  from mnas_search.search.multi_trial import SearchConfig, run_search
  from mnas_search.training.proxy import ProxyTask
  d = tmp_path / "search"
  shutil.copytree(os.path.join(FIXTURES, "search"), d)
  before = {n: (d / n).read_text() for n in ("trials.jsonl", "updates.jsonl", "best.json",
                                              "references.json", "pareto.json", "params.json")}
  p = json.load(open(d / "params.json"))
  config = SearchConfig(space=p["space"], controller=p["controller"],
                        controller_hparams=tuple(p["controller_hparams"].items()),
                        trials=p["trials"], trials_per_update=p["trials_per_update"],
                        task=ProxyTask.from_dict(p["task"]), references=tuple(p["references"]),
                        target_flops=p["target_flops"], deterministic=True, seed=p["seed"],
                        backend=p["backend"], workers=p["workers"])
  summary = run_search(str(d), config, show_progress=False)
  assert (summary.trials, summary.updates, summary.best["trial"]) == (4, 2, 0)
  assert {n: (d / n).read_text() for n in before} == before
