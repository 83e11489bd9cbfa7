"""Tests of mnas_search.analysis.export and of `launch.py export` (tiny models at 32x32)."""

import json
import os

import numpy as np
import pytest

import search_space
from launch_cli import run_launch
from mnas_search.analysis import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = search_space.named("efficientnet-b0").replace(width_coefficient=0.1, depth_coefficient=0.1,
                                                     resolution=32, name="custom")


def _arch(width, name="custom"):
  return TINY.replace(width_coefficient=width, name=name).to_dict()


def _t(trial, status, reward, arch, accuracy=None, flops=1000, params=100):
  return {"trial": trial, "arch": arch, "blocks": arch["blocks"], "flops": flops,
          "params": params, "accuracy": reward if accuracy is None else accuracy,
          "reward": reward, "status": status, "error": None, "train_seconds": 1.0, "update": 0,
          "seed": trial}


# Widths name the distinct networks: A=0.1, B=0.15, C=0.2, D=0.25, E=0.3.
TRIALS = [
    _t(0, "ok", 0.50, _arch(0.1), flops=100),
    _t(1, "failed", 0.0, _arch(0.15)),
    _t(2, "ok", 0.70, _arch(0.15), flops=300),
    _t(3, "cached", 0.70, _arch(0.15), flops=300),      # a repeat of trial 2
    _t(4, "ok", 0.70, _arch(0.2), flops=400),           # ties trial 2 on reward; ranks after it
    _t(5, "timeout", 0.0, _arch(0.25)),
    _t(6, "ok", 0.60, _arch(0.1, "other-name"), flops=100),  # network A again, renamed
    _t(7, "ok", 0.90, _arch(0.3), flops=900),
]


