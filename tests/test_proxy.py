"""Tests for mnas_search.training.proxy: ProxyTask defaults, validation and JSON."""

import json
import pickle

import pytest

from mnas_search.training.proxy import ProxyTask, ProxyTaskError


def test_defaults():
  t = ProxyTask()
  assert (t.dataset, t.resolution, t.train_images, t.val_images, t.epochs, t.steps) == (
      "fashion_mnist", 32, 8000, 2000, 2, None)
  assert (t.batch_size, t.optimizer, t.learning_rate, t.momentum, t.lr_schedule) == (
      64, "sgd", 0.1, 0.9, "cosine")
  assert (t.warmup_fraction, t.weight_decay, t.label_smoothing, t.bn_momentum) == (0.1, 0.0, 0.0, 0.9)
  assert (t.proxy_width, t.grayscale_to_rgb, t.seed, t.timeout_s, t.data_dir) == (
      0.25, False, 0, None, None)
  assert (t.stem_stride, t.clip_norm) == (2, None)


def test_dict_round_trip_is_json():
  t = ProxyTask(dataset="synthetic:size=16", resolution=16, train_images=None, steps=7,
                optimizer="rmsprop", timeout_s=2.5, data_dir="/data", proxy_width=0.5)
  d = json.loads(json.dumps(t.to_dict()))
  assert d["train_images"] is None and d["steps"] == 7 and d["timeout_s"] == 2.5
  assert ProxyTask.from_dict(d) == t
  assert ProxyTask.from_dict({"epochs": 2}) == ProxyTask(epochs=2)
  assert pickle.loads(pickle.dumps(t)) == t and hash(t) == hash(ProxyTask.from_dict(d))


def test_from_dict_refuses_unknown_keys():
  with pytest.raises(ValueError, match=r"ProxyTask dict has unknown key\(s\) \['epoch'\]; allowed: "
                                       r"\['dataset', 'resolution'"):
    ProxyTask.from_dict({"epoch": 3})
  with pytest.raises(ValueError, match="a ProxyTask dict must be a JSON object, got list"):
    ProxyTask.from_dict([1])


@pytest.mark.parametrize("changes, field, message", [
    ({"resolution": 0}, "resolution", "ProxyTask.resolution=0 is invalid; allowed: an integer >= 1"),
    ({"resolution": 32.0}, "resolution", "ProxyTask.resolution=32.0 is invalid; allowed: an integer >= 1"),
    ({"resolution": True}, "resolution", "ProxyTask.resolution=True is invalid"),
    ({"epochs": 0}, "epochs", "ProxyTask.epochs=0 is invalid; allowed: an integer >= 1"),
    ({"epochs": -2}, "epochs", "ProxyTask.epochs=-2 is invalid; allowed: an integer >= 1"),
    ({"steps": 0}, "steps", "ProxyTask.steps=0 is invalid; allowed: None or an integer >= 1"),
    ({"train_images": 0}, "train_images", "allowed: None or an integer >= 1"),
    ({"val_images": 0}, "val_images", "ProxyTask.val_images=0 is invalid"),
    ({"batch_size": 0}, "batch_size", "ProxyTask.batch_size=0 is invalid"),
    ({"train_images": 50}, "batch_size",
     r"ProxyTask.batch_size=64 is invalid; allowed: an integer in \[1, train_images=50\]"),
    ({"seed": -1}, "seed", "ProxyTask.seed=-1 is invalid; allowed: an integer >= 0"),
    ({"optimizer": "adam"}, "optimizer", "ProxyTask.optimizer='adam' is invalid; allowed: sgd or rmsprop"),
    ({"lr_schedule": "step"}, "lr_schedule", "allowed: cosine or constant"),
    ({"learning_rate": 0.0}, "learning_rate", "ProxyTask.learning_rate=0.0 is invalid; allowed: a "
                                              "finite number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate", "ProxyTask.learning_rate=nan is invalid"),
    ({"proxy_width": -0.5}, "proxy_width", "ProxyTask.proxy_width=-0.5 is invalid"),
    ({"momentum": 1.0}, "momentum", r"allowed: a number in \[0, 1\)"),
    ({"warmup_fraction": 1.0}, "warmup_fraction", r"allowed: a number in \[0, 1\)"),
    ({"weight_decay": -1e-5}, "weight_decay", "allowed: a finite number >= 0"),
    ({"label_smoothing": 1.0}, "label_smoothing", r"allowed: a number in \[0, 1\)"),
    ({"bn_momentum": 1.0}, "bn_momentum", r"allowed: None or a number in \[0, 1\)"),
    ({"timeout_s": 0}, "timeout_s", "ProxyTask.timeout_s=0 is invalid; allowed: None or a finite "
                                    "number > 0"),
    ({"grayscale_to_rgb": 1}, "grayscale_to_rgb", "allowed: True or False"),
    ({"data_dir": ""}, "data_dir", "allowed: None or a folder path"),
    ({"dataset": "imagenet"}, "dataset", "ProxyTask.dataset='imagenet' is unknown; allowed: "
                                         "fashion_mnist, cifar10, synthetic, tfds:NAME, dir:PATH"),
    ({"dataset": "synthetic:size=x"}, "dataset",
     "ProxyTask.dataset='synthetic:size=x': size='x' is invalid; allowed: an integer"),
])
def test_invalid_fields_are_named(changes, field, message):
  with pytest.raises(ProxyTaskError, match=message) as info:
    ProxyTask(**changes)
  assert info.value.field == field and isinstance(info.value, ValueError)


def test_valid_edges():
  t = ProxyTask(train_images=None, bn_momentum=None, warmup_fraction=0.0, momentum=0.0,
                dataset="dir:/somewhere", batch_size=1, timeout_s=0.5)
  assert t.replace(epochs=9).epochs == 9 and t.epochs == 2
