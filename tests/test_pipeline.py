"""End to end on a directory that `run_search` wrote: export, report, fidelity, scale and describe.

The other tests give each command a hand-made directory; this one checks that they read what the
search really writes (through the CLI where the README promises a flag).
"""

import json
import os

import pytest
from png_check import colored_pixels

import search_space
from launch_cli import run_launch
from mnas_search.analysis import export, fidelity, report
from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio

# A search, then the commands that read it: about 30 s on 2 cores, so with -m slow.
pytestmark = pytest.mark.slow

TASK = ProxyTask(dataset="synthetic:size=16,channels=1,classes=4,train=300,test=10", resolution=16,
                 train_images=128, val_images=64, epochs=1, batch_size=64, proxy_width=0.25)


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("pipeline") / "s")
  run_search(d, SearchConfig(space="micro", controller="random", trials=4, trials_per_update=4,
                             task=TASK, references=(), target_flops=30e6, seed=2,
                             backend="inline", workers=1),
             show_progress=False)
  return d


def _best(d):
  best = fileio.read_json(os.path.join(d, "best.json"))
  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert best["trial"] == max((r for r in trials if r["status"] == "ok"),
                              key=lambda r: (r["reward"], -r["trial"]))["trial"]
  return best


def test_report_and_fidelity_read_what_the_search_wrote(search_dir, tmp_path):
  trials = fileio.read_jsonl(os.path.join(search_dir, "trials.jsonl"))
  written = report.write_report(search_dir, str(tmp_path / "report"))
  assert sorted(written) == ["accuracy_flops", "controller", "reward", "summary"]
  for name in ("accuracy_flops", "controller", "reward"):
    assert colored_pixels(written[name]) > 150, name
  summary = open(written["summary"]).read()
  best = _best(search_dir)
  assert f"    {best['blocks'][0]}" in summary.splitlines()
  s = fidelity.run_fidelity(search_dir, fidelity.FidelityConfig(
      sample=2, task=fidelity.longer_task(TASK, epochs=2)), out_dir=str(tmp_path / "fidelity"))
  by_trial = {r["trial"]: r for r in trials}
  assert s["n"] == 2 and len(s["trials"]) == 2
  for r in s["trials"]:
    assert r["proxy_accuracy"] == by_trial[r["trial"]]["accuracy"]
    assert r["proxy_reward"] == by_trial[r["trial"]]["reward"]
    assert r["status"] == "ok"
  assert s["trials"][0]["trial"] == best["trial"]  # the top group starts at the best reward


def test_cli_takes_the_search_directory_as_arch_and_baseline(search_dir, tmp_path):
  best = search_space.Architecture.from_dict(_best(search_dir)["arch"])
  p = run_launch("describe", f"--arch={search_dir}", "--json")
  assert p.returncode == 0, p.stderr
  assert json.loads(p.stdout)["blocks"] == list(best.block_strings)
  out = tmp_path / "family"
  p = run_launch("scale", f"--baseline={search_dir}", "--family=paper", f"--out={out}")
  assert p.returncode == 0, p.stderr
  fam = fileio.read_json(str(out / "family.json"))
  assert search_space.Architecture.from_dict(fam["baseline"]).blocks == best.blocks
  assert fam["baseline"]["name"] == "s-best"


def test_cli_exports_the_pareto_front_in_three_model_formats(search_dir, tmp_path):
  out = tmp_path / "export"
  p = run_launch("export", f"--search_dir={search_dir}", f"--out={out}", "--pareto",
                 "--formats=keras,savedmodel,tflite")
  assert p.returncode == 0, p.stderr
  front = fileio.read_json(os.path.join(search_dir, "pareto.json"))["front"]
  index = fileio.read_json(str(out / "index.json"))
  assert index["formats"] == ["keras", "savedmodel", "tflite"]
  assert [m["trial"] for m in index["models"]] == [r["trial"] for r in front]
  for m in index["models"]:
    assert m["files"] == ["model.keras", "saved_model", "model.tflite", "info.json"]
    assert sorted(os.listdir(out / m["folder"])) == ["info.json", "model.keras", "model.tflite",
                                                     "saved_model"]
    assert sorted(m["checks"]) == ["keras_max_abs_diff", "savedmodel_max_abs_diff",
                                   "tflite_max_abs_diff"]
    assert all(v <= export.AGREEMENT_TOLERANCE for v in m["checks"].values())
