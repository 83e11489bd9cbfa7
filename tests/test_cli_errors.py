"""Every error that bad input raises reaches the command line as one line that starts with
`error: --FLAG`, FLAG a flag of the command (the flag the user typed), never a library field name.

Each case runs the command in this process (tests/test_cli.py's `run_in_process`) on inputs that
raise a library FieldError, ValueError or FileNotFoundError, or one of the CLI's own, and checks
the flag that the line names. Nothing trains: each error comes before the first child.
"""

import json
import os
import re
import shutil

import pytest
from test_cli import command_flags, run_in_process

from mnas_search.cli import common
from nas_common import FieldError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V1_SEARCH = os.path.join(ROOT, "tests", "fixtures", "v1", "search")
BLOCK = "r1_k3_s11_e1_i32_o16_se0.25"
TINY_DATA = "--dataset=synthetic:size=8,channels=1,classes=2,train=64,test=16"
B0 = "--baseline=efficientnet-b0"
FLAG_AT_START = re.compile(r"error: --(\w+)")


def _paths(tmp_path) -> dict[str, str]:
  """The files and folders that the cases name: {empty} a folder, {file} a regular file, {search}
  a search directory (a copy of the v1 fixture), {badjson} a file that is not JSON, {none} a path
  that does not exist, {out} a fresh folder path."""
  paths = {name: str(tmp_path / name) for name in ("empty", "file", "search", "badjson", "none",
                                                    "out")}
  os.makedirs(paths["empty"])
  with open(paths["file"], "w") as f:
    f.write("x\n")
  with open(paths["badjson"], "w") as f:
    f.write("{not json\n")
  shutil.copytree(V1_SEARCH, paths["search"])
  with open(os.path.join(tmp_path, "coefficients.json"), "w") as f:
    json.dump({"alpha": 1.2, "beta": 1.1, "gamma": 1.15}, f)
  paths["coefficients"] = str(tmp_path / "coefficients.json")
  return paths


