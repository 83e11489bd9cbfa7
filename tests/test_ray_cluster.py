"""A real two-node Ray cluster with token authentication that loses a node mid-search (slow: run
with -m slow).

scripts/ray_two_nodes.sh starts the cluster (a head and a second node on this machine, 1 CPU each,
RAY_AUTH_MODE=token with a new token), runs `launch.py search --backend=ray` with 2 workers and the
token, and SIGKILLs the second node's raylet while it trains a child. While it runs, clients
without the token try to join and are refused, and every TCP socket that the cluster's processes
listen on is recorded. Teardown kills the two nodes' process groups, whatever happened.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import procs
import pytest

from controller.base import STATE_FILE, latest_checkpoint
from launch_cli import run_launch
from mnas_search.execution import raycluster
from mnas_search.util import fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "ray_two_nodes.sh")
RAY_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", raycluster.LOOPBACK_ENV,
           "RAY_ADDRESS")
# What listens on an address other than loopback while the script runs, and why: Ray 2.5x keeps
# a node on loopback only in its single-machine mode, which refuses a second node; otherwise its
# servers listen on the machine's address or on every interface. README, "Ray on several machines".
EXPOSED = {
    "gcs_server": "the head's GCS (--port): every node and driver dials it",
    "raylet": "each node's node manager and object manager: nodes lease workers and move objects",
    "core worker": "the gRPC server of the search (the driver) and of each Ray worker: task owners "
                   "and executors on different nodes call each other",
    "dashboard agent": "each node's agent: its gRPC and HTTP servers, and the metrics export port",
    "runtime env agent": "each node's runtime-environment agent (the env_vars given to tasks)",
    "ray client server": "the head's ray:// endpoint (--ray-client-server-port)",
    "autoscaler monitor": "the head's autoscaler metrics (Prometheus, read-only)",
    "dashboard head": "the head's dashboard process, started even with --include-dashboard=false: "
                      "its metrics (Prometheus, read-only)",
}
KINDS = (("gcs_server", "gcs_server"), ("raylet/raylet", "raylet"),
         ("ray::DashboardAgent", "dashboard agent"), ("ray::RuntimeEnvAgent", "runtime env agent"),
         ("ray.util.client.server", "ray client server"),
         ("autoscaler/_private/monitor.py", "autoscaler monitor"),
         ("dashboard/dashboard.py", "dashboard head"), ("launch.py", "core worker"),
         ("ray::", "core worker"), ("default_worker.py", "core worker"))


def kind_of(pid: int) -> str | None:
  """What process `pid` is (KINDS), its command line when none matches; None when it is gone."""
  cmd = procs.cmdline(pid)
  return next((kind for pattern, kind in KINDS if pattern in cmd), cmd[:80]) if cmd else None


class ListeningSockets(threading.Thread):
  """Records (address, port, kind) of every TCP socket in LISTEN state held by the processes of
  `groups_file`'s process groups or below `root`, every 0.3 s until `stop`."""

  def __init__(self, root: int, groups_file: str):
    super().__init__(daemon=True)
    self.root, self.groups_file, self.seen = root, groups_file, set()
    self._stop_event = threading.Event()

  def run(self):
    while not self._stop_event.is_set():
      groups = open(self.groups_file).read().split() if os.path.exists(self.groups_file) else []
      pids = set(procs.descendants(self.root)) | set(procs.in_groups(int(g) for g in groups))
      for address, port, pid in procs.listening(pids):
        kind = kind_of(pid)
        if kind is not None:  # else it ended in between
          self.seen.add((address, port, kind))
      time.sleep(0.3)

  def stop(self):
    self._stop_event.set()
    self.join(timeout=10)


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


