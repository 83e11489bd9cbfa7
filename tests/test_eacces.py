"""A directory the search may not write, for real: the search runs as an unprivileged user.

Root writes anywhere, so the tests (which run as root) never met EACCES; here the search runs as
`nobody` (setpriv, no PAM session) and must end with exit status 1 and one line on stderr that
names the file and the errno (`common.os_error_line`). Skipped unless run as root with a `nobody`
user and setpriv.
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

from launch_cli import ROOT

USER = "nobody"
SITE = sysconfig.get_paths()["purelib"]  # this venv's packages
# Runs launch.py with this venv's packages on an interpreter given as argv[0] (-S: no system
# site-packages; the venv's are added by hand, its .pth files included).
LAUNCH = ("import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); sys.path.insert(0, {root!r}); "
          "sys.argv[0] = 'launch.py'; runpy.run_path({launch!r}, run_name='__main__')").format(
              root=ROOT, launch=os.path.join(ROOT, "launch.py"))
SEARCH = ["search", "--search_space=micro", "--controller=random", "--references=", "--trials=1",
          "--trials_per_update=1", "--backend=inline", "--target_flops=1e6", "--noprogress",
          "--dataset=synthetic:size=8,channels=1,classes=2,train=64,test=16",
          "--proxy_val_images=16", "--proxy_train_images=48", "--proxy_batch_size=16",
          "--proxy_steps=1", "--proxy_width=0.25"]
# absl's log lines (a search logs each trial); every other line of stderr is the search's own.
ABSL_LOG = re.compile(r"[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
EACCES_END = (": EACCES (Permission denied); free space or fix the permissions, then run the same "
              "command to resume")


def _as_user(uid: int, gid: int, argv: list[str], home: str, timeout: float = 300):
  env = {"PATH": "/usr/bin:/bin", "HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3",
         "TF_USE_LEGACY_KERAS": "1", "LANG": "C.UTF-8"}
  return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
                         *argv], capture_output=True, text=True, env=env, cwd="/", timeout=timeout)


def _interpreter(uid: int, gid: int, home: str) -> list[str]:
  """An interpreter that `uid` can run with this venv's packages: this one, or else the system's
  of the same version (this venv's may live in a folder `uid` cannot enter, e.g. /root/.pyenv);
  skips, saying why, when there is none."""
  version = f"python{sys.version_info.major}.{sys.version_info.minor}"
  tried = []
  for exe in dict.fromkeys([sys.executable, os.path.realpath(sys.executable),
                            shutil.which(version) or f"/usr/bin/{version}"]):
    probe = _as_user(uid, gid, [exe, "-S", "-c", "import site, sys; site.addsitedir(sys.argv[1]); "
                                "import absl, numpy; print(sys.version_info[:2])", SITE], home)
    if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
      return [exe, "-S", "-c", LAUNCH, SITE]
    tried.append(f"{exe}: {(probe.stderr.strip().splitlines() or [probe.stdout.strip()])[-1]}")
  pytest.skip(f"{USER} cannot run a Python {version} with {SITE}: " + "; ".join(tried))


@pytest.fixture
def nobody():
  """(uid, gid, interpreter argv, a folder that only root may write: mode 0755, root-owned, under
  a 0755 parent that `nobody` can reach)."""
  if os.geteuid() != 0:
    pytest.skip("switching to an unprivileged user needs root")
  try:
    user = pwd.getpwnam(USER)
  except KeyError:
    pytest.skip(f"no user {USER!r} on this machine")
  if shutil.which("setpriv") is None:
    pytest.skip("setpriv (util-linux) is not installed")
  folder = tempfile.mkdtemp(prefix="eacces-", dir="/tmp")  # pytest's tmp_path is in a 0700 folder
  os.chmod(folder, 0o755)
  os.makedirs(os.path.join(folder, "home"))
  os.chown(os.path.join(folder, "home"), user.pw_uid, user.pw_gid)
  try:
    yield user.pw_uid, user.pw_gid, _interpreter(user.pw_uid, user.pw_gid,
                                                 os.path.join(folder, "home")), folder
  finally:
    shutil.rmtree(folder)


def _error_lines(p) -> list[str]:
  """stderr without absl's log lines; exit status 1 checked."""
  assert p.returncode == 1, p.stderr[-3000:]
  return [line for line in p.stderr.splitlines() if not ABSL_LOG.match(line)]


def _single_eacces_line(p, path: str) -> None:
  assert _error_lines(p) == [f"error: {path!r}{EACCES_END}"], p.stderr[-3000:]


@pytest.mark.parametrize("where", ["existing", "new"])
def test_a_search_in_a_folder_it_cannot_write_names_the_file_and_the_errno(nobody, where):
  """The folder exists (the lock file is the first write), or must be made in a parent that
  `nobody` cannot write; either way nothing is written and nothing trains."""
  uid, gid, python, folder = nobody
  os.makedirs(os.path.join(folder, "s"))
  search_dir = os.path.join(folder, "s") if where == "existing" else os.path.join(folder, "s", "new")
  first_write = os.path.join(search_dir, ".lock") if where == "existing" else search_dir
  p = _as_user(uid, gid, [*python, *SEARCH, f"--search_dir={search_dir}"],
               os.path.join(folder, "home"))
  _single_eacces_line(p, first_write)
  assert os.listdir(os.path.join(folder, "s")) == []


def test_a_checkpoint_that_cannot_be_written_names_the_file_and_the_errno(nobody):
  """The search may write its folder but not controller/ (root's, 0755): the child trains and its
  record is stored, then the controller's checkpoint is refused; the search stops with that file's
  line (not a traceback), and the stored record stays for the resume."""
  uid, gid, python, folder = nobody
  search_dir = os.path.join(folder, "s")
  os.makedirs(os.path.join(search_dir, "controller"))
  os.chown(search_dir, uid, gid)
  p = _as_user(uid, gid, [*python, *SEARCH, f"--search_dir={search_dir}"],
               os.path.join(folder, "home"))
  lines = _error_lines(p)
  assert len(lines) == 1, p.stderr[-3000:]
  assert lines[0].startswith(f"error: '{os.path.join(search_dir, 'controller')}{os.sep}"), lines
  assert lines[0].endswith("'" + EACCES_END), lines
  with open(os.path.join(search_dir, "trials.jsonl")) as f:
    assert [(r["trial"], r["status"]) for r in map(json.loads, f)] == [(0, "ok")]
  assert os.listdir(os.path.join(search_dir, "controller")) == []