# (command, args, the flag the line must start with). {name} is a path of `_paths`.
CASES = [
    # describe: --arch, --blocks and the coefficients (search_space names its own fields)
    ("describe", [], "arch"),
    ("describe", ["--blocks=r1_k3"], "blocks"),
    ("describe", ["--blocks=r1_k3_s11_e1_i99_o16_se0.25"], "blocks"),
    ("describe", [f"--blocks={BLOCK}", "--width_coefficient=0"], "width_coefficient"),
    ("describe", [f"--blocks={BLOCK}", "--depth_coefficient=nan"], "depth_coefficient"),
    ("describe", ["--arch=efficientnet-b0", f"--blocks={BLOCK}"], "arch"),
    ("describe", ["--arch=nope"], "arch"),
    ("describe", ["--arch={none}.json"], "arch"),
    ("describe", ["--arch={empty}"], "arch"),
    ("describe", ["--arch={badjson}"], "arch"),
    # evaluate: the proxy task's fields, the dataset and the strategy
    ("evaluate", ["--arch=mnasnet-a1", "--dataset=nope"], "dataset"),
    ("evaluate", ["--arch=mnasnet-a1", "--dataset=synthetic:foo=1"], "dataset"),
    ("evaluate", ["--arch=mnasnet-a1", "--dataset=synthetic:size=0"], "dataset"),
    ("evaluate", ["--arch=mnasnet-a1", "--dataset=dir:"], "dataset"),
    ("evaluate", ["--arch=mnasnet-a1", "--proxy_optimizer=adam"], "proxy_optimizer"),
    ("evaluate", ["--arch=mnasnet-a1", "--proxy_lr=0"], "proxy_lr"),
    ("evaluate", ["--arch=mnasnet-a1", "--proxy_timeout_s=-1"], "proxy_timeout_s"),
    ("evaluate", ["--arch=mnasnet-a1", "--proxy_train_images=64", "--proxy_batch_size=65"],
     "proxy_batch_size"),
    ("evaluate", ["--arch=mnasnet-a1", "--strategy=bogus"], "strategy"),
    ("evaluate", ["--arch=mnasnet-a1", "--dataset=dir:{none}"], "dataset"),
    ("evaluate", ["--arch=mnasnet-a1", "--dataset=fashion_mnist", "--data_dir={empty}"], "data_dir"),
    ("evaluate", ["--arch=mnasnet-a1", TINY_DATA, "--proxy_val_images=64"], "proxy_val_images"),
    ("evaluate", ["--arch=mnasnet-a1", TINY_DATA, "--proxy_val_images=16",
                  "--proxy_train_images=49", "--proxy_batch_size=8"], "proxy_train_images"),
    # search: SearchConfig, the controller's hparams, the reward's coefficient, the run directory
    ("search", [], "search_dir"),
    ("search", ["--search_dir={file}", "--controller=random"], "search_dir"),
    ("search", ["--search_dir={out}", "--search_space=nope"], "search_space"),
    ("search", ["--search_dir={out}", "--controller=nope"], "controller"),
    ("search", ["--search_dir={out}", "--reward=nope"], "reward"),
    ("search", ["--search_dir={out}", "--cost=params"], "target_params"),
    ("search", ["--search_dir={out}", "--target_flops=0"], "target_flops"),
    ("search", ["--search_dir={out}", "--w=1"], "w"),
    ("search", ["--search_dir={out}", "--reward=abs", "--w=0.5"], "w"),
    ("search", ["--search_dir={out}", "--references=nope"], "references"),
    ("search", ["--search_dir={out}", "--workers=0"], "workers"),
    ("search", ["--search_dir={out}", "--dataset=synthetic:size=x"], "dataset"),
    ("search", ["--search_dir={out}", "--controller_hparams=oops"], "controller_hparams"),
    ("search", ["--search_dir={out}", "--controller=random", "--controller_hparams=lr=1"],
     "controller_hparams"),
    # learning_rate is also a ProxyTask field, set by --proxy_lr: the line must not name that
    ("search", ["--search_dir={out}", "--controller=reinforce",
                "--controller_hparams=learning_rate=-1"], "controller_hparams"),
    ("search", ["--search_dir={out}", "--controller=evolution",
                "--controller_hparams=population_size=4,tournament_size=9"], "controller_hparams"),
    ("search", ["--search_dir={out}", "--controller=random", "--warm_start_from={empty}"],
     "warm_start_from"),
    ("search", ["--search_dir={search}", "--controller=random", "--trials_per_update=3", TINY_DATA],
     "search_dir"),
    ("search", ["--search_dir={out}", "--mode=oneshot", "--controller=evolution"], "controller"),
    ("search", ["--search_dir={out}", "--mode=oneshot", "--cost=latency"], "cost"),
    ("search", ["--search_dir={out}", "--mode=oneshot", "--oneshot_warmup_fraction=1"],
     "oneshot_warmup_fraction"),
    ("search", ["--search_dir={out}", "--mode=oneshot", "--trials=3"], "trials"),
    # export
    ("export", [], "out"),
    ("export", ["--out={out}", "--arch=efficientnet-b0", "--formats=onnx"], "formats"),
    ("export", ["--out={out}", "--arch=efficientnet-b0", "--formats=,"], "formats"),
    ("export", ["--out={out}", "--search_dir={empty}"], "search_dir"),
    ("export", ["--out={out}", "--search_dir={search}", "--arch=efficientnet-b0"], "search_dir"),
    ("export", ["--out={out}", "--arch=efficientnet-b0", "--top_k=2"], "top_k"),
    ("export", ["--out={out}", "--arch=efficientnet-b0", "--weights={none}.keras"], "weights"),
    # report
    ("report", [], "search_dir"),
    ("report", ["--search_dir={empty}"], "search_dir"),
    ("report", ["--search_dir={search}", "--out={out}", "--family_dir={empty}"], "family_dir"),
    # scale
    ("scale", [], "baseline"),
    ("scale", [B0, "--out={out}", "--family=nope"], "family"),
    ("scale", [B0, "--out={out}", "--alpha=1.3"], "alpha"),
    ("scale", [B0, "--out={out}", "--family=compound", "--coefficients={coefficients}",
               "--alpha=1.3"], "coefficients"),
    ("scale", [B0, "--out={out}", "--family=compound", "--coefficients={none}.json"],
     "coefficients"),
    ("scale", [B0, "--out={out}", "--family=compound", "--coefficients={badjson}"], "coefficients"),
    ("scale", [B0, "--out={out}", "--family=compound", "--coefficients={search}/params.json"],
     "coefficients"),
    ("scale", [B0, "--out={out}", "--family=compound", "--phi=0"], "phi"),
    ("scale", [B0, "--out={out}", "--family=compound", "--alpha=0.5"], "alpha"),
    # latency
    ("latency", ["--build", "--arch=efficientnet-b0"], "build"),
    ("latency", ["--build", "--search_space=nope"], "search_space"),
    ("latency", ["--arch=efficientnet-b0", "--latency_dry_run"], "latency_dry_run"),
    ("latency", ["--blocks=bad"], "blocks"),
    ("latency", ["--arch=efficientnet-b0", "--nolatency_measure_missing", "--nolatency_end_to_end",
                 "--latency_cache_dir={empty}"], "latency_measure_missing"),
    # grid
    ("grid", [B0], "out"),
    ("grid", [B0, "--out={out}", "--alpha_range=1"], "alpha_range"),
    ("grid", [B0, "--out={out}", "--alpha_range=2,1"], "alpha_range"),
    ("grid", [B0, "--out={out}", "--grid_step=0"], "grid_step"),
    ("grid", [B0, "--out={out}", "--grid_step=0.00001"], "grid_step"),
    ("grid", [B0, "--out={out}", "--grid_tolerance=-1"], "grid_tolerance"),
    ("grid", [B0, "--out={out}", "--alpha_range=1,1", "--beta_range=1,1", "--gamma_range=1,1"],
     "grid_tolerance"),
    ("grid", [B0, "--out={out}", "--proxy_optimizer=adam"], "proxy_optimizer"),
    # train: its own flags for the task's fields
    ("train", [], "out"),
    ("train", ["--out={out}", "--arch=efficientnet-b0", "--ema_decay=1"], "ema_decay"),
    ("train", ["--out={out}", "--arch=efficientnet-b0", "--augment=bogus"], "augment"),
    ("train", ["--out={out}", "--arch=efficientnet-b0", "--train_lr=0"], "train_lr"),
    ("train", ["--out={out}", "--arch=efficientnet-b0", "--dataset=nope"], "dataset"),
    ("train", ["--out={out}", "--arch=efficientnet-b0", "--train_width=-1"], "train_width"),
    ("train", ["--out={file}", f"--blocks={BLOCK}", TINY_DATA, "--train_val_images=16",
               "--train_batch_size=16"], "out"),
    ("train", ["--out={out}", f"--blocks={BLOCK}",
               "--dataset=synthetic:size=8,channels=1,classes=2,train=64,test=0",
               "--train_val_images=8", "--train_batch_size=8"], "dataset"),
    ("evaluate", ["--arch=mnasnet-a1", TINY_DATA, "--proxy_val_images=16", "--proxy_train_images=48"],
     "proxy_batch_size"),
    # fidelity
    ("fidelity", ["--sample=3"], "search_dir"),
    ("fidelity", ["--search_dir={empty}", "--sample=3"], "search_dir"),
    ("fidelity", ["--search_dir={search}"], "sample"),
    ("fidelity", ["--search_dir={search}", "--sample=3", "--proxy_epochs=2"], "proxy_epochs"),
    ("fidelity", ["--ground_truth={none}", "--scores={none}.jsonl"], "ground_truth"),
]


