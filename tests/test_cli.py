"""Tests for mnas_search/cli: per-command flags, errors that name the flag, a quiet start-up."""

import json
import re

import pytest
from absl import flags

import launch
from launch_cli import run_launch
from mnas_search import cli
from mnas_search.cli import common, quiet
from mnas_search.training.proxy import ProxyTask, ProxyTaskError

# Lines of TF's C++ start-up (oneDNN, the CUDA stub, cuInit, absl's pre-init banner).
TF_STARTUP = re.compile(r"cuInit|oneDNN|absl::InitializeLog|cuda_|cudart|E0000|I0000|W0000")
TINY_PROXY = ["--dataset=synthetic:size=16,channels=3,classes=4,train=96,test=32",
              "--proxy_resolution=16", "--proxy_train_images=64", "--proxy_val_images=32",
              "--proxy_batch_size=32", "--proxy_steps=1", "--proxy_width=0.25"]


def run_in_process(command, *args, capsys):
  """`launch.py command *args` in this process on a fresh FlagValues: (exit code, stderr lines)."""
  with pytest.raises(SystemExit) as e:
    launch.run_command(command, ["launch.py", *args], flags.FlagValues())
  return e.value.code, capsys.readouterr().err.splitlines()


def command_flags(command):
  fv = flags.FlagValues()
  cli.command_module(command).define_flags(fv)
  return fv


@pytest.mark.parametrize("command, flag", [
    ("describe", "--trials=5"), ("describe", "--proxy_epochs=2"), ("report", "--json"),
    ("scale", "--backend=process"), ("train", "--tpu=local"), ("grid", "--cost_resolution=224"),
    ("export", "--dataset=cifar10"),
])
def test_a_command_refuses_flags_it_does_not_use(command, flag, capsys):
  code, err = run_in_process(command, flag, capsys=capsys)
  name = flag.split("=")[0]
  assert code == 2 and len(err) == 1
  assert err[0].startswith(f"error: {name} is not taken by {command}; allowed: --")


def test_the_refusal_lists_exactly_the_commands_flags(capsys):
  _, err = run_in_process("describe", "--trials=5", capsys=capsys)
  assert err == ["error: --trials is not taken by describe; allowed: --activation, --arch, --blocks, "
                 "--depth_coefficient, --json, --num_classes, --resolution, --stem_stride, "
                 "--width_coefficient"]


def test_every_flag_of_every_command_refuses_a_bad_value(capsys):
  """Walks the flag registry: a wrong-typed value, and one below the bound where there is one."""
  checked = 0
  for command in cli.COMMANDS:
    fv = command_flags(command)
    for name in common.own_flags(fv):
      parser = fv[name].parser
      bad = []
      if isinstance(parser, (flags.IntegerParser, flags.FloatParser)):
        bad.append(("x1", "an integer" if isinstance(parser, flags.IntegerParser) else "a number"))
        if parser.lower_bound is not None:
          bad.append((str(parser.lower_bound - 1), f">= {parser.lower_bound}"))
      elif isinstance(parser, flags.BooleanParser):
        bad.append(("maybe", "true or false"))
      elif isinstance(parser, flags.EnumParser):
        bad.append(("nope", ", ".join(parser.enum_values)))
      for value, allowed in bad:
        code, err = run_in_process(command, f"--{name}={value}", capsys=capsys)
        assert (code, len(err)) == (2, 1), (command, name, err)
        assert err[0].startswith(f"error: --{name}={value} is invalid; allowed: "), err
        assert allowed in err[0] and "Traceback" not in err[0]
        checked += 1
  assert checked > 60


def test_shared_flag_groups_are_defined_once():
  for command in ("evaluate", "search", "grid", "fidelity"):
    fv = command_flags(command)
    for name in ("dataset", "proxy_resolution", "proxy_lr", "seed"):
      assert fv[name].default == command_flags("evaluate")[name].default
    assert {f.name for f in fv.get_flags_for_module("mnas_search.cli.common")} >= {
        "dataset", "proxy_epochs", "proxy_grayscale_to_rgb", "seed", "strategy"}
  assert "backend" in command_flags("grid") and "backend" not in command_flags("evaluate")