def _search_dir(tmp_path, trials=TRIALS, params=None, name="search"):
  d = tmp_path / name
  d.mkdir()
  (d / "trials.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trials))
  if params is not None:
    (d / "params.json").write_text(json.dumps(params))
  return str(d)


def _run(*args):
  return run_launch("export", *args)


def test_top_k_picks_distinct_architectures_by_reward():
  chosen = export.select_top_k(TRIALS, 3)
  assert [(t.rank, t.trial, t.reward) for t in chosen] == [(1, 7, 0.9), (2, 2, 0.7), (3, 4, 0.7)]
  everything = export.select_top_k(TRIALS, 10)
  assert [t.trial for t in everything] == [7, 2, 4, 6]
  assert [t.folder for t in everything] == ["01_trial7", "02_trial2", "03_trial4",
                                            "04_other-name"]
  assert everything[3].arch == search_space.Architecture.from_dict(_arch(0.1, "other-name"))


def test_top_k_errors():
  with pytest.raises(ValueError, match="top_k=0 is invalid; allowed: an integer >= 1"):
    export.select_top_k(TRIALS, 0)
  failed = [t for t in TRIALS if t["status"] in ("failed", "timeout")]
  with pytest.raises(ValueError, match=r"no successful trial \(status ok or cached\)"):
    export.select_top_k(failed, 1)


def test_parse_formats():
  assert export.parse_formats("tflite, json,tflite") == ("tflite", "json")
  assert export.parse_formats(["keras"]) == ("keras",)
  with pytest.raises(ValueError, match=r"unknown format\(s\) \['onnx'\]; allowed: "
                                       r"\['json', 'keras', 'savedmodel', 'tflite'\]"):
    export.parse_formats("json,onnx")
  with pytest.raises(ValueError, match="is empty"):
    export.parse_formats(",")


def test_export_search_json_only(tmp_path):
  d = _search_dir(tmp_path, params={"num_classes": 10})
  out = str(tmp_path / "out")
  entries = export.export_search(d, out, top_k=2, options=export.ExportOptions(formats="json"))
  assert sorted(os.listdir(out)) == ["01_trial7", "02_trial2", "index.json"]
  assert sorted(os.listdir(os.path.join(out, "01_trial7"))) == ["arch.json", "info.json"]
  arch = search_space.Architecture.load(os.path.join(out, "01_trial7", "arch.json"))
  assert arch == search_space.Architecture.from_dict(_arch(0.3))
  info = json.load(open(os.path.join(out, "01_trial7", "info.json")))
  assert {k: info[k] for k in ("trial", "reward", "accuracy", "flops", "params")} == {
      "trial": 7, "reward": 0.9, "accuracy": 0.9, "flops": 900, "params": 100}
  # The classes come from params.json; costs are those of the exported model.
  assert info["export"] == {"resolution": 32, "num_classes": 10, "channels": 3,
                            "flops": search_space.count_flops(arch, 32, 10),
                            "params": search_space.count_params(arch, 10), "weights": None}
  index = json.load(open(os.path.join(out, "index.json")))
  assert index["formats"] == ["json"]
  assert [m["folder"] for m in index["models"]] == ["01_trial7", "02_trial2"]
  assert entries == index["models"]
  # An explicit count and resolution win over params.json and the arch's own.
  export.export_search(d, out, top_k=1, options=export.ExportOptions(formats="json", num_classes=7, resolution=48, channels=1))
  info = json.load(open(os.path.join(out, "01_trial7", "info.json")))
  assert info["export"]["num_classes"] == 7
  assert info["export"]["flops"] == search_space.count_flops(arch, 48, 7, 1)
  assert json.load(open(os.path.join(out, "01_trial7", "arch.json")))["resolution"] == 48


def test_export_pareto_from_file_or_trials(tmp_path):
  d = _search_dir(tmp_path)
  out = str(tmp_path / "out")
  # Without pareto.json the front is computed (accuracy up, flops down; params are all equal).
  export.export_search(d, out, use_pareto=True, options=export.ExportOptions(formats="json"))
  assert sorted(os.listdir(out)) == ["01_other-name", "02_trial2", "03_trial7", "index.json"]
  with open(os.path.join(d, "pareto.json"), "w") as f:
    json.dump({"front": [TRIALS[4]]}, f)
  out2 = str(tmp_path / "out2")
  export.export_search(d, out2, use_pareto=True, options=export.ExportOptions(formats="json"))
  assert sorted(os.listdir(out2)) == ["01_trial4", "index.json"]


def test_export_search_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no trials.jsonl"):
    export.export_search(str(tmp_path / "nowhere"), str(tmp_path / "out"))
  d = _search_dir(tmp_path, trials=[TRIALS[1], TRIALS[5]])
  with pytest.raises(ValueError, match="no successful trial"):
    export.export_search(d, str(tmp_path / "out"), options=export.ExportOptions(formats="json"))
  weights = tmp_path / "w.keras"
  weights.write_text("")
  with pytest.raises(ValueError, match="2 architectures are selected"):
    export.export_search(_search_dir(tmp_path, name="good"), str(tmp_path / "out"), top_k=2, options=export.ExportOptions(weights=str(weights)))
  assert not (tmp_path / "out").exists()


def test_a_trained_child_agrees_in_all_four_formats_on_real_images(tmp_path):
  import keras
  import tensorflow as tf

  from mnas_search.data import datasets
  from mnas_search.training import evaluation
  from mnas_search.training import full_train as train
  from mnas_search.training.proxy import ProxyTask
  micro = search_space.get_space("micro")
  task = ProxyTask(dataset="synthetic:size=16,channels=1,classes=4,train=300,test=40",
                   resolution=16, train_images=None, val_images=50, epochs=1, batch_size=50,
                   proxy_width=0.5, seed=0)
  result = train.train(micro.decode([0] * micro.num_decisions, name="tiny"), str(tmp_path / "run"),
                       train.TrainConfig(task), verbose=0)
  trained_arch = search_space.Architecture.from_dict(result.metrics["trained_arch"])
  weights = str(tmp_path / "run" / "model.keras")
  (entry,) = export.export_architecture(trained_arch, str(tmp_path / "out"), options=export.ExportOptions(weights=weights))
  folder = tmp_path / "out" / "01_tiny"
  assert entry["files"] == ["arch.json", "model.keras", "saved_model", "model.tflite", "info.json"]
  assert sorted(entry["checks"]) == ["keras_max_abs_diff", "savedmodel_max_abs_diff",
                                     "tflite_max_abs_diff"]
  assert entry["checks"]["keras_max_abs_diff"] == 0.0
  assert all(v <= export.AGREEMENT_TOLERANCE for v in entry["checks"].values())
  # The test split's images, as the trainer feeds them (resized, scaled, 1 channel).
  splits = evaluation.load_proxy_splits(task)
  images = next(iter(datasets.make_dataset(*splits.test, datasets.Pipeline(resolution=16, batch_size=40, channels=1))))[0].numpy()
  assert images.shape == (40, 16, 16, 1)
  expected = keras.saving.load_model(weights, compile=False)(images, training=False).numpy()
  fresh = search_space.build_model(trained_arch, (16, 16, 1), 4)(images, training=False).numpy()
  assert np.max(np.abs(fresh - expected)) > 0.05  # the training moved the outputs
  exported = keras.saving.load_model(str(folder / "model.keras"), safe_mode=True)
  np.testing.assert_allclose(exported(images, training=False).numpy(), expected, atol=1e-5)
  loaded = tf.saved_model.load(str(folder / "saved_model"))  # keep a reference: it owns the variables
  np.testing.assert_allclose(loaded.serve(images).numpy(), expected, atol=1e-5)
  np.testing.assert_allclose(export.run_tflite(str(folder / "model.tflite"), images), expected,
                             atol=1e-4)


def test_a_format_that_disagrees_is_an_error_naming_it(tmp_path, monkeypatch):
  import keras
  arch = search_space.Architecture.from_dict(_arch(0.1, "tiny-b0"))
  real = keras.saving.load_model

  def load_a_broken_copy(*args, **kwargs):  # a reload whose outputs are off by 0.25
    model = real(*args, **kwargs)
    return lambda x, training: model(x, training=training) + 0.25
  monkeypatch.setattr(keras.saving, "load_model", load_a_broken_copy)
  with pytest.raises(ValueError, match=r"01_tiny-b0: the exported keras model disagrees with the "
                                       r"built Keras model: max abs difference 0.25\d* > tolerance "
                                       r"0.001; the keras conversion is broken"):
    export.export_architecture(arch, str(tmp_path), options=export.ExportOptions(formats="keras", num_classes=4))


def test_weights_are_loaded_and_checked(tmp_path):
  import keras
  arch = search_space.Architecture.from_dict(_arch(0.1))
  # Trained on 24x24 grayscale with 10 classes: the export takes that shape and count by default.
  trained = search_space.build_model(arch, (24, 24, 1), 10)
  trained.set_weights([w + 0.01 for w in trained.get_weights()])  # not an initialization
  path = str(tmp_path / "trained.keras")
  trained.save(path)
  (entry,) = export.export_architecture(arch, str(tmp_path / "out"), options=export.ExportOptions(formats="keras", weights=path))
  assert {k: entry["export"][k] for k in ("resolution", "num_classes", "channels", "weights")} == {
      "resolution": 24, "num_classes": 10, "channels": 1, "weights": path}
  batch = np.random.default_rng(2).standard_normal((2, 24, 24, 1)).astype("float32")
  exported = keras.saving.load_model(str(tmp_path / "out" / "01_custom" / "model.keras"))
  np.testing.assert_array_equal(exported(batch, training=False).numpy(),
                                trained(batch, training=False).numpy())
  wider = search_space.Architecture.from_dict(_arch(0.3))
  with pytest.raises(ValueError, match=r"weights=.*stem_conv/kernel has shape \(3, 3, 1, 8\) but "
                                       r"the architecture needs \(3, 3, 1, 16\)"):
    export.export_architecture(wider, str(tmp_path / "out2"), options=export.ExportOptions(formats="keras", weights=path))
  with pytest.raises(ValueError, match=r"predictions/kernel has shape \(128, 10\) but the "
                                       r"architecture needs \(128, 5\)"):
    export.export_architecture(arch, str(tmp_path / "out3"), options=export.ExportOptions(formats="keras", weights=path, num_classes=5))
  with pytest.raises(FileNotFoundError, match="missing.keras"):
    export.export_architecture(arch, str(tmp_path / "out4"), options=export.ExportOptions(weights=str(tmp_path / "missing.keras")))


def test_cli_exports_json_and_prints_the_table(tmp_path):
  d = _search_dir(tmp_path)
  out = tmp_path / "out"
  res = _run(f"--search_dir={d}", f"--out={out}", "--top_k=2", "--formats=json")
  assert res.returncode == 0, res.stderr
  lines = res.stdout.splitlines()
  assert lines[0].split()[:4] == ["rank", "folder", "trial", "reward"]
  assert lines[1].split()[:5] == ["1", "01_trial7", "7", "0.9000", "0.9000"]
  assert lines[2].split()[:3] == ["2", "02_trial2", "2"]
  assert lines[3] == f"wrote {out / 'index.json'}"


@pytest.mark.parametrize("args, message", [
    (["--formats=json,onnx"], "error: --formats='json,onnx' has unknown format(s) ['onnx']; allowed: "
                              "['json', "),
    (["--top_k=0"], "error: --top_k=0 is invalid"),
    (["--export_resolution=-1"], "error: --export_resolution=-1 is invalid"),
    (["--arch=efficientnet-b0"], "error: --search_dir={d} was given with --arch; allowed: one of them"),
])
def test_cli_bad_input(tmp_path, args, message):
  d = _search_dir(tmp_path)
  res = _run(f"--search_dir={d}", f"--out={tmp_path / 'out'}", *args)
  assert res.returncode == 2
  assert res.stderr.startswith(message.format(d=d)), res.stderr
  assert not (tmp_path / "out").exists()


def test_cli_arch_with_top_k_is_refused(tmp_path):
  res = _run("--arch=efficientnet-b0", "--top_k=3", f"--out={tmp_path}")
  assert res.returncode == 2
  assert res.stderr.startswith("error: --top_k and --pareto select trials of a search")
