"""Tests of `launch.py fidelity --ground_truth=G` and the signals of mnas_search.analysis.ground_truth.

G, the search directory and the scores files are written by hand in tmp_path; nothing trains.
"""

import json
import os

import pytest
from absl import flags

import launch
import search_space
from launch_cli import run_launch
from mnas_search.analysis import ground_truth as gt
from mnas_search.runs.records import TrialRecord
from mnas_search.util import fileio
from nas_common import FieldError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED_G = os.path.join(ROOT, "results", "ground_truth")
SPACE = search_space.default_space()
JSON_KEYS = ["signal", "matched", "unmatched", "n", "kendall_tau", "kendall_tau_interval",
             "spearman_rho", "spearman_rho_interval", "level"]


def _decoded(shift):
  """A network of the default space with fixed decisions (option (d + shift) mod arity)."""
  return SPACE.decode([(d + shift) % a for d, a in enumerate(SPACE.arities)], name=f"random-{shift}")


# Six networks of G, best first in G (test accuracy .90 ... .60), and two that G does not hold.
NETWORKS = [("efficientnet-b0", search_space.named("efficientnet-b0")),
            ("mnasnet-a1", search_space.named("mnasnet-a1")),
            ("mobilenet-v2", search_space.named("mobilenet-v2")),
            ("random-0", _decoded(0)), ("random-1", _decoded(1)), ("random-2", _decoded(2))]
TEST_ACCURACY = [0.90, 0.88, 0.85, 0.80, 0.70, 0.60]
OUTSIDE = [_decoded(3), _decoded(5)]
KEYS = [gt.blocks_key(a) for _, a in NETWORKS]


def test_the_networks_are_distinct():
  assert len(set(KEYS + [gt.blocks_key(a) for a in OUTSIDE])) == len(NETWORKS) + len(OUTSIDE)


