"""mnas_search.execution.raycluster: a cluster joined with --ray_address must require a token and accept
this process's; a cluster on this machine stays on loopback.

The GCS here is a stand-in gRPC server that answers GetClusterId as Ray's GCS does (checked
against a real token-authenticated cluster by tests/test_ray_cluster.py, slow): UNAUTHENTICATED
without `authorization: Bearer TOKEN` when it has a token, else an empty reply.
"""

import concurrent.futures
import os

import pytest
from test_cli import run_in_process

from mnas_search.execution import raycluster
from nas_common import FieldError

grpc = pytest.importorskip("grpc")
TOKEN = "a" * 64


class FakeGcs:
  """NodeInfoGcsService/GetClusterId on 127.0.0.1; refuses a call without `token` when given."""

  def __init__(self, token=None):
    def get_cluster_id(request, context):
      given = dict(context.invocation_metadata()).get("authorization")
      if token and given != f"Bearer {token}":
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: Authentication token is "
                      "missing or incorrect")
      return b""

    service, method = raycluster.GCS_PROBE_METHOD.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(service, {method: grpc.unary_unary_rpc_method_handler(
        get_cluster_id, request_deserializer=lambda data: data, response_serializer=lambda r: r)})
    self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    self.server.add_generic_rpc_handlers((handler,))
    self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
    self.server.start()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.server.stop(None)


@pytest.fixture
def no_token(monkeypatch, tmp_path):
  """An environment without any Ray token (HOME has no ~/.ray/auth_token)."""
  for name in (raycluster.AUTH_MODE_ENV, raycluster.TOKEN_ENV, raycluster.TOKEN_PATH_ENV):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  return monkeypatch


@pytest.mark.parametrize("address, parts, local", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379), True), ("localhost:1", ("localhost", 1), True),
    ("[::1]:6379", ("::1", 6379), True), ("127.0.0.2:80", ("127.0.0.2", 80), True),
    ("10.0.0.5:6379", ("10.0.0.5", 6379), False), ("head.example:6379", ("head.example", 6379), False),
    ("ray://10.0.0.5:10001", None, False), ("auto", None, False), ("10.0.0.5", None, False),
])
def test_addresses(address, parts, local):
  assert raycluster.split_address(address) == parts
  assert raycluster.on_this_machine(address) is local
  assert raycluster.on_this_machine(None) and raycluster.on_this_machine("")


def test_the_token_is_found_where_ray_looks_for_it(no_token, tmp_path):
  assert raycluster.client_token() == (None, "RAY_AUTH_MODE is not token")
  no_token.setenv("RAY_AUTH_MODE", "token")
  assert raycluster.client_token()[0] is None
  (tmp_path / ".ray").mkdir()
  (tmp_path / ".ray" / "auth_token").write_text("fromhome\n")
  assert raycluster.client_token() == ("fromhome", os.path.join("~", ".ray", "auth_token"))
  path = tmp_path / "token"
  path.write_text(" frompath \n")
  no_token.setenv("RAY_AUTH_TOKEN_PATH", str(path))
  assert raycluster.client_token() == ("frompath", f"RAY_AUTH_TOKEN_PATH={path}")
  no_token.setenv("RAY_AUTH_TOKEN", "fromenv")  # Ray's order: the variable first
  assert raycluster.client_token() == ("fromenv", "RAY_AUTH_TOKEN")
  no_token.delenv("RAY_AUTH_TOKEN")
  no_token.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
  assert raycluster.client_token() == (None, f"RAY_AUTH_TOKEN_PATH={tmp_path / 'missing'} is missing "
                                       "or empty")


def test_a_cluster_without_authentication_is_refused_unless_allowed(no_token):
  with FakeGcs() as gcs:
    assert not raycluster.requires_token(gcs.address)
    with pytest.raises(FieldError) as e:
      raycluster.check_cluster(gcs.address)
    assert e.value.field == "ray_address" and "accepts clients without a token" in str(e.value)
    raycluster.check_cluster(gcs.address, allow_insecure=True)