def _without_a_token(home: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
  return dict(env, HOME=home, TF_CPP_MIN_LOG_LEVEL="3")


def _clients_are_refused(address: str, tmp_path) -> None:
  """Ray refuses a client without the token, or with another one; so does the search's CLI, at
  once and in one line."""
  assert raycluster.requires_token(address)  # the GCS answers UNAUTHENTICATED to a bare call
  home = str(tmp_path / "home")
  os.makedirs(home)
  join = f"import ray; ray.init(address={address!r}, log_to_driver=False); print('joined')"
  bare = subprocess.Popen([sys.executable, "-c", join], env=_without_a_token(home),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  wrong = subprocess.Popen([sys.executable, "-c", join], env=dict(
      _without_a_token(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  flags = ["--search_dir=" + str(tmp_path / "refused"), "--backend=ray", f"--ray_address={address}",
           "--search_space=micro", "--references=", "--noprogress"]
  p = run_launch("search", *flags, unset=RAY_ENV, env={"HOME": home})
  assert p.returncode == 2, p.stderr[-3000:]
  assert p.stderr.splitlines() == [
      f"error: --ray_address={address!r} requires a token, and this process has none "
      f"(RAY_AUTH_MODE is not token); allowed: {raycluster.TOKEN_ALLOWED}"], p.stderr[-3000:]
  p = run_launch("search", *flags, unset=RAY_ENV[2:], env={"HOME": home, "RAY_AUTH_MODE": "token",
                                                            "RAY_AUTH_TOKEN": "0" * 64})
  assert p.returncode == 2 and p.stderr.splitlines() == [
      f"error: --ray_address={address!r} refuses this process's token (from RAY_AUTH_TOKEN); "
      "allowed: the cluster's own token"], p.stderr[-3000:]
  assert not (tmp_path / "refused").exists()
  for client in (bare, wrong):  # Ray gives up after its connection timeout (about 20 s)
    out, err = client.communicate(timeout=300)
    assert client.returncode != 0 and "joined" not in out, out + err[-3000:]
    assert "Unauthenticated" in err or "InvalidAuthToken" in err, err[-3000:]


@pytest.mark.slow
def test_an_authenticated_search_finishes_after_a_node_is_lost(work_dir, tmp_path):
  d = str(tmp_path / "search")
  ray = os.path.join(os.path.dirname(sys.executable), "ray")
  env = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
  script = subprocess.Popen(["bash", SCRIPT, d, work_dir], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(env, PYTHON=sys.executable, RAY=ray, TRIALS="6"))
  sockets = ListeningSockets(script.pid, os.path.join(work_dir, "pgids"))
  sockets.start()
  try:
    address_file = os.path.join(work_dir, "address")
    deadline = time.monotonic() + 300
    while not os.path.exists(address_file) and script.poll() is None and time.monotonic() < deadline:
      time.sleep(0.2)
    assert os.path.exists(address_file), script.communicate()
    _clients_are_refused(open(address_file).read().strip(), tmp_path)
    out, err = script.communicate(timeout=900)
  finally:
    sockets.stop()
    if script.poll() is None:
      script.kill()
      script.wait()
  log = open(os.path.join(work_dir, "search.log")).read()
  assert script.returncode == 0, out + err + log[-3000:]
  assert "(token authentication)" in out and "killed node 2's raylet" in out, out
  # Ray saw the node die and resubmitted its task.
  assert "the node it was running on is dead" in log and "will be retried" in log
  assert oct(os.stat(os.path.join(work_dir, "auth_token")).st_mode & 0o777) == "0o600"

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
  _only_the_listed_servers_leave_loopback(sockets.seen)
  # Nothing of the cluster is left running.
  pgids = open(os.path.join(work_dir, "pgids")).read().split()
  assert len(pgids) == 2
  alive = subprocess.run(["pgrep", "-g", ",".join(pgids)], capture_output=True, text=True).stdout
  assert alive.strip() == "" or all(_is_zombie(p) for p in alive.split()), alive


def _only_the_listed_servers_leave_loopback(seen) -> None:
  table = sorted(seen, key=lambda s: (s[2], s[0], s[1]))
  print("listening while the script ran (address, port, process):")
  for address, port, kind in table:
    print(f"  {address:<20} {port:>6}  {kind}{'' if procs.is_loopback(address) else '  (exposed)'}")
  exposed = {kind for address, _, kind in seen if not procs.is_loopback(address)}
  assert {"gcs_server", "raylet", "core worker"} <= {kind for _, _, kind in seen}, table
  assert exposed <= set(EXPOSED), sorted(exposed - set(EXPOSED))


def _is_zombie(pid: str) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] == "Z"
  except FileNotFoundError:
    return True
