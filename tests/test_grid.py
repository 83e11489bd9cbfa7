"""Tests of mnas_search.scaling.grid and `launch.py grid`: the α, β, γ grid at φ=1 under α·β²·γ² ≈ 2."""

import os
from decimal import Decimal

import pytest
from png_check import colored_pixels

import search_space
from launch_cli import run_launch
from mnas_search.execution.resumable import RunOptions
from mnas_search.scaling import family, grid
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MICRO = search_space.get_space("micro")
# The micro space's first option of every decision: 3 stages, 8-16 filters, 32x32.
TINY = _MICRO.decode([0] * len(_MICRO.arities), name="tiny")
TASK = ProxyTask(dataset="synthetic:size=16,channels=1,classes=4,train=400,test=10", resolution=16,
                 train_images=128, val_images=64, epochs=1, batch_size=64, proxy_width=0.25)
# α=1.2, β=1.1 and γ in {1.15, 1.2}: products 1.9203 and 2.0909, both within 0.1 of 2.
TINY_GRID = dict(step=0.05, alpha_range=(1.2, 1.2), beta_range=(1.1, 1.1),
                 gamma_range=(1.15, 1.2), tolerance=0.1)


def _product(a, b, g):
  return Decimal(repr(a)) * Decimal(repr(b)) ** 2 * Decimal(repr(g)) ** 2


def test_default_grid_is_every_triple_within_the_tolerance():
  triples = grid.enumerate_grid()
  # Brute force over the same grid in Decimal arithmetic.
  axis = lambda lo, n: [float(Decimal(lo) + k * Decimal("0.05")) for k in range(n)]  # noqa: E731
  expected = [(a, b, g) for a in axis("1.0", 11) for b in axis("1.0", 7) for g in axis("1.0", 7)
              if abs(_product(a, b, g) - 2) <= Decimal("0.1")]
  assert triples == expected and len(triples) == 73
  assert all(abs(_product(*t) - 2) <= Decimal("0.1") for t in triples)
  # Exact decimals: no 1.1500000000000001 from float accumulation.
  assert all(repr(v) == repr(round(v, 2)) for t in triples for v in t)
  assert (triples[0], triples[-1]) == ((1.0, 1.1, 1.3), (1.5, 1.15, 1.0))


def test_paper_triple_is_in_the_default_grid():
  assert grid.PAPER_TRIPLE == (1.2, 1.1, 1.15)
  assert (1.2, 1.1, 1.15) in grid.enumerate_grid()
  assert grid.constraint_product(1.2, 1.1, 1.15) == 1.92027


def test_tolerance_boundary_is_exact():
  # 1.2 * 1.1² * 1.15² = 1.92027 exactly: 2 - 1.92027 = 0.07973.
  only = dict(alpha_range=(1.2, 1.2), beta_range=(1.1, 1.1), gamma_range=(1.15, 1.15))
  assert grid.enumerate_grid(tolerance=0.07973, **only) == [(1.2, 1.1, 1.15)]
  assert grid.enumerate_grid(tolerance=0.07972, **only) == []
  assert grid.grid_values(1.0, 1.3, 0.1) == [1.0, 1.1, 1.2, 1.3]
  assert grid.grid_values(1.0, 1.29, 0.1) == [1.0, 1.1, 1.2]


def test_resolutions_and_scaled_candidate():
  assert [grid.proxy_resolution(r, g) for r, g in
          ((32, 1.15), (16, 1.15), (16, 1.1), (10, 1.25), (32, 1.0), (4, 1.3))] == [37, 18, 18, 13,
                                                                                  32, 8]
  b0 = search_space.named("efficientnet-b0")
  a = grid.scaled_candidate(b0, (1.2, 1.1, 1.15))
  assert (a.depth_coefficient, a.width_coefficient, a.resolution, a.dropout_rate) == (1.2, 1.1, 256,
                                                                                     0.2)
  assert a.blocks == b0.blocks and a.name == "efficientnet-b0-a1.2-b1.1-g1.15"