def _case_id(case) -> str:
  values = case.values if hasattr(case, "values") else case
  command, args, _ = values
  return f"{command}:{' '.join(args)}"


@pytest.mark.parametrize("command, args, flag", CASES, ids=[_case_id(c) for c in CASES])
def test_every_error_line_starts_with_the_flag_the_user_typed(command, args, flag, tmp_path,
                                                               capsys):
  paths = _paths(tmp_path)
  code, err = run_in_process(command, *(a.format(**paths) for a in args), capsys=capsys)
  assert code == 2 and len(err) == 1, err
  named = FLAG_AT_START.match(err[0])
  assert named, err[0]
  assert named.group(1) in common.own_flags(command_flags(command)), err[0]
  assert named.group(1) == flag, err[0]
  assert "Traceback" not in err[0]
  assert not os.path.exists(os.path.join(paths["out"], "params.json"))  # refused before writing


def test_a_stored_records_field_is_not_taken_for_a_flag(tmp_path, capsys):
  """A trials.jsonl line with a key named like a flag of the command (here export's --top_k) is a
  corrupted file, not a bad --top_k: the line names the file and the record."""
  paths = _paths(tmp_path)
  trials = os.path.join(paths["search"], "trials.jsonl")
  with open(trials) as f:
    lines = f.read().splitlines()
  first = dict(json.loads(lines[0]), top_k=3)
  with open(trials, "w") as f:
    f.write("\n".join([json.dumps(first)] + lines[1:]) + "\n")
  code, err = run_in_process("export", f"--search_dir={paths['search']}",
                             f"--out={paths['out']}", "--formats=json", capsys=capsys)
  assert code == 2 and len(err) == 1, err
  assert err[0].startswith(f"error: {trials} record 1: unknown key 'top_k'"), err[0]


def test_field_error_slots_render_the_flag_without_slicing():
  e = FieldError("search_dir", "/x", "a search directory", reason="has no trials.jsonl")
  assert str(e) == "search_dir='/x' has no trials.jsonl; allowed: a search directory"
  assert e.describe("--search_dir") == "--search_dir='/x' has no trials.jsonl; allowed: a search directory"
  e = FieldError("dataset", "dir:/x", "", reason=": folder '/x' does not exist")
  assert e.describe("--dataset") == "--dataset='dir:/x': folder '/x' does not exist"
  stored = FieldError("cost", "x", "the keys [...]", where="t.jsonl record 3")
  assert str(stored) == "t.jsonl record 3: cost='x' is invalid; allowed: the keys [...]"
  assert common.error_line(stored, "search", command_flags("search")) == str(stored)
