"""Tests for mnas_search.training.strategy: names, and fast failures for devices that are absent."""

import pytest
import tensorflow as tf

from mnas_search.training.strategy import make_strategy, resolve_strategy

GPUS = len(tf.config.list_logical_devices("GPU"))


def test_unknown_name():
  with pytest.raises(ValueError, match="strategy='gpu' is unknown; allowed: auto, cpu, mirrored, tpu"):
    make_strategy("gpu")


def test_cpu_is_one_device_on_the_cpu():
  s = make_strategy("cpu")
  assert isinstance(s, tf.distribute.OneDeviceStrategy) and s.num_replicas_in_sync == 1
  with s.scope():
    v = tf.Variable(1.0)
  assert "CPU" in v.device


@pytest.mark.skipif(GPUS > 0, reason="this machine has a GPU")
def test_mirrored_without_gpu_fails_fast():
  with pytest.raises(ValueError, match="strategy='mirrored' needs at least 1 GPU and this machine has "
                                       "none; allowed: auto or cpu"):
    make_strategy("mirrored")


def test_tpu_without_an_address_fails_fast(monkeypatch):
  monkeypatch.delenv("TPU_NAME", raising=False)
  with pytest.raises(ValueError, match=r"strategy='tpu' needs a TPU: pass tpu= \(--tpu=NAME, "
                                       r"grpc://ADDRESS or local\) or set TPU_NAME; none is given"):
    make_strategy("tpu")


@pytest.mark.skipif(GPUS >= 2, reason="auto picks MirroredStrategy here")
def test_auto_without_tpu_or_gpus_is_the_default_strategy(monkeypatch):
  monkeypatch.delenv("TPU_NAME", raising=False)
  s = make_strategy("auto")
  assert s is tf.distribute.get_strategy() and s.num_replicas_in_sync == 1


def test_resolve_strategy():
  assert resolve_strategy(None) is tf.distribute.get_strategy()
  cpu = make_strategy("cpu")
  assert resolve_strategy(cpu) is cpu
  assert isinstance(resolve_strategy("cpu"), tf.distribute.OneDeviceStrategy)
  with pytest.raises(ValueError, match=r"strategy=3 is invalid; allowed: None, one of \['auto', 'cpu', "
                                       r"'mirrored', 'tpu'\] or a tf.distribute.Strategy"):
    resolve_strategy(3)