def test_a_token_cluster_needs_this_processs_token(no_token):
  with FakeGcs(token=TOKEN) as gcs:
    assert raycluster.requires_token(gcs.address)
    with pytest.raises(FieldError, match=r"requires a token, and this process has none \(RAY_AUTH_MODE "
                                         "is not token\)"):
      raycluster.check_cluster(gcs.address)
    no_token.setenv("RAY_AUTH_MODE", "token")
    no_token.setenv("RAY_AUTH_TOKEN", "b" * 64)
    with pytest.raises(FieldError, match=r"refuses this process's token \(from RAY_AUTH_TOKEN\)"):
      raycluster.check_cluster(gcs.address)
    no_token.setenv("RAY_AUTH_TOKEN", TOKEN)
    raycluster.check_cluster(gcs.address)


def test_an_address_nobody_answers_or_that_cannot_be_checked_is_named():
  with FakeGcs() as gcs:
    address = gcs.address
  with pytest.raises(FieldError, match=r"ray_address='127.0.0.1:\d+' does not answer"):
    raycluster.requires_token(address, timeout_s=0.5)
  with pytest.raises(FieldError, match=r"ray_address='ray://h:10001' is invalid \(its authentication "
                                       r"cannot be checked\); allowed: HOST:PORT"):
    raycluster.requires_token("ray://h:10001")


SEARCH = ["--search_space=micro", "--backend=ray", "--references=", "--noprogress"]


def test_the_cli_refuses_a_cluster_without_authentication_in_one_line(no_token, tmp_path, capsys):
  with FakeGcs() as gcs:
    code, err = run_in_process("search", f"--search_dir={tmp_path / 's'}", *SEARCH,
                               f"--ray_address={gcs.address}", capsys=capsys)
  assert code == 2 and err == [
      f"error: --ray_address={gcs.address} is a Ray cluster without authentication: anyone who can "
      "reach its ports can run code on it; allowed: a cluster started with RAY_AUTH_MODE=token (see "
      "scripts/ray_two_nodes.sh), or --ray_allow_insecure to join it anyway"]
  assert not (tmp_path / "s").exists()


def test_the_cli_names_a_missing_token_in_one_line(no_token, tmp_path, capsys):
  with FakeGcs(token=TOKEN) as gcs:
    code, err = run_in_process("search", f"--search_dir={tmp_path / 's'}", *SEARCH,
                               f"--ray_address={gcs.address}", capsys=capsys)
  assert code == 2 and len(err) == 1, err
  assert err[0].startswith(f"error: --ray_address='{gcs.address}' requires a token, and this "
                           "process has none (RAY_AUTH_MODE is not token); allowed: RAY_AUTH_MODE=token")
  assert not (tmp_path / "s").exists()


def test_ray_allow_insecure_skips_the_check():
  from test_cli import command_flags

  from mnas_search.cli import common
  fv = command_flags("search")
  fv(["launch.py", "--backend=ray", "--ray_address=127.0.0.1:1", "--ray_allow_insecure"])
  common.check_ray_cluster(fv)  # nothing is asked: port 1 answers nothing


def test_the_gcs_method_is_still_the_one_ray_serves():
  """The probe's gRPC method (a wire contract of Ray's GCS) is in Ray's generated stubs."""
  pytest.importorskip("ray")
  import inspect

  from ray.core.generated import gcs_service_pb2_grpc
  assert f"'{raycluster.GCS_PROBE_METHOD}'" in inspect.getsource(
      gcs_service_pb2_grpc.NodeInfoGcsServiceStub)


def test_rays_single_machine_constant_is_still_where_import_ray_sets_it():
  """raycluster._single_machine_mode sets it; services.get_node_ip_address reads it."""
  pytest.importorskip("ray")
  import inspect

  from ray._private import ray_constants, services
  assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
  assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == raycluster.LOOPBACK_ENV
  assert "ray_constants.ENABLE_RAY_CLUSTER" in inspect.getsource(services.get_node_ip_address)
