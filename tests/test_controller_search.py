"""Tests for benchmarks/controller_search.py: a small run prints the side-by-side table."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "controller_search.py")


def test_a_small_run_prints_one_row_per_landscape_and_controller():
  out = subprocess.run([sys.executable, SCRIPT, "--samples=120", "--seeds=2", "--batch=8",
                        "--controllers=evolution,random", "--landscapes=onemax,pairs",
                        '--hparams={"evolution": {"population_size": 10, "tournament_size": 3}}'],
                       cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines()
  assert out[0] == "120 samples, batches of 8, 2 seeds, noise 0.01, 42 decisions (default_space)"
  assert re.fullmatch(r"\| landscape +\| controller \| best +\| last-100 +\| to-90% +\| ms/arch +"
                      r"\| setup s +\|", out[1])
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in out[3:]]
  assert [r[:2] for r in rows] == [["onemax", "evolution"], ["onemax", "random"],
                                   ["pairs", "evolution"], ["pairs", "random"]]
  number = r"(\d\.\d{3}) ± \d\.\d{3}"
  for r in rows:
    best, last = (float(re.fullmatch(number, v).group(1)) for v in r[2:4])
    assert 0.0 < last <= best < 1.0  # nobody finds the optimum in 120 samples
    assert re.fullmatch(r"(\d+|-) \([0-2]/2\)", r[4])
  # Evolution beats random on the mean of its last samples.
  assert float(rows[0][3][:5]) > float(rows[1][3][:5])