@pytest.mark.parametrize("kwargs, message", [
    (dict(step=0), "grid_step=0 is invalid; allowed: a number > 0"),
    (dict(step=1e-5), "grid_step=1e-05 gives 50001 values of alpha_range"),
    (dict(alpha_range=(0.9, 1.2)), r"alpha_range=\(0.9, 1.2\) is invalid; allowed: LOW,HIGH with"),
    (dict(beta_range=(1.3, 1.1)), r"beta_range=\(1.3, 1.1\) is invalid"),
    (dict(gamma_range=(1.1,)), r"gamma_range=\(1.1,\) is invalid; allowed: two numbers"),
    (dict(tolerance=-0.1), "grid_tolerance=-0.1 is invalid; allowed: a finite number >= 0"),
])
def test_bad_grid_input(kwargs, message):
  with pytest.raises(ValueError, match=message):
    grid.enumerate_grid(**kwargs)


def test_config_refuses_an_empty_grid():
  with pytest.raises(ValueError, match=r"grid_tolerance=0.1 leaves no triple with "
                                       r"\|alpha\*beta\^2\*gamma\^2 - 2\| <= 0.1"):
    grid.GridConfig(baseline=TINY, task=TASK, alpha_range=(1.0, 1.0), beta_range=(1.0, 1.0),
                    gamma_range=(1.0, 1.0))


class _Killed(Exception):
  pass


def _kill_after_first(record):
  raise _Killed(record["candidate"])


def test_tiny_grid_writes_the_files_and_resumes_without_rerunning(tmp_path):
  out = str(tmp_path / "grid")
  log = os.path.join(out, "grid.jsonl")
  config = grid.GridConfig(baseline=TINY, task=TASK, **TINY_GRID)
  # Stopped right after the first candidate was stored, with half a line appended by the crash.
  with pytest.raises(_Killed):
    grid.run_grid(out, config, RunOptions(on_record=_kill_after_first))
  first = fileio.read_jsonl(log)
  assert [r["candidate"] for r in first] == [0]
  with open(log, "a") as f:
    f.write('{"candidate": 1, "al')
  seen = []
  s = grid.run_grid(out, config, RunOptions(on_record=seen.append))
  assert s.trained == 1 and [r["candidate"] for r in seen] == [1]  # candidate 0 was not rerun
  records = fileio.read_jsonl(log)
  assert records[0] == first[0] and len(records) == 2
  assert [(r["alpha"], r["beta"], r["gamma"]) for r in records] == [(1.2, 1.1, 1.15),
                                                                     (1.2, 1.1, 1.2)]
  for r, res, deploy in zip(records, (18, 19), (40, 40)):
    arch = grid.scaled_candidate(TINY, (r["alpha"], r["beta"], r["gamma"]))
    assert (r["proxy_resolution"], r["deploy_resolution"], r["width"], r["depth"]) == (
        res, deploy, 1.1, 1.2)
    assert r["flops"] == search_space.count_flops(arch, deploy, 1000)
    assert r["flops_ratio"] == round(r["flops"] / search_space.count_flops(TINY, 32, 1000), 4)
    child = search_space.scale(arch, width=0.25, resolution=res)
    assert r["proxy_flops"] == search_space.count_flops(child, res, 4, 1)
    assert r["status"] == "ok" and 0.0 <= r["accuracy"] <= 1.0 and r["seed"] == TASK.seed
  assert [r["product"] for r in records] == [1.92027, 2.09088]
  # Both candidates are ok: the winner is the more accurate one (the lower number on a tie),
  # worked out here rather than by grid.rank_rows.
  winner = max(records, key=lambda r: (r["accuracy"], -r["candidate"]))
  rows = [winner, records[1 - records.index(winner)]]
  assert s.rows == rows and s.best == winner and s.paper == records[0]
  assert family.load_coefficients(os.path.join(out, "coefficients.json")) == (
      rows[0]["alpha"], rows[0]["beta"], rows[0]["gamma"])
  with open(os.path.join(out, "table.txt")) as f:
    assert f.read() == grid.format_table(rows, "tiny") + "\n"
  summary = fileio.read_json(os.path.join(out, "grid.json"))
  assert summary["rows"] == rows and summary["paper_rank"] == rows.index(records[0]) + 1
  params = fileio.read_json(os.path.join(out, "params.json"))
  assert params["grid_tolerance"] == 0.1 and params["task"] == TASK.to_dict()
  assert colored_pixels(os.path.join(out, "grid.png")) > 150  # the two candidates' points

  # A finished grid trains nothing and leaves grid.jsonl as it was.
  before = open(log).read()
  s2 = grid.run_grid(out, config)
  assert s2.trained == 0 and s2.rows == rows and open(log).read() == before

  # Other settings on the same directory are refused, naming the setting.
  with pytest.raises(ValueError, match=r"--grid_tolerance: stored 0.1, given 0.2"):
    grid.run_grid(out, grid.GridConfig(baseline=TINY, task=TASK, **dict(TINY_GRID, tolerance=0.2)))


