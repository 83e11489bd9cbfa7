"""A real two-node Ray cluster that loses a node mid-search (slow: run with -m slow).

scripts/ray_two_nodes.sh starts the cluster (a head and a second node on this machine, 1 CPU each),
runs `launch.py search --backend=ray` with 2 workers, and SIGKILLs the second node's raylet while
it trains a child. Teardown kills the two nodes' process groups, whatever happened.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from controller.base import STATE_FILE, latest_checkpoint
from mnas_search import fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "ray_two_nodes.sh")


@pytest.fixture
def work_dir():
  """A short temp folder (Ray's socket paths must stay under 108 bytes); the cluster dies with it."""
  pytest.importorskip("ray")
  work = tempfile.mkdtemp(prefix="/tmp/rt")
  try:
    yield work
  finally:
    pgids = os.path.join(work, "pgids")
    for g in sorted(set(open(pgids).read().split())) if os.path.exists(pgids) else ():
      try:
        os.killpg(int(g), 9)
      except ProcessLookupError:
        pass
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_search_finishes_after_a_node_is_lost(work_dir, tmp_path):
  d = str(tmp_path / "search")
  ray = os.path.join(os.path.dirname(sys.executable), "ray")
  r = subprocess.run(["bash", SCRIPT, d, work_dir], capture_output=True, text=True, timeout=900,
                     env=dict(os.environ, PYTHON=sys.executable, RAY=ray, TRIALS="6"))
  log = open(os.path.join(work_dir, "search.log")).read()
  assert r.returncode == 0, r.stdout + r.stderr + log[-3000:]
  assert "killed node 2's raylet" in r.stdout, r.stdout
  # Ray saw the node die and resubmitted its task.
  assert "the node it was running on is dead" in log and "will be retried" in log

  trials = fileio.read_jsonl(os.path.join(d, "trials.jsonl"))
  assert [t["trial"] for t in trials] == [0, 1, 2, 3, 4, 5]  # none lost, none twice
  for t in trials:  # a child lost more often than Ray retries it is failed, with the reason
    assert t["status"] == "ok" or (t["status"] == "failed" and t["reward"] == 0.0 and
                                   t["error"].startswith("ray task lost after retries")), t
  updates = fileio.read_jsonl(os.path.join(d, "updates.jsonl"))
  assert [(u["update"], u["trials"]) for u in updates] == [(0, 3), (1, 6)]
  # The controller consumed one reward per child: 6 sampled, 2 updates, checkpointed.
  with open(os.path.join(latest_checkpoint(os.path.join(d, "controller")), STATE_FILE)) as f:
    state = json.load(f)
  assert (state["num_sampled"], state["num_updates"]) == (6, 2)
  # Nothing of the cluster is left running.
  pgids = open(os.path.join(work_dir, "pgids")).read().split()
  assert len(pgids) == 2
  alive = subprocess.run(["pgrep", "-g", ",".join(pgids)], capture_output=True, text=True).stdout
  assert alive.strip() == "" or all(_is_zombie(p) for p in alive.split()), alive


def _is_zombie(pid: str) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] == "Z"
  except FileNotFoundError:
    return True
