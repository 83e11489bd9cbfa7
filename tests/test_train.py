"""Tests of mnas_search.training.full_train and `launch.py train`: full training, test accuracy, resume."""

import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import search_space
from launch_cli import run_launch
from mnas_search.training import evaluation, recipe
from mnas_search.training import full_train as train
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import faults, fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MICRO = search_space.get_space("micro")
ARCH = _MICRO.decode([0] * len(_MICRO.arities), name="tiny").replace(dropout_rate=0.0,
                                                                      drop_connect_rate=0.0)
DATASET = "synthetic:size=16,channels=1,classes=4,train=600,test=200"
# 500 training images (600 minus 100 held out), 10 steps per epoch.
TASK = ProxyTask(dataset=DATASET, resolution=16, train_images=None, val_images=100, epochs=2,
                 batch_size=50, proxy_width=1.0, label_smoothing=0.1, bn_momentum=0.9, seed=0)


class _StopAfterFirstEpoch(keras.callbacks.Callback):

  def on_epoch_end(self, epoch, logs=None):
    self.model.stop_training = True


def test_stopped_after_epoch_1_continues_at_epoch_2_and_scores_above_chance(tmp_path):
  out = str(tmp_path / "run")
  config = train.TrainConfig(TASK)
  r1 = train.train(ARCH, out, config, verbose=0, callbacks=[_StopAfterFirstEpoch()])
  assert (r1.finished, r1.epochs_done, r1.metrics, r1.resumed_from) == (False, 1, None, 0)
  state = train.read_checkpoint(out)
  assert (state["epoch"], state["steps"], state["weights"]) == (1, 10, "epoch-0001.weights.h5")
  assert sorted(os.listdir(os.path.join(out, "checkpoint"))) == ["checkpoint.json",
                                                                "epoch-0001.weights.h5"]
  assert not os.path.exists(os.path.join(out, "metrics.json"))

  r2 = train.train(ARCH, out, config, verbose=0)
  assert (r2.finished, r2.epochs_done, r2.resumed_from) == (True, 2, 1)
  m = r2.metrics
  assert m == fileio.read_json(os.path.join(out, "metrics.json"))
  # Continued, not restarted: epoch 1 from the first run, epoch 2 from the second, and the
  # optimizer's step counter (so the learning rate) carried over.
  assert [(h["epoch"], h["session"]) for h in m["history"]] == [(1, 0), (2, 1)]
  assert (m["epochs"], m["steps"], m["sessions"]) == (2, 20, 2)
  schedule = recipe.make_lr_schedule(TASK, 20)
  assert [h["learning_rate"] for h in m["history"]] == [float(schedule(10)), float(schedule(20))]
  assert m["test_accuracy"] > 0.5  # 4 classes: chance is 0.25
  assert 0.0 <= m["val_accuracy"] <= 1.0 and m["train_seconds"] > 0
  assert (m["train_images"], m["val_images"], m["test_images"]) == (500, 100, 200)
  child = search_space.scale(ARCH, width=1.0, resolution=16)
  assert m["params"] == search_space.count_params(child, 4, 1)
  assert m["flops"] == search_space.count_flops(child, 16, 4, 1)
  assert (m["augment"], m["ema_decay"], m["label_smoothing"]) == (["crop"], 0.5, 0.1)
  model = keras.saving.load_model(os.path.join(out, "model.keras"), compile=False)
  assert model.count_params() == m["params"] and model.input_shape == (None, 16, 16, 1)
  # model.keras holds the EMA weights: the last checkpoint's raw weights differ from them, and its
  # optimizer's moving averages equal them.
  assert sorted(os.listdir(os.path.join(out, "checkpoint"))) == ["checkpoint.json",
                                                                "epoch-0002.weights.h5"]
  raw = keras.saving.load_model(os.path.join(out, "model.keras"), compile=False)
  optimizer = recipe.make_optimizer(TASK, 20)  # the run's optimizer, with its EMA slots
  raw.compile(optimizer=type(optimizer).from_config(dict(optimizer.get_config(), use_ema=True,
                                                         ema_momentum=0.5)))
  raw.optimizer.build(raw.trainable_variables)
  raw.load_weights(os.path.join(out, "checkpoint", "epoch-0002.weights.h5"))
  averages = [v for v in raw.optimizer.variables if v.path.endswith("_average")]
  assert int(raw.optimizer.iterations) == 20 and len(averages) == len(model.trainable_weights) > 0
  for saved, average in zip(model.trainable_weights, averages):
    np.testing.assert_array_equal(saved.numpy(), average.numpy())
  assert max(float(np.max(np.abs(s.numpy() - w.numpy())))
             for s, w in zip(model.trainable_weights, raw.trainable_weights)) > 1e-3
  assert os.listdir(os.path.join(out, "tb"))

  # Finished: a third run trains nothing and returns the stored metrics.
  r3 = train.train(ARCH, out, config, verbose=0)
  assert (r3.finished, r3.resumed_from, r3.metrics) == (True, 2, m)
  # Other settings on the same directory are refused.
  with pytest.raises(ValueError, match="--task: stored"):
    train.train(ARCH, out, train.TrainConfig(TASK.replace(epochs=3)), verbose=0)


