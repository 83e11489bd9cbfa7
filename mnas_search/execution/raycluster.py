"""Ray, secure by default: a cluster on this machine stays on loopback, and a cluster joined over
the network must require Ray's token authentication.

Anyone who can reach a Ray cluster's ports can run code on it, and Ray has no authentication
unless it is started with RAY_AUTH_MODE=token (Ray >= 2.52; the token comes from RAY_AUTH_TOKEN,
the file RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, in that order). So:

- `import_ray(address)` imports Ray for a cluster at `address`. For one on this machine (no
  address: a local Ray started here; or a loopback address) it puts Ray in its single-machine
  mode, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (unless that is set otherwise): without it Ray
  replaces 127.0.0.1 by the machine's reachable address, and its servers then listen on every
  interface. The processes Ray starts read the variable; this one read it when it imported Ray,
  so `_single_machine_mode` sets Ray's constant too.
- `check_cluster(address)` asks the cluster's GCS, before joining, whether it refuses a client
  without a token, and whether it accepts the token this process would send; it raises a
  FieldError naming `ray_address` otherwise. The question is a bare gRPC call of
  NodeInfoGcsService/GetClusterId (an empty request), answered UNAUTHENTICATED by a cluster with
  token authentication.
"""

from __future__ import annotations

import enum
import ipaddress
import os

from nas_common import FieldError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 as the node address
AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = os.path.join("~", ".ray", "auth_token")
GCS_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"
ADDRESS_ALLOWED = "HOST:PORT of a running Ray head (its GCS port, e.g. 10.0.0.5:6379)"
TOKEN_ALLOWED = (f"{AUTH_MODE_ENV}=token in the environment, with the cluster's token in {TOKEN_ENV}, "
                 f"the file {TOKEN_PATH_ENV} or {DEFAULT_TOKEN_PATH}")


class Auth(enum.Enum):
  """What a cluster's GCS answered a call: it accepted it, or it refused its token (or none)."""

  ACCEPTED = "accepted"
  REFUSED = "refused"


def split_address(address: str) -> tuple[str, int] | None:
  """(host, port) of `HOST:PORT` or `[V6HOST]:PORT`; None for anything else (ray://..., auto)."""
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or "/" in host:
    return None
  return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
  """Whether `host` names this machine's loopback (127.0.0.0/8, ::1, localhost)."""
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return host == "localhost"


def on_this_machine(address: str | None) -> bool:
  """A local Ray (no address), or a cluster whose head is on a loopback address."""
  if not address:
    return True
  parts = split_address(address)
  return parts is not None and is_loopback(parts[0])


def import_ray(address: str | None):
  """The `ray` module, for a cluster at `address` (None: a local Ray started by this process).

  Raises:
    FieldError: (naming `backend`) Ray is not installed.
  """
  local = on_this_machine(address)
  if local:
    os.environ.setdefault(LOOPBACK_ENV, "0")
  try:
    import ray
  except ImportError:
    raise FieldError("backend", "ray", "inline or process (ray needs Ray: pip install '.[ray]')",
                     message="backend='ray' needs Ray: pip install '.[ray]'") from None
  if local and os.environ[LOOPBACK_ENV] == "0":
    _single_machine_mode()
  return ray


def _single_machine_mode() -> None:
  """Ray's constant behind RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, read when Ray was imported (maybe
  before this module set the variable): False keeps 127.0.0.1 as this node's address.

  Private API: `ray._private.ray_constants.ENABLE_RAY_CLUSTER`; tests/test_raycluster.py fails
  loudly if it moves.
  """
  from ray._private import ray_constants
  ray_constants.ENABLE_RAY_CLUSTER = False


def client_token() -> tuple[str | None, str]:
  """The token that Ray would send from this process, and where it comes from; (None, why) when it
  would send none: RAY_AUTH_MODE is not "token", RAY_AUTH_TOKEN_PATH names no readable file (Ray
  itself would abort), or no source holds a token."""
  if os.environ.get(AUTH_MODE_ENV, "").strip().lower() != "token":
    return None, f"{AUTH_MODE_ENV} is not token"
  if os.environ.get(TOKEN_ENV, "").strip():
    return os.environ[TOKEN_ENV].strip(), TOKEN_ENV
  path = os.environ.get(TOKEN_PATH_ENV, "")
  if path:
    token = _first_line(path)
    return (token or None), f"{TOKEN_PATH_ENV}={path}" + ("" if token else " is missing or empty")
  token = _first_line(os.path.expanduser(DEFAULT_TOKEN_PATH))
  return (token, DEFAULT_TOKEN_PATH) if token else (None, f"no token in {TOKEN_ENV}, "
                                                          f"{TOKEN_PATH_ENV} or {DEFAULT_TOKEN_PATH}")


def _first_line(path: str) -> str:
  try:
    with open(path) as f:
      return f.readline().strip()
  except OSError:
    return ""


def gcs_auth(address: str, token: str | None, timeout_s: float = 10.0) -> Auth:
  """Whether the GCS at `address` (HOST:PORT) accepts a call with `token` (None: no token).

  Raises:
    FieldError: (naming `ray_address`) an address that is not HOST:PORT, or no GCS answers there.
  """
  import grpc
  parts = split_address(address)
  if parts is None:
    raise FieldError("ray_address", address, ADDRESS_ALLOWED,
                     detail=" (its authentication cannot be checked)")
  metadata = [("authorization", f"Bearer {token}")] if token else None
  with grpc.insecure_channel(address) as channel:
    call = channel.unary_unary(GCS_PROBE_METHOD, request_serializer=lambda _: b"",
                               response_deserializer=lambda data: data)
    try:
      call(None, timeout=timeout_s, metadata=metadata, wait_for_ready=True)
    except grpc.RpcError as e:
      if e.code() == grpc.StatusCode.UNAUTHENTICATED:
        return Auth.REFUSED
      raise FieldError("ray_address", address, ADDRESS_ALLOWED,
                       reason=f"does not answer ({e.code().name} after {timeout_s:g}s)") from None
  return Auth.ACCEPTED


def requires_token(address: str, timeout_s: float = 10.0) -> bool:
  """Whether the cluster at `address` refuses a client without a token (RAY_AUTH_MODE=token)."""
  return gcs_auth(address, None, timeout_s) is Auth.REFUSED


def check_token(address: str, timeout_s: float = 10.0) -> None:
  """Raises a FieldError naming `ray_address` unless this process has a token that the cluster
  at `address` accepts (call it for a cluster that `requires_token`)."""
  token, source = client_token()
  if token is None:
    raise FieldError("ray_address", address, TOKEN_ALLOWED,
                     reason=f"requires a token, and this process has none ({source})")
  if gcs_auth(address, token, timeout_s) is Auth.REFUSED:
    raise FieldError("ray_address", address, "the cluster's own token",
                     reason=f"refuses this process's token (from {source})")


def check_cluster(address: str, allow_insecure: bool = False, timeout_s: float = 10.0) -> None:
  """Before joining the cluster at `address`: it must require a token and accept this process's.

  Args:
    address: HOST:PORT of the cluster's head.
    allow_insecure: join a cluster without authentication all the same (nothing is checked).
    timeout_s: how long to wait for the GCS to answer.

  Raises:
    FieldError: naming `ray_address`.
  """
  if allow_insecure:
    return
  if not requires_token(address, timeout_s):
    raise FieldError("ray_address", address, "a cluster started with RAY_AUTH_MODE=token, or "
                     "allow_insecure=True to join it anyway",
                     reason="accepts clients without a token (anyone who can reach its ports can "
                     "run code on it)")
  check_token(address, timeout_s)