def test_rank_rows_puts_ok_first_then_the_most_accurate_then_the_lower_candidate():
  def row(candidate, status, accuracy):
    return dict(candidate=candidate, alpha=1.2, beta=1.1, gamma=1.15, status=status,
                accuracy=accuracy)
  rows = [row(0, "ok", 0.5), row(1, "failed", 0.9), row(2, "ok", 0.8), row(3, "ok", 0.8),
          row(4, "timeout", 0.0), row(5, "ok", 0.6)]
  assert [r["candidate"] for r in grid.rank_rows(rows)] == [2, 3, 5, 0, 1, 4]
  assert [r["candidate"] for r in grid.rank_rows(rows[::-1])] == [2, 3, 5, 0, 1, 4]


def test_format_table_marks_the_paper_triple():
  row = dict(candidate=0, alpha=1.2, beta=1.1, gamma=1.15, product=1.92027, proxy_resolution=37,
             flops_ratio=1.9321, accuracy=0.81234, status="ok", train_seconds=12.34)
  other = dict(row, candidate=1, gamma=1.2, product=2.09088, accuracy=0.5, status="failed")
  lines = grid.format_table([row, other], "b0").splitlines()
  assert lines[0].startswith("grid search at phi=1 of b0: 2 candidates")
  assert lines[2] == "   1     1.2    1.1   1.15    1.9203   37   1.932   0.8123  ok         12.3 *"
  assert lines[3] == "   2     1.2    1.1    1.2    2.0909   37   1.932   0.5000  failed     12.3"


def _launch(*args):
  return run_launch("grid", *args)


@pytest.mark.parametrize("args, message", [
    (["--out=/tmp/x"], "error: --baseline=NAME|PATH.json|SEARCH_DIR is required"),
    (["--baseline=efficientnet-b0"], "error: --out=DIR is required"),
    (["--baseline=nope", "--out=/tmp/x"], "error: --baseline=nope: unknown architecture 'nope'"),
    (["--baseline=efficientnet-b0", "--out=/tmp/x", "--alpha_range=1"],
     "error: --alpha_range=1 is invalid; allowed: two numbers LOW,HIGH"),
    (["--baseline=efficientnet-b0", "--out=/tmp/x", "--gamma_range=0.5,1.2"],
     "error: --gamma_range=(0.5, 1.2) is invalid; allowed: LOW,HIGH with 1.0 <= LOW <= HIGH"),
    (["--baseline=efficientnet-b0", "--out=/tmp/x", "--grid_step=-1"],
     "error: --grid_step=-1.0 is invalid; allowed: a number > 0"),
])
def test_cli_bad_input(args, message):
  r = _launch(*args)
  assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(message), r.stderr


@pytest.mark.slow
def test_cli_grid_on_the_process_backend(tmp_path):
  out = str(tmp_path / "g")
  args = [f"--baseline={TINY.name}", f"--out={out}", "--dataset=" + TASK.dataset,
          "--proxy_resolution=16", "--proxy_train_images=128", "--proxy_val_images=64",
          "--proxy_epochs=1", "--proxy_batch_size=64", "--proxy_width=0.25",
          "--alpha_range=1.2,1.2", "--beta_range=1.1,1.1", "--gamma_range=1.15,1.2",
          "--backend=process", "--workers=2", "--noprogress"]
  arch_path = str(tmp_path / "tiny.json")
  fileio.atomic_write_json(arch_path, TINY.to_dict())
  args[0] = f"--baseline={arch_path}"
  r = _launch(*args)
  assert r.returncode == 0, r.stderr
  assert "trained 2 candidate(s)" in r.stdout and "best   alpha=1.2 beta=1.1" in r.stdout
  assert sorted(os.listdir(out)) == [".lock", "coefficients.json", "grid.json", "grid.jsonl",
                                     "grid.png", "params.json", "table.txt"]
  r2 = _launch(*args[:-2], "--backend=inline", "--noprogress")  # the backend may change on resume
  assert r2.returncode == 0 and "trained 0 candidate(s)" in r2.stdout, r2.stderr