def write_g(folder, proxies=True):
  """G: one seed per network (two for efficientnet-b0, .89 and .91: mean .90), a failed run, and
  proxies p8 (seed 0 of five networks in a known order, plus a seed-1 run and a timed-out run
  that must be ignored) and p2."""
  os.makedirs(folder, exist_ok=True)
  lines = []
  for (name, arch), acc in zip(NETWORKS, TEST_ACCURACY):
    seeds = [(0, acc - 0.01), (1, acc + 0.01)] if name == "efficientnet-b0" else [(0, acc)]
    lines += [{"name": name, "blocks": gt.blocks_key(arch), "seed": s, "test_accuracy": a,
               "status": "ok", "flops": 1, "params": 1, "epochs": 1, "wall_seconds": 1.0}
              for s, a in seeds]
  lines.append({"name": "random-9", "blocks": gt.blocks_key(OUTSIDE[0]), "seed": 0,
                "test_accuracy": None, "status": "failed"})
  with open(os.path.join(folder, gt.RECORDS), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in lines)
  if proxies:
    p8 = [0.50, 0.45, 0.47, 0.30, 0.31]  # two pairs swapped against G; random-2 timed out
    rows = [_proxy("p8", n, a, 0, acc) for (n, a), acc in zip(NETWORKS, p8)]
    rows += [_proxy("p8", "mnasnet-a1", NETWORKS[1][1], 1, 0.99),
             _proxy("p8", "random-2", NETWORKS[5][1], 0, 0.0, status="timeout"),
             _proxy("p2", "random-2", NETWORKS[5][1], 0, 0.1)]
    with open(os.path.join(folder, gt.PROXIES), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(folder)


def _proxy(proxy, name, arch, seed, accuracy, status="ok"):
  return {"proxy": proxy, "name": name, "blocks": gt.blocks_key(arch), "seed": seed,
          "accuracy": accuracy, "status": status, "seconds": 1.0}


def _trial(trial, arch, accuracy, status="ok"):
  return TrialRecord.from_json({
      "trial": trial, "arch": arch.to_dict(), "blocks": arch.block_strings, "flops": 1000,
      "params": 10, "accuracy": accuracy, "reward": accuracy, "status": status, "error": None,
      "train_seconds": 1.0, "images_per_sec": 1.0, "proxy_flops": 1, "update": 0, "seed": trial,
      "cached_from": None}).to_json()


def write_search(folder, trials):
  os.makedirs(folder, exist_ok=True)
  for t in trials:
    fileio.append_jsonl(os.path.join(folder, "trials.jsonl"), t)
  return str(folder)


def write_scores(path, rows):
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(path)


def run_fidelity(*args, capsys):
  """`launch.py fidelity *args` in this process: (exit code, stdout, stderr lines)."""
  try:
    launch.run_command("fidelity", ["launch.py", *args], flags.FlagValues())
    code = 0
  except SystemExit as e:
    code = e.code
  out = capsys.readouterr()
  return code, out.out, out.err.splitlines()


# ----------------------------------------------------------------------------- the library
def test_truth_is_the_mean_over_finished_seeds(tmp_path):
  truth = gt.read_truth(write_g(tmp_path / "g"))
  assert sorted(truth) == sorted(KEYS)
  assert truth[KEYS[0]] == pytest.approx(0.90)


@pytest.mark.parametrize("signal, tau, rho", [
    (TEST_ACCURACY, 1.0, 1.0),                               # the same order
    ([-a for a in TEST_ACCURACY], -1.0, -1.0),               # reversed
    ([0.50, 0.45, 0.47, 0.30, 0.31, 0.20], 0.7333, 0.8857),  # two swaps: τ (15-2·2)/15, ρ 1-6·4/210
])
def test_score_against_hand_computed_values(signal, tau, rho):
  s = gt.score(dict(zip(KEYS, signal)), dict(zip(KEYS, TEST_ACCURACY)))
  assert (s["kendall_tau"], s["spearman_rho"], s["matched"], s["unmatched"], s["n"]) == (
      tau, rho, 6, 0, 6)


def test_search_signal_is_the_mean_of_the_ok_trials_of_each_network(tmp_path):
  (_, b0), (_, a1), (_, v2) = NETWORKS[:3]
  search = write_search(tmp_path / "s", [
      _trial(0, b0, 0.4), _trial(1, a1, 0.3), _trial(2, b0, 0.6), _trial(3, v2, 0.0, "failed"),
      dict(_trial(4, a1, 0.3, "cached"), cached_from=1)])
  assert gt.search_signal(search) == {gt.blocks_key(b0): pytest.approx(0.5), gt.blocks_key(a1): 0.3}
  with pytest.raises(FileNotFoundError, match="has no trials.jsonl"):
    gt.search_signal(str(tmp_path / "none"))


def test_proxy_signal_takes_every_seed_0_run_as_recorded(tmp_path):
  g = write_g(tmp_path / "g")
  p8 = gt.proxy_signal(g, "p8")
  # random-2 timed out: it counts with its recorded accuracy, as the search would have scored it.
  assert p8 == dict(zip(KEYS, [0.50, 0.45, 0.47, 0.30, 0.31, 0.0]))
  assert gt.proxy_names(g) == ["p2", "p8"]
  with pytest.raises(FieldError) as e:
    gt.proxy_signal(g, "p9")
  assert (e.value.field, e.value.allowed) == ("proxy", "p2, p8")


def test_scores_signal_reads_blocks_or_arch_and_accuracy_or_score(tmp_path):
  (_, b0), (_, a1), (_, v2), (_, r0) = NETWORKS[:4]
  path = write_scores(tmp_path / "scores.jsonl", [
      {"blocks": gt.blocks_key(b0), "accuracy": 0.5},
      {"blocks": b0.block_strings, "accuracy": 0.7},   # a list, the same network: mean .6
      {"arch": a1.to_dict(), "score": 2},
      {"blocks": gt.blocks_key(v2), "score": None},    # left out
      {"arch": r0.to_dict(), "accuracy": -1.5, "other": "kept"}])
  assert gt.scores_signal(path) == {gt.blocks_key(b0): pytest.approx(0.6), gt.blocks_key(a1): 2.0,
                                    gt.blocks_key(r0): -1.5}


@pytest.mark.parametrize("line, detail", [
    ({"accuracy": 0.5}, "record 2 has neither blocks nor arch"),
    ({"blocks": "r1_k3_s11_e1_i32_o16_se0.25"}, "record 2 has neither accuracy nor score"),
    ({"blocks": "not-a-block", "accuracy": 0.5}, "record 2 has blocks that do not parse"),
    ({"arch": {"bad": 1}, "accuracy": 0.5}, "record 2 has an arch that does not parse"),
    ({"blocks": "r1_k3_s11_e1_i32_o16_se0.25", "accuracy": "high"}, "record 2 has accuracy='high'"),
    ([1, 2], "record 2 is not a JSON object"),
])
def test_a_malformed_scores_line_is_named(line, detail, tmp_path):
  path = write_scores(tmp_path / "scores.jsonl", [{"blocks": KEYS[0], "accuracy": 0.5}, line])
  with pytest.raises(FieldError) as e:
    gt.scores_signal(path)
  assert e.value.field == "scores" and e.value.detail.startswith(f" ({detail}")


# ----------------------------------------------------------------------------- the command
def test_a_search_is_scored_with_its_matched_and_unmatched_networks(tmp_path, capsys):
  g = write_g(tmp_path / "g")
  # Four networks of G in G's order (one of them twice: mean .35), two outside it; a failed trial.
  search = write_search(tmp_path / "s", [
      _trial(0, NETWORKS[0][1], 0.6), _trial(1, NETWORKS[1][1], 0.5),
      _trial(2, NETWORKS[3][1], 0.3), _trial(3, NETWORKS[3][1], 0.4),
      _trial(4, NETWORKS[5][1], 0.2), _trial(5, OUTSIDE[0], 0.9), _trial(6, OUTSIDE[1], 0.1),
      _trial(7, NETWORKS[2][1], 0.0, "failed")])
  code, out, err = run_fidelity(f"--ground_truth={g}", f"--search_dir={search}", "--json",
                                capsys=capsys)
  assert (code, err) == (0, [])
  s = json.loads(out)
  assert list(s) == JSON_KEYS
  assert (s["signal"], s["matched"], s["unmatched"], s["n"], s["kendall_tau"], s["spearman_rho"],
          s["level"]) == (f"search_dir={search}", 4, 2, 4, 1.0, 1.0, 0.9)
  assert s["kendall_tau_interval"][1] == 1.0 and s["spearman_rho_interval"][1] == 1.0
  code, out, err = run_fidelity(f"--ground_truth={g}", f"--search_dir={search}", capsys=capsys)
  lines = out.splitlines()
  assert code == 0 and lines[0].split() == ["network", "signal", "G", "test", "acc", "signal",
                                            "rank", "G", "rank"]
  assert [line.split()[0] for line in lines[1:5]] == ["efficientnet-b0", "mnasnet-a1", "random-0",
                                                     "random-2"]
  assert lines[3].split() == ["random-0", "0.3500", "0.8000", "3", "3"]
  assert lines[5] == "matched 4 of 6 networks; 2 are not in the ground truth"
  assert lines[6].startswith(f"search_dir={search} vs ground truth (4 networks, 90% bootstrap "
                             "intervals): Kendall tau +1.0000 [")


def test_a_proxy_of_g_is_scored(tmp_path, capsys):
  g = write_g(tmp_path / "g")
  code, out, err = run_fidelity(f"--ground_truth={g}", "--proxy=p8", "--json", capsys=capsys)
  s = json.loads(out)
  # Six networks (random-2's timed-out run scores 0, last as in G), two discordant pairs
  # (mnasnet-a1/mobilenet-v2, random-0/random-1): τ = (15 - 2·2)/15, ρ = 1 - 6·4/(6·35).
  assert (code, s["signal"], s["matched"], s["unmatched"], s["kendall_tau"], s["spearman_rho"]) == (
      0, "proxy=p8", 6, 0, 0.7333, 0.8857)


def test_a_scores_file_is_scored_and_a_reversed_one_gives_minus_one(tmp_path, capsys):
  g = write_g(tmp_path / "g")
  rows = [{"blocks": k, "score": -acc} for k, acc in zip(KEYS, TEST_ACCURACY)]
  path = write_scores(tmp_path / "scores.jsonl", rows + [{"arch": OUTSIDE[0].to_dict(), "score": 1}])
  code, out, _ = run_fidelity(f"--ground_truth={g}", f"--scores={path}", "--json", capsys=capsys)
  s = json.loads(out)
  assert (code, s["matched"], s["unmatched"], s["kendall_tau"], s["spearman_rho"]) == (
      0, 6, 1, -1.0, -1.0)
  assert s["kendall_tau_interval"][0] == -1.0


def test_fewer_than_3_matched_networks_are_refused(tmp_path, capsys):
  g = write_g(tmp_path / "g")
  path = write_scores(tmp_path / "scores.jsonl", [
      {"blocks": KEYS[0], "accuracy": 0.5}, {"blocks": KEYS[1], "accuracy": 0.4},
      {"arch": OUTSIDE[0].to_dict(), "accuracy": 0.3}])
  for extra in ([], ["--json"]):
    code, out, err = run_fidelity(f"--ground_truth={g}", f"--scores={path}", *extra, capsys=capsys)
    assert (code, out, err) == (2, "", [
        f"error: --scores={path}: matched 2 of 3 networks; 1 is not in the ground truth; allowed: "
        f"a signal with at least 3 networks of --ground_truth={g}"])


@pytest.mark.parametrize("args, line", [
    (["--ground_truth=G"], "error: --ground_truth needs the signal to score; allowed: exactly one "
     "of --search_dir=DIR, --proxy=NAME, --scores=FILE"),
    (["--ground_truth=G", "--proxy=p8", "--scores=f.jsonl"], "error: --proxy=p8 and --scores=f.jsonl "
     "were given together with --ground_truth; allowed: exactly one of --search_dir=DIR, "
     "--proxy=NAME, --scores=FILE"),
    (["--ground_truth=G", "--search_dir=S", "--proxy=p8"], "error: --search_dir=S and --proxy=p8 "
     "were given together with --ground_truth; allowed: exactly one of --search_dir=DIR, "
     "--proxy=NAME, --scores=FILE"),
    (["--proxy=p8"], "error: --proxy is not taken by fidelity without --ground_truth; allowed with "
     "--ground_truth=DIR"),
    (["--search_dir=S", "--sample=3", "--scores=f.jsonl"], "error: --scores is not taken by fidelity "
     "without --ground_truth; allowed with --ground_truth=DIR"),
    (["--ground_truth=/no/such/dir", "--proxy=p8"], "error: --ground_truth='/no/such/dir' is invalid "
     "(not a directory); allowed: a folder with records.jsonl, as benchmarks/ground_truth.py writes"),
])
def test_missing_or_conflicting_signal_flags_are_one_line(args, line, capsys):
  code, out, err = run_fidelity(*args, capsys=capsys)
  assert (code, out, err) == (2, "", [line])


@pytest.mark.parametrize("flag", ["--sample=3", "--fidelity_epochs=2", "--out=x", "--proxy_epochs=2",
                                  "--proxy_lr=0.1", "--dataset=cifar10", "--backend=process",
                                  "--workers=2", "--seed=1", "--strategy=cpu"])
def test_the_retraining_flags_are_refused_with_ground_truth(flag, tmp_path, capsys):
  code, out, err = run_fidelity(f"--ground_truth={tmp_path}", "--proxy=p8", flag, capsys=capsys)
  assert (code, out, err) == (2, "", [
      f"error: {flag.split('=')[0]} is not taken by fidelity --ground_truth; allowed with "
      "--ground_truth: --json, --proxy, --scores, --search_dir"])


def test_bad_signals_name_their_flag(tmp_path, capsys):
  g = write_g(tmp_path / "g")
  code, _, err = run_fidelity(f"--ground_truth={g}", "--proxy=p9", capsys=capsys)
  assert (code, err) == (2, ["error: --proxy='p9' is invalid (no record in proxies.jsonl); "
                             "allowed: p2, p8"])
  missing = tmp_path / "none.jsonl"
  code, _, err = run_fidelity(f"--ground_truth={g}", f"--scores={missing}", capsys=capsys)
  assert (code, err) == (2, [f"error: --scores={str(missing)!r} is invalid (no such file); allowed: "
                             f"{gt.SCORES_ALLOWED}"])
  code, _, err = run_fidelity(f"--ground_truth={g}", f"--search_dir={tmp_path}", capsys=capsys)
  assert code == 2 and len(err) == 1 and "has no trials.jsonl" in err[0]
  empty = tmp_path / "empty"
  empty.mkdir()
  code, _, err = run_fidelity(f"--ground_truth={empty}", "--proxy=p8", capsys=capsys)
  assert (code, err) == (2, [f"error: --ground_truth={str(empty)!r} is invalid (no finished record "
                             "in records.jsonl); allowed: a folder with records.jsonl, as "
                             "benchmarks/ground_truth.py writes"])


def test_without_ground_truth_the_retraining_command_is_unchanged(tmp_path, capsys):
  code, _, err = run_fidelity(f"--search_dir={tmp_path}", capsys=capsys)
  assert (code, err) == (2, ["error: --sample=K is required; allowed: an integer >= 2"])
  code, _, err = run_fidelity("--sample=3", capsys=capsys)
  assert code == 2 and err[0].startswith("error: --search_dir=DIR is required")


def test_launch_py_in_a_subprocess(tmp_path):
  g = write_g(tmp_path / "g")
  p = run_launch("fidelity", f"--ground_truth={g}", "--proxy=p8", "--json", timeout=120)
  assert p.returncode == 0 and json.loads(p.stdout)["kendall_tau"] == 0.7333, p.stderr
  p = run_launch("fidelity", f"--ground_truth={g}", "--proxy=p8", "--search_dir=S", timeout=120)
  assert (p.returncode, p.stdout, p.stderr.splitlines()) == (2, "", [
      "error: --search_dir=S and --proxy=p8 were given together with --ground_truth; allowed: "
      "exactly one of --search_dir=DIR, --proxy=NAME, --scores=FILE"])
  p = run_launch("fidelity", f"--ground_truth={g}", "--proxy=p8", "--sample=4", timeout=120)
  assert (p.returncode, p.stderr.splitlines()) == (2, [
      "error: --sample is not taken by fidelity --ground_truth; allowed with --ground_truth: "
      "--json, --proxy, --scores, --search_dir"])


def _committed_networks():
  path = os.path.join(COMMITTED_G, gt.RECORDS)
  return gt.truth(fileio.read_jsonl(path)) if os.path.isfile(path) else {}


@pytest.mark.skipif(len(_committed_networks()) < 3, reason="results/ground_truth/records.jsonl "
                    "does not hold 3 finished networks yet (benchmarks/ground_truth.py writes it)")
def test_the_committed_ground_truth_scores_itself(tmp_path, capsys):
  truth = _committed_networks()
  path = write_scores(tmp_path / "g.jsonl", [{"blocks": k, "accuracy": v} for k, v in truth.items()])
  code, out, err = run_fidelity(f"--ground_truth={COMMITTED_G}", f"--scores={path}", "--json",
                                capsys=capsys)
  s = json.loads(out)
  assert (code, err, s["matched"], s["unmatched"]) == (0, [], len(truth), 0)
  assert s["kendall_tau"] in (1.0, None) and s["spearman_rho"] in (1.0, None)  # None: all tied
  for name in gt.proxy_names(COMMITTED_G)[:1]:
    code, out, err = run_fidelity(f"--ground_truth={COMMITTED_G}", f"--proxy={name}", "--json",
                                  capsys=capsys)
    assert code == 0 or (code == 2 and "allowed: a signal with at least 3" in err[0]), err
