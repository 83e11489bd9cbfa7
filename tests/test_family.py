"""Tests of mnas_search.scaling.family and of `launch.py scale`."""

import json
import os

import pytest

import search_space
from launch_cli import run_launch
from mnas_search.scaling import family

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scale(*args):
  return run_launch("scale", *args)


def test_paper_family_is_the_named_b0_to_b7():
  members = family.scale_family(search_space.named("efficientnet-b0"), "paper")
  assert [m.phi for m in members] == list(range(8))
  for i, m in enumerate(members):
    assert m.arch == search_space.named(f"efficientnet-b{i}")
  rows = [(m.arch.width_coefficient, m.arch.depth_coefficient, m.arch.resolution,
           m.arch.dropout_rate) for m in members]
  assert rows == [(1.0, 1.0, 224, 0.2), (1.0, 1.1, 240, 0.2), (1.1, 1.2, 260, 0.3),
                  (1.2, 1.4, 300, 0.3), (1.4, 1.8, 380, 0.4), (1.6, 2.2, 456, 0.4),
                  (1.8, 2.6, 528, 0.5), (2.0, 3.1, 600, 0.5)]
  assert members[0].flops_ratio == 1.0
  assert members[7].flops_ratio == round(members[7].flops / members[0].flops, 4)


# B3-B7 take about 20 s more to build on 2 cores; they run with -m slow.
@pytest.mark.parametrize("index", [0, 1, 2] + [pytest.param(i, marks=pytest.mark.slow)
                                               for i in range(3, 8)])
def test_paper_family_trainable_params_equal_keras_applications(index):
  import keras
  members = family.scale_family(search_space.named("efficientnet-b0"), "paper")
  keras.backend.clear_session()
  reference = getattr(keras.applications, f"EfficientNetB{index}")(weights=None)
  expected = sum(int(w.numpy().size) for w in reference.trainable_weights)
  assert members[index].trainable_params == expected


def test_compound_math_is_exact_for_the_paper_triple():
  base = search_space.named("efficientnet-b0")
  members = family.scale_family(base, "compound", phis=[2])
  assert [m.phi for m in members] == [0, 2]
  assert members[0].arch == base
  a = members[1].arch
  # d = 1.2^2, w = 1.1^2, r = round8(224 * 1.15^2) = round8(296.24) = 296, dropout 0.2 + 0.1.
  assert (a.depth_coefficient, a.width_coefficient, a.resolution, a.dropout_rate) == (
      1.44, 1.21, 296, 0.3)
  assert a.name == "efficientnet-b0-phi2"
  assert members[1].flops == search_space.count_flops(a, 296, 1000)
  assert members[1].params == search_space.count_params(a, 1000)


def test_compound_custom_triple_and_fractional_phi():
  base = search_space.named("mnasnet-a1")
  _, m = family.scale_family(base, "compound", phis=["1.5"], alpha=1.3, beta=1.05, gamma=1.0)
  # d = 1.3^1.5 = 1.482228..., w = 1.05^1.5 = 1.075930..., r = 224.
  assert (m.arch.depth_coefficient, m.arch.width_coefficient, m.arch.resolution) == (
      1.482228, 1.07593, 224)
  assert m.phi == 1.5


