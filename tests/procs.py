"""Process-table checks read from /proc (Linux); shared by the tests that kill searches."""

import os


def children(pid: int) -> list[int]:
  """The pids whose parent is `pid`."""
  out = []
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open(f"/proc/{name}/stat") as f:
          fields = f.read().rsplit(")", 1)[1].split()
      except OSError:
        continue
      if int(fields[1]) == pid:
        out.append(int(name))
  return out


def alive(pid: int) -> bool:
  """Whether `pid` runs: gone and zombie (exited, not yet reaped) both count as not alive."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False