@pytest.mark.parametrize("command, field, flag", [
    ("evaluate", "resolution", "proxy_resolution"), ("train", "resolution", "train_resolution"),
    ("fidelity", "epochs", "fidelity_epochs"), ("search", "epochs", "proxy_epochs"),
    ("grid", "tolerance", "grid_tolerance"), ("search", "trials", "trials"),
    ("describe", "trials", None),  # a field whose flag the command lacks
])
def test_field_to_flag_table(command, field, flag):
  assert common.flag_of(command, field, command_flags(command)) == flag


def test_library_field_errors_name_the_flag():
  fv = command_flags("train")
  with pytest.raises(ProxyTaskError) as e:
    ProxyTask(resolution=0)
  assert common.error_line(e.value, "train", fv) == (
      "--train_resolution=0 is invalid; allowed: an integer >= 1")
  assert common.error_line(e.value, "evaluate", command_flags("evaluate")).startswith(
      "--proxy_resolution=0 is invalid")
  assert common.error_line(ValueError("plain words"), "train", fv) == "plain words"


@pytest.mark.parametrize("line, level, hidden", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", 1, True),
    ("I0000 00:00:1795698969.760144    5811 port.cc:153] oneDNN custom operations are on.\n", 1, True),
    ("E0000 00:00:1795698970.948126    5811 cuda_platform.cc:52] failed call to cuInit: X\n", 2, False),
    ("E0000 00:00:1795698970.948126    5811 cuda_platform.cc:52] failed call to cuInit: X\n", 3, True),
    ("I0000 00:00:1795698969.760144    5811 port.cc:153] oneDNN custom operations are on.\n", 0, False),
    ("UserWarning: something real\n", 3, False),
])
def test_startup_lines_obey_the_log_level(line, level, hidden):
  assert quiet.is_hidden(line, level) is hidden


def test_describe_prints_no_tf_startup_lines():
  p = run_launch("describe", "--arch=efficientnet-b0", unset=("TF_CPP_MIN_LOG_LEVEL",))
  assert p.returncode == 0 and not TF_STARTUP.search(p.stderr), p.stderr


def test_evaluate_prints_no_tf_startup_lines(tmp_path):
  """The user sets no variable (run_launch's TF_CPP_MIN_LOG_LEVEL is removed)."""
  import search_space
  arch = tmp_path / "tiny.json"  # a two-block network: the start-up is what is checked, not the child
  arch.write_text(json.dumps(search_space.Architecture(blocks=("r1_k3_s11_e1_i32_o16", "r1_k3_s22_e3_i16_o24"),
                                                       name="tiny").to_dict()))
  p = run_launch("evaluate", f"--arch={arch}", *TINY_PROXY, "--json", unset=("TF_CPP_MIN_LOG_LEVEL",))
  assert p.returncode == 0, p.stderr
  assert [line for line in p.stderr.splitlines() if TF_STARTUP.search(line)] == []


def test_search_oneshot_flag_defaults_are_oneshot_configs():
  from mnas_search.cli import search
  from mnas_search.search.oneshot.search import OneShotConfig
  fv = command_flags("search")
  field = {"oneshot_paths_per_step": "paths_per_step", "oneshot_path_rule": "path_rule",
           "oneshot_private_weights": "private_weights", "oneshot_zero_init_residual": "zero_init_residual"}
  assert {k: fv[k].default for k in search.ONESHOT_DEFAULTS} == {
      k: getattr(OneShotConfig(), field.get(k, k)) for k in search.ONESHOT_DEFAULTS} == {
      "oneshot_epochs": 10, "oneshot_warmup_fraction": 0.25, "oneshot_top_k": 3,
      "oneshot_paths_per_step": 1, "oneshot_path_rule": "controller", "oneshot_private_weights": False,
      "oneshot_zero_init_residual": False}


