"""A full disk, for real: a tiny tmpfs filled to the last page while files are written.

Needs root (to mount the tmpfs); skipped otherwise. Each test mounts its own tmpfs and unmounts it
in teardown, whatever happened.
"""

import errno
import os
import subprocess

import pytest

from mnas_search.search.multi_trial import SearchConfig, run_search
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import fileio

TASK = ProxyTask(dataset="synthetic", resolution=16, train_images=128, val_images=64, epochs=1,
                 batch_size=64, proxy_width=0.25)


@pytest.fixture
def tiny_fs(tmp_path):
  """A 2 MiB tmpfs mounted at tmp_path/fs (unmounted in teardown, lazily if a file is still open)."""
  if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs needs root")
  mnt = str(tmp_path / "fs")
  os.makedirs(mnt)
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], capture_output=True,
                     text=True)
  if r.returncode:
    pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
  try:
    yield mnt
  finally:
    if subprocess.run(["umount", mnt], capture_output=True).returncode:
      subprocess.run(["umount", "-l", mnt], check=True)  # busy: a writer left open by a failure


def fill(path):
  """Writes `path` until the filesystem has no byte left; returns the bytes written."""
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  written = 0
  try:
    for chunk in (1 << 16, 1 << 12, 1):
      while True:
        try:
          written += os.write(fd, b"x" * chunk)
        except OSError as e:
          assert e.errno == errno.ENOSPC, e
          break
  finally:
    os.close(fd)
  return written


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temp(tiny_fs):
  path = os.path.join(tiny_fs, "best.json")
  fileio.atomic_write_json(path, {"trial": 1})
  fill(os.path.join(tiny_fs, "filler"))
  with pytest.raises(OSError) as e:
    fileio.atomic_write_json(path, {"trial": 2, "blocks": ["x" * 100] * 100})
  assert (e.value.errno, e.value.filename) == (errno.ENOSPC, path)
  assert fileio.read_json(path) == {"trial": 1}
  assert sorted(os.listdir(tiny_fs)) == ["best.json", "filler"]


def test_append_on_a_full_disk_leaves_no_torn_line(tiny_fs):
  path = os.path.join(tiny_fs, "trials.jsonl")
  fileio.append_jsonl(path, {"trial": 0})
  fill(os.path.join(tiny_fs, "filler"))
  # The file's last page has room for part of this line only: the write is cut short.
  big = {"trial": 1, "blocks": ["x" * 100] * 100}
  with pytest.raises(OSError) as e:
    fileio.append_jsonl(path, big)
  assert (e.value.errno, e.value.filename) == (errno.ENOSPC, path)
  with open(path) as f:
    assert f.read() == '{"trial": 0}\n'  # as it was: the part that fitted was taken back
  os.remove(os.path.join(tiny_fs, "filler"))
  fileio.append_jsonl(path, big)
  assert fileio.read_jsonl(path) == [{"trial": 0}, big]


def _config():
  return SearchConfig(space="micro", controller="evolution",
                      controller_hparams=(("population_size", 2), ("tournament_size", 2)),
                      trials=4, trials_per_update=2, task=TASK, references=(), target_flops=30e6,
                      deterministic=True, seed=3, backend="inline", workers=1)


def _essence(search_dir):
  """What must be the same as in a search never interrupted: every trial once, every update once."""
  trials = fileio.read_jsonl(os.path.join(search_dir, "trials.jsonl"))
  updates = fileio.read_jsonl(os.path.join(search_dir, "updates.jsonl"))
  best = fileio.read_json(os.path.join(search_dir, "best.json"))
  return {"trials": [(r["trial"], r["indices"], r["status"], r["accuracy"], r["reward"],
                      r["update"]) for r in trials],
          "updates": [(u["update"], u["trials"]) for u in updates],
          "best": (best["trial"], best["reward"])}


@pytest.mark.slow
def test_search_on_a_full_disk_fails_then_resumes_with_nothing_lost(tiny_fs, tmp_path):
  d = os.path.join(tiny_fs, "search")
  filler = os.path.join(tiny_fs, "filler")

  def fill_after_trial_2(rec):
    if rec["trial"] == 2:
      fill(filler)

  with pytest.raises(OSError) as e:
    run_search(d, _config(), show_progress=False, on_trial=fill_after_trial_2)
  # Where it fails depends on which file needs a new page first: fileio names the file; the
  # controller's checkpoint writer (controller/base.py) raises with filename None.
  assert e.value.errno == errno.ENOSPC, e.value
  assert e.value.filename is None or e.value.filename.startswith(d + "/"), e.value
  before = _essence(d)
  print(f"failed at {e.value}; stored before: {before}")
  os.remove(filler)
  summary = run_search(d, _config(), show_progress=False)
  assert (summary.trials, summary.updates) == (4, 2)

  reference = str(tmp_path / "reference")  # the same search on a roomy disk, never interrupted
  run_search(reference, _config(), show_progress=False)
  after = _essence(d)
  assert after["trials"][:len(before["trials"])] == before["trials"]  # kept, not retrained
  assert [t[0] for t in after["trials"]] == [0, 1, 2, 3]
  assert after["updates"] == [(0, 2), (1, 4)]
  assert after == _essence(reference)
