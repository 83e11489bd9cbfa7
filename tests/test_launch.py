"""Tests for launch.py: the describe command and the CLI's error handling."""

import json
import os

import pytest

import search_space
from launch_cli import run_launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=120):
  return run_launch(*args, timeout=timeout)


def test_describe_json_b0():
  p = run_cli("describe", "--arch=efficientnet-b0", "--json")
  assert p.returncode == 0, p.stderr
  d = json.loads(p.stdout)
  assert d == {"name": "efficientnet-b0", "blocks": list(search_space.scaling.EFFICIENTNET_B0_BLOCKS),
               "width_coefficient": 1.0, "depth_coefficient": 1.0, "resolution": 224,
               "params": 5330564, "trainable_params": 5288548, "flops": 385814752}


def test_describe_human_readable_and_resolution():
  p = run_cli("describe", "--arch=mnasnet-a1", "--resolution=192")
  assert p.returncode == 0, p.stderr
  assert "r1_k3_s11_e1_i32_o16_noskip" in p.stdout
  flops = search_space.count_flops(search_space.named("mnasnet-a1"), 192)
  assert f"{flops:,}" in p.stdout


def test_describe_blocks_and_json_file(tmp_path):
  p = run_cli("describe", "--blocks=r1_k3_s11_e1_i32_o16,r2_k5_s22_e6_i16_o24_se0.25",
              "--activation=relu", "--width_coefficient=0.5", "--num_classes=10", "--json")
  assert p.returncode == 0, p.stderr
  d = json.loads(p.stdout)
  arch = search_space.Architecture(blocks=("r1_k3_s11_e1_i32_o16", "r2_k5_s22_e6_i16_o24_se0.25"),
                                   activation="relu", width_coefficient=0.5)
  assert (d["params"], d["flops"]) == (search_space.count_params(arch, 10),
                                       search_space.count_flops(arch, 224, 10))
  path = tmp_path / "a.json"
  path.write_text(arch.replace(name="mine").to_json())
  d2 = json.loads(run_cli("describe", f"--arch={path}", "--num_classes=10", "--json").stdout)
  assert d2["name"] == "mine" and d2["flops"] == d["flops"]


@pytest.mark.parametrize("args, fragment", [
    (["describe", "--arch=efficientnet-b9"], "--arch=efficientnet-b9: unknown architecture"),
    (["describe", "--blocks=r1_k3_s33_e1_i32_o16"], "stride 's33' is invalid; allowed: s11 or s22"),
    (["describe", "--blocks=r-1_k3_s11_e1_i32_o16"], "'r-1' is not understood"),
    (["describe", "--arch=efficientnet-b0", "--resolution=0"], "--resolution=0 is invalid"),
    (["describe"], "--arch (a name or a JSON path) or --blocks is required"),
    (["frobnicate"], "unknown command 'frobnicate'"),
])
def test_cli_errors_are_one_clear_line(args, fragment):
  p = run_cli(*args)
  assert p.returncode == 2
  assert fragment in p.stderr
  assert "Traceback" not in p.stderr


def test_describe_unknown_json_key(tmp_path):
  d = search_space.named("efficientnet-b0").to_dict()
  d["extra"] = 1
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(d))
  p = run_cli("describe", f"--arch={path}")
  assert p.returncode == 2 and "unknown key(s) ['extra']" in p.stderr