@pytest.mark.parametrize("args, line", [
    (["--oneshot_epochs=2"], "error: --oneshot_epochs is not taken by search --mode=multitrial; "
     "allowed with --mode=oneshot"),
    (["--mode=oneshot", "--trials_per_update=2"], "error: --trials_per_update is not taken by search "
     "--mode=oneshot; allowed with --mode=multitrial"),
    (["--mode=oneshot", "--backend=process"], "error: --backend is not taken by search --mode=oneshot; "
     "allowed with --mode=multitrial"),
    (["--oneshot_private_weights"], "error: --oneshot_private_weights is not taken by search "
     "--mode=multitrial; allowed with --mode=oneshot"),
    (["--oneshot_zero_init_residual"], "error: --oneshot_zero_init_residual is not taken by search "
     "--mode=multitrial; allowed with --mode=oneshot"),
])
def test_search_refuses_a_flag_of_the_other_mode(args, line, tmp_path, capsys):
  code, err = run_in_process("search", f"--search_dir={tmp_path / 's'}", *args, capsys=capsys)
  assert (code, err) == (2, [line])
  assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("stored, mode", [({"mode": "oneshot"}, "multitrial"), ({}, "oneshot")])
def test_search_refuses_to_resume_a_search_of_the_other_mode(stored, mode, tmp_path, capsys):
  d = tmp_path / "s"
  d.mkdir()
  (d / "params.json").write_text(json.dumps(dict(stored, space="micro")))
  code, err = run_in_process("search", f"--search_dir={d}", f"--mode={mode}", capsys=capsys)
  other = "oneshot" if mode == "multitrial" else "multitrial"
  assert (code, err) == (2, [f"error: --mode={mode} is invalid for {str(d)!r}, which holds a {other} "
                             f"search; allowed: --mode={other} (or a new folder)"])


def test_oneshot_config_from_flags_defaults_to_tunas_unless_given():
  from mnas_search.cli import search
  fv = command_flags("search")
  fv(["launch.py", "--mode=oneshot", "--search_space=micro", "--oneshot_epochs=4",
      "--oneshot_warmup_fraction=0.5", "--oneshot_top_k=2", "--seed=7", "--target_flops=30e6"])
  c = search.oneshot_config_from_flags(fv)
  assert (c.controller, c.reward, c.space, c.oneshot_epochs, c.oneshot_warmup_fraction,
          c.oneshot_top_k, c.seed, c.task.seed, c.target_flops) == (
      "reinforce", "abs", "micro", 4, 0.5, 2, 7, 7, 30e6)
  fv = command_flags("search")
  fv(["launch.py", "--mode=oneshot", "--controller=ppo", "--reward=mnas", "--oneshot_private_weights",
      "--oneshot_zero_init_residual"])
  c = search.oneshot_config_from_flags(fv)
  assert (c.controller, c.reward, c.private_weights, c.zero_init_residual) == ("ppo", "mnas", True, True)
  assert c.sharing.private_weights and c.sharing.zero_init_residual


def test_a_resume_keeps_the_stored_proxy_task_unless_a_proxy_flag_is_given(tmp_path):
  # A search started under the old defaults (10k images x 4 epochs at width 1): "the same command"
  # resumes it with its own task, whatever today's defaults are; a flag given still changes it.
  old = ProxyTask(train_images=10000, epochs=4, batch_size=128, proxy_width=1.0)
  (tmp_path / "params.json").write_text(json.dumps({"task": old.to_dict()}))
  fv = command_flags("search")
  fv(["launch.py", f"--search_dir={tmp_path}"])
  assert common.proxy_task_for_dir(fv, str(tmp_path)) == old
  assert common.proxy_task_for_dir(fv, str(tmp_path / "new")) == ProxyTask()  # a new run: flags
  fv = command_flags("search")
  fv(["launch.py", f"--search_dir={tmp_path}", "--proxy_epochs=3"])
  assert common.proxy_task_for_dir(fv, str(tmp_path)) == old.replace(epochs=3)