def test_default_phis_are_one_to_seven():
  members = family.scale_family(search_space.named("mobilenet-v2"), "compound")
  assert [m.phi for m in members] == [0, 1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("kwargs, message", [
    ({"family": "paper2"}, r"family='paper2' is invalid; allowed: \['paper', 'compound'\]"),
    ({"family": "compound", "phis": [0]}, "phi=0 is invalid; allowed: numbers > 0"),
    ({"family": "compound", "phis": ["-1"]}, "phi='-1' is invalid"),
    ({"family": "compound", "phis": ["x"]}, "phi='x' is invalid"),
    ({"family": "compound", "phis": []}, "phi is empty"),
    ({"family": "compound", "alpha": 0.9}, r"alpha=0.9 is invalid; allowed: a number >= 1.0"),
    ({"family": "compound", "gamma": 0.5}, r"gamma=0.5 is invalid"),
    ({"family": "paper", "phis": [1]}, "applies to family='compound' only"),
])
def test_bad_input(kwargs, message):
  with pytest.raises(ValueError, match=message):
    family.scale_family(search_space.named("efficientnet-b0"), **kwargs)


def test_load_coefficients(tmp_path):
  path = tmp_path / "grid.json"
  path.write_text(json.dumps({"alpha": 1.25, "beta": 1.08, "gamma": 1.12, "table": []}))
  assert family.load_coefficients(str(path)) == (1.25, 1.08, 1.12)
  path.write_text(json.dumps({"best": {"alpha": 1.3, "beta": 1.1, "gamma": 1.1}}))
  assert family.load_coefficients(str(path)) == (1.3, 1.1, 1.1)
  path.write_text(json.dumps({"alpha": 1.25, "beta": 1.08}))
  with pytest.raises(ValueError, match="must hold an object with keys alpha, beta and gamma"):
    family.load_coefficients(str(path))
  path.write_text(json.dumps({"alpha": 1.25, "beta": 0.9, "gamma": 1.1}))
  with pytest.raises(ValueError, match="beta=0.9 is invalid"):
    family.load_coefficients(str(path))
  with pytest.raises(FileNotFoundError):
    family.load_coefficients(str(tmp_path / "missing.json"))


def test_cli_paper_writes_members_and_family_json(tmp_path):
  out = tmp_path / "fam"
  res = _scale("--baseline=efficientnet-b0", f"--out={out}")
  assert res.returncode == 0, res.stderr
  assert sorted(p.name for p in out.iterdir()) == sorted(
      ["family.json"] + [f"efficientnet-b{i}.json" for i in range(8)])
  for i in range(8):
    arch = search_space.Architecture.load(str(out / f"efficientnet-b{i}.json"))
    assert arch == search_space.named(f"efficientnet-b{i}")
  record = json.loads((out / "family.json").read_text())
  assert record["family"] == "paper"
  b3 = record["members"][3]
  arch = search_space.named("efficientnet-b3")
  assert b3 == {"name": "efficientnet-b3", "file": "efficientnet-b3.json", "phi": 3, "width": 1.2,
                "depth": 1.4, "resolution": 300, "dropout": 0.3,
                "params": search_space.count_params(arch), "trainable_params":
                search_space.count_trainable_params(arch),
                "flops": search_space.count_flops(arch, 300),
                "flops_ratio": round(search_space.count_flops(arch, 300)
                                     / search_space.count_flops(search_space.named(
                                         "efficientnet-b0")), 4)}
  lines = res.stdout.splitlines()
  assert lines[1].split() == ["member", "phi", "width", "depth", "res", "dropout", "params",
                              "FLOPs", "ratio", "2^phi"]
  assert lines[5].split()[:6] == ["efficientnet-b3", "3", "1.2", "1.4", "300", "0.30"]
  assert lines[5].split()[-1] == "8.000"


def test_cli_compound_with_coefficients_file(tmp_path):
  coeffs = tmp_path / "best.json"
  coeffs.write_text(json.dumps({"alpha": 1.2, "beta": 1.1, "gamma": 1.15}))
  out = tmp_path / "fam"
  res = _scale("--baseline=efficientnet-b0", "--family=compound", "--phi=1,2",
               f"--coefficients={coeffs}", f"--out={out}")
  assert res.returncode == 0, res.stderr
  record = json.loads((out / "family.json").read_text())
  assert (record["alpha"], record["beta"], record["gamma"]) == (1.2, 1.1, 1.15)
  assert record["coefficients_source"] == str(coeffs)
  assert "multiple of 8" in record["resolution_rounding"]
  assert [(m["name"], m["resolution"]) for m in record["members"]] == [
      ("efficientnet-b0", 224), ("efficientnet-b0-phi1", 256), ("efficientnet-b0-phi2", 296)]
  assert (out / "efficientnet-b0-phi2.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["--baseline=efficientnet-b0", "--family=compound", "--phi=0"], "error: --phi='0' is invalid"),
    (["--baseline=efficientnet-b0", "--family=compound", "--alpha=0.5"],
     "error: --alpha=0.5 is invalid; allowed: a number >= 1.0"),
    (["--baseline=efficientnet-b0", "--family=fancy"],
     "error: --family='fancy' is invalid; allowed: ['paper', 'compound']"),
    (["--baseline=efficientnet-b0", "--gamma=1.2"], "error: --gamma is not taken by --family=paper"),
    (["--baseline=efficientnet-b9"], "error: --baseline=efficientnet-b9: unknown architecture"),
    (["--family=paper"], "error: --baseline=NAME|PATH.json|SEARCH_DIR is required"),
])
def test_cli_bad_input(tmp_path, args, message):
  res = _scale(*args, f"--out={tmp_path / 'x'}")
  assert res.returncode == 2
  assert res.stderr.startswith(message), res.stderr
  assert not (tmp_path / "x").exists()