def test_nan_loss_fails_keeps_the_good_checkpoint_and_a_rerun_restarts_from_it(tmp_path,
                                                                               monkeypatch):
  out = str(tmp_path / "run")
  config = train.TrainConfig(TASK)
  monkeypatch.setenv(faults.FAULTS_ENV, "train_step:14")  # NaN weights before step 14: epoch 2, batch 4
  r1 = train.train(ARCH, out, config, verbose=0)
  error = "non-finite loss nan at step 14 (epoch 2, batch 4)"
  assert (r1.status, r1.error, r1.finished, r1.epochs_done, r1.resumed_from) == (
      "failed", error, False, 1, 0)
  m = fileio.read_json(os.path.join(out, "metrics.json"))
  assert m == r1.metrics
  assert (m["status"], m["error"], m["failed_step"], m["failed_epoch"]) == ("failed", error, 14, 2)
  assert (m["checkpoint_epoch"], m["checkpoint_weights"], m["steps"]) == (
      1, "epoch-0001.weights.h5", 10)
  assert [h["epoch"] for h in m["history"]] == [1]
  # Epoch 2 was not saved: the checkpoint is still epoch 1's, and its weights are finite.
  state = train.read_checkpoint(out)
  assert (state["epoch"], state["steps"], state["weights"]) == (1, 10, "epoch-0001.weights.h5")
  assert sorted(os.listdir(os.path.join(out, "checkpoint"))) == ["checkpoint.json",
                                                                "epoch-0001.weights.h5"]
  model = evaluation.build_child(search_space.scale(ARCH, width=1.0, resolution=16), TASK,
                              evaluation.load_proxy_splits(TASK), 20)
  model.load_weights(os.path.join(out, "checkpoint", "epoch-0001.weights.h5"))
  assert all(np.isfinite(np.asarray(w)).all() for w in model.weights)
  assert not os.path.exists(os.path.join(out, "model.keras"))

  monkeypatch.delenv(faults.FAULTS_ENV)
  r2 = train.train(ARCH, out, config, verbose=0)
  assert (r2.status, r2.error, r2.finished, r2.epochs_done, r2.resumed_from) == (
      "ok", None, True, 2, 1)
  m = fileio.read_json(os.path.join(out, "metrics.json"))
  assert "status" not in m and m["steps"] == 20 and m["test_accuracy"] > 0.5
  assert [(h["epoch"], h["session"]) for h in m["history"]] == [(1, 0), (2, 1)]


class _PoisonAfterLastBatch(keras.callbacks.Callback):
  """NaN weights after the loss of step 10 was computed: only the epoch-end check can see them."""

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations) == 10:
      for v in self.model.trainable_variables:
        v.assign(np.full(v.shape, np.nan, dtype=v.dtype))


def test_nan_weights_at_epoch_end_are_not_checkpointed(tmp_path):
  out = str(tmp_path / "run")
  r = train.train(ARCH, out, train.TrainConfig(TASK.replace(epochs=1)), verbose=0,
                  callbacks=[_PoisonAfterLastBatch()])
  error = "non-finite weights after step 10 (epoch 1)"
  assert (r.status, r.error, r.epochs_done) == ("failed", error, 0)
  assert (r.metrics["failed_step"], r.metrics["checkpoint_epoch"], r.metrics["history"]) == (
      10, 0, [])
  assert train.read_checkpoint(out) is None  # nothing good to keep: a rerun starts afresh
  assert not os.path.exists(os.path.join(out, "checkpoint"))


def test_augment_batch_crops_and_flips_whole_pixels():
  keras.utils.set_random_seed(1)
  x = np.arange(6 * 8 * 8 * 2, dtype=np.float32).reshape(6, 8, 8, 2)  # every pixel distinct
  padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
  crops = train.augment_batch(tf.constant(x), ("crop",), 8).numpy()
  offsets = []
  for i in range(6):
    found = [(dy, dx) for dy in range(3) for dx in range(3)
             if np.array_equal(crops[i], padded[i, dy:dy + 8, dx:dx + 8])]
    assert len(found) == 1
    offsets.append(found[0])
  assert len(set(offsets)) > 1  # each image has its own offset
  flips = train.augment_batch(tf.constant(x), ("flip",), 8).numpy()
  mirrored = [np.array_equal(f, o[:, ::-1]) for f, o in zip(flips, x)]
  assert all(m or np.array_equal(f, o) for m, f, o in zip(mirrored, flips, x))
  assert 0 < sum(mirrored) < 6
  # Below 8 pixels there is nothing to pad: crop leaves the images as they are.
  small = np.ones((2, 4, 4, 1), np.float32)
  assert np.array_equal(train.augment_batch(tf.constant(small), ("crop",), 4).numpy(), small)


