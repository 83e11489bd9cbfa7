"""Process-table checks read from /proc (Linux); shared by the tests that kill searches."""

import ipaddress
import os
import socket


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


def descendants(pid: int) -> list[int]:
  """Every pid below `pid` in the process tree (children, their children, ...)."""
  out, todo = [], [pid]
  while todo:
    kids = children(todo.pop())
    out += kids
    todo += kids
  return out


def cmdline(pid: int) -> str:
  """The command line of `pid` (its argv joined by spaces; a process title as set); "" when gone."""
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
  except OSError:
    return ""


def pgid(pid: int) -> int | None:
  """The process group of `pid`; None when it is gone."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[2])
  except OSError:
    return None


def in_groups(pgids) -> list[int]:
  """The live pids whose process group is one of `pgids`."""
  pgids = set(pgids)
  return [int(n) for n in os.listdir("/proc") if n.isdigit() and pgid(int(n)) in pgids]


def _address(hexaddr: str) -> str:
  """An address of /proc/net/tcp{,6} (little-endian 32-bit words, hex) as text."""
  raw = bytes.fromhex(hexaddr)
  if len(raw) == 4:
    return socket.inet_ntop(socket.AF_INET, raw[::-1])
  return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening(pids) -> list[tuple[str, int, int]]:
  """(address, port, pid) of each TCP socket in LISTEN state that one of `pids` holds, from
  /proc/net/tcp and tcp6 (this network namespace's) and each process's file descriptors."""
  inodes = {}
  for pid in pids:
    try:
      for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
          inodes[target[8:-1]] = pid
    except OSError:
      continue
  out = []
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(table) as f:
      for line in f.readlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
          address, port = fields[1].split(":")
          out.append((_address(address), int(port, 16), inodes[fields[9]]))
  return out


def is_loopback(address: str) -> bool:
  """127.0.0.0/8, ::1, or an IPv4-mapped loopback address (::ffff:127.0.0.1)."""
  ip = ipaddress.ip_address(address)
  mapped = getattr(ip, "ipv4_mapped", None)
  return ip.is_loopback or (mapped is not None and mapped.is_loopback)
