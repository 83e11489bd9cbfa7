"""Tests for mnas_search.training (evaluation, recipe, lean_step, tf_state; and the `launch.py evaluate` command in front of it).

Children are tiny (two blocks at width 0.25, 16x16, synthetic data): each trains in about a second
plus graph tracing.
"""

import json
import math
import os
import time

import numpy as np
import pytest
import tensorflow as tf

import search_space
from launch_cli import run_launch
from mnas_search.training import evaluation, lean_step, recipe, tf_state
from mnas_search.training.evaluation import TrialResult, evaluate
from mnas_search.training.proxy import ProxyTask
from search_space import Architecture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BLOCKS = ("r1_k3_s11_e1_i32_o16_se0.25", "r1_k3_s22_e3_i16_o24")
ARCH = Architecture(blocks=TINY_BLOCKS, name="tiny", head_filters=256, dropout_rate=0.0,
                    drop_connect_rate=0.0)
DATASET = "synthetic:size=16,channels=1,classes=4,train=800,test=50"
TASK = ProxyTask(dataset=DATASET, resolution=16, train_images=512, val_images=256, epochs=2,
                 batch_size=64, proxy_width=0.25)


def test_tiny_child_learns_synthetic_well_above_chance():
  r = evaluate(ARCH, TASK.replace(epochs=4))
  assert r.status == "ok" and r.error is None
  assert r.accuracy > 0.5  # 4 classes: chance is 0.25 (6 seeds gave 0.63 to 0.94)
  assert (r.steps, r.epochs_completed, r.seed) == (4 * (512 // 64), 4, 0)
  child = search_space.scale(ARCH, width=0.25, resolution=16)
  assert r.proxy_flops == search_space.count_flops(child, 16, num_classes=4, input_channels=1)
  assert r.proxy_params == search_space.count_params(child, num_classes=4, input_channels=1)
  assert 0 < r.train_seconds < 60 and r.images_per_sec > 0 and math.isfinite(r.loss)


def test_same_seed_is_bit_identical_with_determinism(restore_determinism):
  a = evaluate(ARCH, TASK, seed=5, deterministic=True)
  b = evaluate(ARCH, TASK, seed=5, deterministic=True)
  c = evaluate(ARCH, TASK, seed=6, deterministic=True)
  assert (a.accuracy, a.loss, a.seed) == (b.accuracy, b.loss, 5)
  assert c.loss != a.loss and c.seed == 6


def test_nan_loss_fails_at_once():
  task = TASK.replace(learning_rate=1e30, epochs=20)
  started = time.monotonic()
  r = evaluate(ARCH, task)
  assert r.status == "failed" and r.accuracy == 0.0
  assert r.error.startswith("training loss became nan at step ") and "training stopped" in r.error
  assert r.steps < 10  # of 160: it stopped at the first non-finite loss
  assert time.monotonic() - started < 30


def test_timeout_stops_training_and_still_scores():
  # A constant rate without warmup, so that the few steps before the limit still learn.
  # 6 s, not less: on a loaded 2-core machine 3 s held only 7 steps, too few to leave chance.
  task = TASK.replace(epochs=100000, timeout_s=6.0, lr_schedule="constant", warmup_fraction=0.0)
  started = time.monotonic()
  r = evaluate(ARCH, task, strategy="cpu")
  elapsed = time.monotonic() - started
  # It stops near the limit, not after 100,000 epochs (the bound leaves room for a loaded machine).
  assert r.status == "timeout" and elapsed < 6.0 + 60.0
  assert r.error.startswith(f"timeout_s=6.0 reached after {r.steps} of 800000 steps")
  assert 0 < r.steps < 800000 and r.accuracy > 0.4  # measured on validation anyway


def test_steps_instead_of_epochs():
  r = evaluate(ARCH, TASK.replace(steps=11))
  assert r.status == "ok" and (r.steps, r.epochs_completed) == (11, 1)


def test_exceptions_and_oom_become_failed(monkeypatch):
  def boom(*args, **kwargs):
    raise RuntimeError("boom")
  monkeypatch.setattr(evaluation.search_space, "build_model", boom)
  r = evaluate(ARCH, TASK)
  assert (r.status, r.accuracy, r.error, r.steps) == ("failed", 0.0, "RuntimeError: boom", 0)

  def oom(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
  monkeypatch.setattr(evaluation.search_space, "build_model", oom)
  r = evaluate(ARCH, TASK)
  assert (r.status, r.error) == ("failed", "out of memory: OOM when allocating tensor")


def test_bad_input_raises_instead_of_failing_the_child(tmp_path):
  with pytest.raises(ValueError, match="arch='tiny' is invalid; allowed: a search_space.Architecture"):
    evaluate("tiny", TASK)
  with pytest.raises(ValueError, match="task=3 is invalid; allowed: a ProxyTask"):
    evaluate(ARCH, 3)
  with pytest.raises(ValueError, match="seed=-1 is invalid; allowed: None or an integer >= 0"):
    evaluate(ARCH, TASK, seed=-1)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    evaluate(ARCH, TASK.replace(dataset=f"dir:{tmp_path / 'missing'}"))
  with pytest.raises(ValueError, match=r"val_images=900 is invalid for dataset 'synthetic:size=16.*"
                                       r"with 800 training images"):
    evaluate(ARCH, TASK.replace(val_images=900))
  with pytest.raises(ValueError, match=r"batch_size=600 is invalid for 544 training images; allowed: "
                                       r"an integer in \[1, 544\]"):
    evaluate(ARCH, TASK.replace(train_images=None, batch_size=600))


def test_lr_schedule_warmup_then_cosine_or_constant():
  sched = recipe.make_lr_schedule(ProxyTask(learning_rate=0.4, warmup_fraction=0.1), 100)
  values = [float(sched(s)) for s in (0, 5, 10, 55, 100, 150)]
  np.testing.assert_allclose(values, [0.0, 0.2, 0.4, 0.2, 0.0, 0.0], atol=1e-6)
  const = recipe.make_lr_schedule(ProxyTask(learning_rate=0.4, lr_schedule="constant"), 100)
  np.testing.assert_allclose([float(const(s)) for s in (0, 5, 10, 99)], [0.0, 0.2, 0.4, 0.4], atol=1e-6)
  plain = recipe.make_lr_schedule(ProxyTask(learning_rate=0.4, warmup_fraction=0.0), 100)
  np.testing.assert_allclose([float(plain(s)) for s in (0, 50)], [0.4, 0.2], atol=1e-6)


def test_optimizers():
  sgd = recipe.make_optimizer(ProxyTask(momentum=0.8), 10)
  assert type(sgd).__name__ == "SGD" and sgd.momentum == 0.8 and sgd.weight_decay is None
  rms = recipe.make_optimizer(ProxyTask(optimizer="rmsprop", weight_decay=1e-5), 10)
  assert type(rms).__name__ == "RMSprop" and (rms.rho, rms.epsilon, rms.weight_decay) == (0.9, 1e-3, 1e-5)


def test_label_smoothing_loss():
  logits = np.array([[2.0, 0.0, -1.0]], np.float32)
  log_p = logits[0] - np.log(np.exp(logits[0]).sum())
  plain = recipe.make_loss(ProxyTask(), 3)
  np.testing.assert_allclose(float(plain(np.array([0]), logits)), -log_p[0], rtol=1e-6)
  smooth = recipe.make_loss(ProxyTask(label_smoothing=0.3), 3)
  target = np.array([0.8, 0.1, 0.1])  # (1 - 0.3) one-hot + 0.3 / 3
  np.testing.assert_allclose(float(smooth(np.array([0]), logits)), -(target * log_p).sum(), rtol=1e-6)


def test_bn_momentum_is_set_for_the_proxy():
  import keras
  splits = evaluation.load_proxy_splits(TASK)
  model = evaluation.build_child(evaluation.proxy_child(ARCH, TASK), TASK, splits, 10)
  bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 7 and {l.momentum for l in bns} == {0.9}
  recipe.set_bn_momentum(model, None)
  assert {l.momentum for l in bns} == {0.9}
  keras.backend.clear_session()


def test_trial_result_dict():
  r = TrialResult(status="timeout", accuracy=0.5, train_seconds=1.0, images_per_sec=10.0,
                  proxy_flops=3, proxy_params=4, error="x", epochs_completed=1, steps=2, loss=0.1, seed=7)
  assert TrialResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
  with pytest.raises(ValueError, match="status='done' is invalid; allowed: ok, failed, timeout"):
    TrialResult(status="done", accuracy=0.0, train_seconds=0.0, images_per_sec=0.0, proxy_flops=0,
                proxy_params=0)
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['acc'\]"):
    TrialResult.from_dict({**r.to_dict(), "acc": 1})


def test_children_leave_no_graph_behind():
  # Swish (tf.nn.silu) registers a global custom gradient per traced call, which pins the graph.
  before = tf_state.registered_gradients()
  r = evaluate(ARCH, TASK.replace(epochs=1))
  assert r.status == "ok" and ARCH.activation == "swish"
  assert tf_state.registered_gradients() == before


def _rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_flat_over_many_children():
  task = TASK.replace(epochs=1, train_images=256)
  for i in range(30):
    r = evaluate(ARCH, task, seed=i)
    assert r.status == "ok"
    if i == 4:
      after_five = _rss_mb()
  assert _rss_mb() - after_five < 200


# ----------------------------------------------------------------------------- launch.py evaluate
def run_cli(*args):
  return run_launch("evaluate", *args, timeout=300)


def test_cli_evaluate_json():
  p = run_cli("--blocks=" + ",".join(TINY_BLOCKS), "--width_coefficient=0.5", f"--dataset={DATASET}",
              "--proxy_resolution=16", "--proxy_train_images=512", "--proxy_val_images=256",
              "--proxy_epochs=2", "--proxy_batch_size=64", "--proxy_width=0.5", "--cost_resolution=96",
              "--cost_num_classes=10", "--json")
  assert p.returncode == 0, p.stderr
  d = json.loads(p.stdout.strip().splitlines()[-1])
  arch = Architecture(blocks=TINY_BLOCKS, name="custom", width_coefficient=0.5)
  assert d["status"] == "ok" and d["accuracy"] > 0.4 and d["steps"] == 16
  assert d["flops"] == search_space.count_flops(arch, 96, 10)
  assert d["params"] == search_space.count_params(arch, 10)
  assert d["proxy_flops"] == search_space.count_flops(search_space.scale(arch, 0.5), 16, 4, 1)
  assert d["train_seconds"] > 0 and d["images_per_sec"] > 0


@pytest.mark.parametrize("args, line", [
    (["--arch=efficientnet-b0", "--proxy_resolution=0"],
     "error: --proxy_resolution=0 is invalid; allowed: an integer >= 1"),
    (["--arch=efficientnet-b0", "--proxy_epochs=-1"],
     "error: --proxy_epochs=-1 is invalid; allowed: an integer >= 1"),
    (["--arch=efficientnet-b0", "--dataset=imagenet"],
     "error: --dataset='imagenet' is unknown; allowed: fashion_mnist, cifar10, synthetic, tfds:NAME, "
     "dir:PATH"),
    (["--arch=efficientnet-b0", "--proxy_optimizer=adam"],
     "error: --proxy_optimizer='adam' is invalid; allowed: sgd or rmsprop"),
    (["--arch=efficientnet-b0", "--cost_resolution=0"],
     "error: --cost_resolution=0 is invalid; allowed: an integer >= 1"),
    (["--arch=efficientnet-b0", "--dataset=dir:/no/such/folder"],
     "error: --dataset='dir:/no/such/folder': folder '/no/such/folder' does not exist"),
])
def test_cli_evaluate_errors_are_one_line(args, line):
  p = run_cli(*args)
  assert p.returncode == 2 and p.stdout == ""
  assert p.stderr.strip().splitlines()[-1] == line


# ----------------------------------------------------------------------------- the lean step
def _keras_and_lean_models(task, seed=3):
  """The same child twice (same seed: same initial weights): compiled for Keras, and plain."""
  splits = evaluation.load_proxy_splits(task)
  child = evaluation.proxy_child(ARCH, task)
  tf_state.seed_child(seed)
  keras_model = evaluation.build_child(child, task, splits, total_steps=8)
  tf_state.seed_child(seed)
  lean_model = evaluation.build_proxy_model(child, task, splits)
  return splits, keras_model, lean_model


@pytest.mark.parametrize("changes", [
    dict(weight_decay=0.01),
    dict(optimizer="rmsprop", learning_rate=0.01, weight_decay=0.001, label_smoothing=0.1),
    dict(momentum=0.0, warmup_fraction=0.0),
])
@pytest.mark.parametrize("fused_bn", [False, True])
def test_lean_step_updates_weights_as_the_keras_optimizer(changes, fused_bn, monkeypatch):
  # Same weights, same batches: after 3 steps (warmup then cosine; decoupled weight decay; the
  # momentum / RMSProp slots) both must hold the same weights, up to float rounding; with Keras's
  # batch norm or the fused one in the training step.
  monkeypatch.setattr(lean_step, "fused_bn_trains_exactly", lambda: fused_bn)
  task = TASK.replace(**changes)
  splits, keras_model, lean_model = _keras_and_lean_models(task)
  for a, b in zip(keras_model.weights, lean_model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  step = lean_step.lean_train_step(lean_model, task, 4, total_steps=8,
                                 strategy=tf.distribute.get_strategy())
  train_ds, _ = evaluation.proxy_datasets(task, splits, seed=3)
  keras_losses, lean_losses = [], []
  for x, y in train_ds.take(3):
    keras_losses.append(float(keras_model.train_on_batch(x, y, return_dict=True)["loss"]))
    lean_losses.append(float(step(x, y)))
  np.testing.assert_allclose(lean_losses[0], keras_losses[0], rtol=1e-6)  # same weights, same loss
  np.testing.assert_allclose(lean_losses, keras_losses, rtol=1e-3)
  moved = 0
  for a, b in zip(keras_model.trainable_weights, lean_model.trainable_weights):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5, err_msg=a.path)
  for a, b in zip(keras_model.non_trainable_weights, lean_model.non_trainable_weights):
    if a.path.endswith("moving_mean"):
      np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5, err_msg=a.path)
      moved += int(np.any(a.numpy() != 0))
  assert moved == 7  # every batch norm's running mean was updated
  tf_state.release_keras_state()


def test_lean_step_clips_gradients_as_the_keras_optimizer(monkeypatch):
  # A norm small enough that every step is clipped, with decoupled weight decay after clipping.
  test_lean_step_updates_weights_as_the_keras_optimizer(dict(clip_norm=0.05, weight_decay=0.01),
                                                        False, monkeypatch)


def _reference_fit(task, seed):
  """(validation accuracy, last-epoch loss) of a plain Keras model.fit of the child."""
  import keras
  splits = evaluation.load_proxy_splits(task)
  tf_state.seed_child(seed)
  train_ds, val_ds = evaluation.proxy_datasets(task, splits, seed)
  model = evaluation.build_child(evaluation.proxy_child(ARCH, task), task, splits,
                              task.epochs * (len(splits.train[1]) // task.batch_size))
  history = model.fit(train_ds, epochs=task.epochs, verbose=0)
  accuracy = model.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"]
  del model
  keras.backend.clear_session()
  return accuracy, history.history["loss"][-1]


FASHION_TASK = ProxyTask(resolution=16, train_images=2048, val_images=512, epochs=2, batch_size=64,
                         proxy_width=0.25)


def _fashion_mnist_or_skip():
  from mnas_search.data import datasets
  try:
    datasets.load_arrays("fashion_mnist")
  except (FileNotFoundError, ValueError) as e:
    pytest.skip(f"Fashion-MNIST is not available here: {e}")


# Default-suite time: the real data stays in it; the synthetic twin is slow.
@pytest.mark.parametrize("dataset", [pytest.param("synthetic", marks=pytest.mark.slow), "fashion_mnist"])
def test_lean_child_learns_as_well_as_model_fit(dataset):
  if dataset == "fashion_mnist":
    _fashion_mnist_or_skip()
  task = TASK.replace(epochs=4) if dataset == "synthetic" else FASHION_TASK
  reference, reference_loss = _reference_fit(task, seed=1)
  r = evaluate(ARCH, task, seed=1)
  assert r.status == "ok" and r.steps == task.epochs * (task.train_images // task.batch_size)
  # Same initial weights and batches; only float rounding (and the order of multithreaded sums)
  # differs, which a few dozen steps amplify: seen up to 12% of a small synthetic loss (0.142 vs
  # 0.161), hence the 0.03 floor. A broken update or schedule misses both bounds by far.
  assert abs(r.accuracy - reference) <= 0.08, (r.accuracy, reference)
  assert abs(r.loss - reference_loss) <= max(0.1 * reference_loss, 0.03), (r.loss, reference_loss)
  assert r.accuracy > (0.5 if dataset == "synthetic" else 0.6)


def test_fixed_and_steady_seconds_split_the_wall_time():
  started = time.monotonic()
  r = evaluate(ARCH, TASK)
  wall = time.monotonic() - started
  assert r.steps == 16 and r.steady_seconds > 0 and r.fixed_seconds > 0
  assert r.fixed_seconds + r.steady_seconds == pytest.approx(wall, abs=0.05)
  per_step = r.steady_seconds / r.steps
  assert r.images_per_sec == pytest.approx(64 / per_step, rel=0.01)


def test_old_trial_result_dicts_still_load():
  old = dict(status="ok", accuracy=0.5, train_seconds=1.0, images_per_sec=10.0, proxy_flops=3,
             proxy_params=4, error=None, epochs_completed=1, steps=2, loss=0.1, seed=7)
  r = TrialResult.from_dict(old)
  assert (r.fixed_seconds, r.steady_seconds) == (0.0, 0.0)
  assert list(r.to_dict())[-2:] == ["fixed_seconds", "steady_seconds"]


def test_lean_step_is_used_on_one_replica_and_model_fit_otherwise(monkeypatch):
  assert lean_step.lean_supported(tf.distribute.get_strategy())
  assert lean_step.lean_supported(tf.distribute.OneDeviceStrategy("/cpu:0"))
  calls = []
  real = evaluation._train_keras
  monkeypatch.setattr(lean_step, "lean_supported", lambda strategy: False)
  monkeypatch.setattr(evaluation, "_train_keras", lambda *a: calls.append(1) or real(*a))
  r = evaluate(ARCH, TASK.replace(epochs=1))
  assert r.status == "ok" and r.steps == 8 and calls == [1] and r.fixed_seconds > 0


def test_grappler_setting_is_restored():
  before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
  with tf_state.graph_optimizer_off_on_cpu():
    inside = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
  assert inside is (not tf.config.list_logical_devices("GPU"))
  assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False) == before

def test_a_small_child_learns_real_fashion_mnist():
  # The default dataset, read offline as `make test` provides it (scripts/get_data.sh).
  from mnas_search.data import datasets
  if datasets.fashion_mnist_dir() is None:
    pytest.skip("Fashion-MNIST is not available offline here (neither the Debian package "
                "dataset-fashion-mnist nor ~/.keras/datasets/fashion-mnist); `make data` installs it")
  micro = search_space.get_space("micro")
  task = ProxyTask(dataset="fashion_mnist", resolution=16, train_images=8000, val_images=1000,
                   epochs=2, batch_size=64, proxy_width=0.5)
  r = evaluate(micro.decode([0] * micro.num_decisions, name="tiny"), task, seed=0)
  assert r.status == "ok", r.error
  # 10 classes: chance is 0.1. Seeds 0, 1, 2 measured 0.73, 0.77, 0.74 (2 CPU cores).
  assert r.accuracy > 0.6


def test_private_tf_and_keras_apis_are_still_where_the_trainer_uses_them():
  # Each of these is behind one trainer function; if TF or Keras moves one, this fails loudly
  # instead of the trainer silently leaking memory, losing determinism or the lean step.
  from keras.src.backend.common import global_state
  from keras.src.models import functional
  from keras.src.random import seed_generator
  from keras.src.utils import rng_utils
  from tensorflow.python.util import _pywrap_util_port
  assert isinstance(tf_state._gradient_registry(), dict)
  assert callable(functional.operation_fn) and callable(_pywrap_util_port.IsMklEnabled)
  assert hasattr(functional.Functional, "_run_through_graph")
  assert hasattr(global_state, "GLOBAL_STATE_TRACKER") and hasattr(global_state, "GLOBAL_SETTINGS_TRACKER")
  assert isinstance(rng_utils.GLOBAL_RANDOM_SEED, str) and isinstance(seed_generator.GLOBAL_SEED_GENERATOR, str)
  tf_state.seed_child(123)
  assert global_state.get_global_attribute(rng_utils.GLOBAL_RANDOM_SEED) == 123