def test_defaults():
  assert train.default_augment("fashion_mnist") == ("crop", "flip")
  assert train.default_augment("cifar10") == ("crop", "flip")
  assert train.default_augment(DATASET) == ("crop",)
  assert [train.auto_ema_decay(n) for n in (5, 20, 4690, 10 ** 7)] == [0.0, 0.5, 0.997868, 0.9999]
  config = train.TrainConfig(TASK, ema_decay=0.0, augment=())
  assert (config.resolved_ema_decay(20), config.resolved_augment()) == (0.0, ())


@pytest.mark.parametrize("kwargs, message", [
    (dict(ema_decay=1.0), r"ema_decay=1.0 is invalid; allowed: a number in \[0, 1\)"),
    (dict(ema_decay=-0.1), r"ema_decay=-0.1 is invalid"),
    (dict(augment=("crop", "rotate")), "augment=crop,rotate is invalid; allowed: any of crop, flip"),
    (dict(augment="crop"), "augment=crop is invalid"),
    (dict(task=TASK.replace(timeout_s=10.0)), "full training runs whole epochs"),
])
def test_bad_config(kwargs, message):
  with pytest.raises(ValueError, match=message):
    train.TrainConfig(**{"task": TASK, **kwargs})


def test_dataset_without_test_split_is_refused_before_writing(tmp_path):
  task = TASK.replace(dataset="synthetic:size=16,channels=1,classes=4,train=600,test=0")
  with pytest.raises(ValueError, match="has no test split"):
    train.train(ARCH, str(tmp_path / "run"), train.TrainConfig(task))
  assert not os.path.exists(tmp_path / "run")


def _launch(*args, env=None):
  return run_launch("train", *args, env=env)


@pytest.mark.parametrize("args, message", [
    (["--arch=efficientnet-b0"], "error: --out=DIR is required"),
    (["--out=/tmp/x"], "error: --arch (a name or a JSON path) or --blocks is required"),
    (["--arch=efficientnet-b0", "--out=/tmp/x", "--epochs=0"],
     "error: --epochs=0 is invalid; allowed: an integer >= 1"),
    (["--arch=efficientnet-b0", "--out=/tmp/x", "--train_lr=0"],
     "error: --train_lr=0.0 is invalid; allowed: a finite number > 0"),
    (["--arch=efficientnet-b0", "--out=/tmp/x", "--label_smoothing=1"],
     "error: --label_smoothing=1.0 is invalid; allowed: a number in [0, 1)"),
    (["--arch=efficientnet-b0", "--out=/tmp/x", "--ema_decay=1"],
     "error: --ema_decay=1.0 is invalid"),
    (["--arch=efficientnet-b0", "--out=/tmp/x", "--augment=crop,rotate"],
     "error: --augment='crop,rotate' is invalid; allowed: any of crop, flip"),
    (["--arch=efficientnet-b0", "--out=/tmp/x", "--train_resolution=0"],
     "error: --train_resolution=0 is invalid; allowed: an integer >= 1"),
])
def test_cli_bad_input(args, message):
  r = _launch(*args)
  assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(message), r.stderr


@pytest.mark.slow  # default-suite time: test_stopped_after_epoch_1_continues_at_epoch_2 checks the same in-process
def test_cli_killed_after_epoch_1_continues_at_epoch_2(tmp_path):
  out = str(tmp_path / "run")
  arch_path = str(tmp_path / "tiny.json")
  fileio.atomic_write_json(arch_path, ARCH.to_dict())
  args = [f"--arch={arch_path}", f"--out={out}", f"--dataset={DATASET}", "--train_resolution=16",
          "--train_val_images=100", "--train_batch_size=50", "--epochs=3",
          "--train_bn_momentum=0.9"]
  r = _launch(*args, env=faults.env_for("train_epoch_done", 1))
  assert r.returncode == -signal.SIGKILL, r.stderr
  assert train.read_checkpoint(out)["epoch"] == 1 and not os.path.exists(out + "/metrics.json")
  r = _launch(*args)
  assert r.returncode == 0, r.stderr
  assert "continued after epoch 1" in r.stdout and "Epoch 2/3" in r.stdout
  assert "Epoch 1/3" not in r.stdout and "test accuracy" in r.stdout
  m = fileio.read_json(os.path.join(out, "metrics.json"))
  assert [h["session"] for h in m["history"]] == [0, 1, 1] and m["steps"] == 30
  assert (m["augment"], m["label_smoothing"]) == (["crop"], 0.1)
