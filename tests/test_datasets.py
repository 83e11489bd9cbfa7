"""Tests for mnas_search.data.datasets: IDX files, where Fashion-MNIST is found, splits, the pipeline."""

import gzip
import importlib.util
import os
import struct
import subprocess

import numpy as np
import pytest

from mnas_search.data import datasets

N_TRAIN, N_TEST, H, W = 60, 12, 6, 7


def write_idx(path, array):
  """An IDX file of unsigned bytes, written by hand (not by the code under test)."""
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + np.asarray(array, np.uint8).tobytes())


def fake_fashion_mnist(folder):
  """Four small IDX files; image i has i in its top-left pixel and label i % 10."""
  os.makedirs(folder, exist_ok=True)
  for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
    images = (np.arange(n * H * W).reshape(n, H, W) * 7) % 256
    images[:, 0, 0] = np.arange(n)
    write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"), images)
    write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"), np.arange(n) % 10)
  return str(folder)


@pytest.fixture
def fresh_cache():
  datasets.clear_cache()
  yield
  datasets.clear_cache()


# ----------------------------------------------------------------------------- IDX files
def test_fashion_mnist_reads_idx_files_exactly(tmp_path):
  d = fake_fashion_mnist(tmp_path / "fm")
  raw = datasets.load_arrays("fashion_mnist", data_dir=d)
  (xtr, ytr), (xte, yte) = raw.train, raw.test
  assert xtr.shape == (N_TRAIN, H, W, 1) and xtr.dtype == np.uint8
  assert xte.shape == (N_TEST, H, W, 1)
  assert ytr.dtype == np.int32 and ytr.tolist() == [i % 10 for i in range(N_TRAIN)]
  assert yte.tolist() == [i % 10 for i in range(N_TEST)]
  assert xtr[5, :, :, 0].tolist() == [[5] + [(5 * H * W + j) * 7 % 256 for j in range(1, W)]] + [
      [(5 * H * W + r * W + c) * 7 % 256 for c in range(W)] for r in range(1, H)]
  assert raw.num_classes == 10 and raw.source == d


def test_read_idx_plain_file(tmp_path):
  path = str(tmp_path / "x-idx2-ubyte")
  with open(path, "wb") as f:
    f.write(bytes([0, 0, 8, 2]) + struct.pack(">2I", 2, 3) + bytes([1, 2, 3, 4, 5, 6]))
  assert datasets.read_idx(path).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_read_idx_rejects_bad_files(tmp_path):
  bad_magic = str(tmp_path / "bad")
  with open(bad_magic, "wb") as f:
    f.write(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + b"\0\0\0\0")
  with pytest.raises(ValueError, match=r"IDX file .*bad.*: bad magic number 00000d01; allowed: "
                                       r"0000 08 NN \(unsigned bytes, NN dimensions\)"):
    datasets.read_idx(bad_magic)
  short = str(tmp_path / "short")
  with open(short, "wb") as f:
    f.write(bytes([0, 0, 8, 2]) + struct.pack(">2I", 2, 3) + bytes(5))
  with pytest.raises(ValueError, match=r"shape \(2, 3\) needs 6 bytes of data, found 5"):
    datasets.read_idx(short)


def test_explicit_data_dir_without_files(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"data_dir='.*empty' has no Fashion-MNIST file\(s\) "
                                              r"\['train-images-idx3-ubyte.gz'"):
    datasets.load_arrays("fashion_mnist", data_dir=str(tmp_path / "empty"))


def test_loaded_arrays_are_cached_per_process(tmp_path, monkeypatch):
  d = fake_fashion_mnist(tmp_path / "fm")
  calls = []
  real = datasets.read_idx
  monkeypatch.setattr(datasets, "read_idx", lambda p: calls.append(p) or real(p))
  first = datasets.load_arrays("fashion_mnist", data_dir=d)
  second = datasets.load_arrays("fashion_mnist", data_dir=d)
  assert second is first and len(calls) == 4
  assert not first.train[0].flags.writeable  # shared by every caller: nobody may change it


# ----------------------------------------------------------------------------- where Fashion-MNIST is
def _dpkg(stdout="", returncode=0, raises=None):
  def run(cmd, **kwargs):
    assert cmd == ["dpkg", "-L", "dataset-fashion-mnist"]
    if raises:
      raise raises
    return subprocess.CompletedProcess(cmd, returncode, stdout=stdout, stderr="")
  return run


def test_debian_package_found_through_dpkg(tmp_path, monkeypatch, fresh_cache):
  d = fake_fashion_mnist(tmp_path / "pkg" / "fashion-mnist")
  listing = "\n".join(["/.", "/usr/share/doc/dataset-fashion-mnist/README.md.gz"]
                      + [os.path.join(d, n) for n in sorted(os.listdir(d))])
  monkeypatch.setattr(datasets.subprocess, "run", _dpkg(listing))
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "nokeras"))
  assert datasets.fashion_mnist_dir() == d


def test_without_dpkg_the_package_folder_is_tried(tmp_path, monkeypatch, fresh_cache):
  d = fake_fashion_mnist(tmp_path / "usr-share")
  monkeypatch.setattr(datasets.subprocess, "run", _dpkg(raises=FileNotFoundError("dpkg")))
  monkeypatch.setattr(datasets, "FASHION_MNIST_DEBIAN_FALLBACK", d)
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "nokeras"))
  assert datasets.fashion_mnist_dir() == d


def test_keras_cache_then_download(tmp_path, monkeypatch, fresh_cache):
  monkeypatch.setattr(datasets.subprocess, "run", _dpkg(returncode=1))  # package not installed
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  assert datasets.fashion_mnist_dir() is None  # nothing local: keras.datasets would download
  d = fake_fashion_mnist(tmp_path / "keras" / "datasets" / "fashion-mnist")
  assert datasets.fashion_mnist_dir() == d


# ----------------------------------------------------------------------------- splits
def _indices(images):
  return images[:, 0, 0, 0].tolist()


def test_splits_are_disjoint_deterministic_and_seeded(tmp_path):
  d = fake_fashion_mnist(tmp_path / "fm")
  s = datasets.load_splits("fashion_mnist", val_images=10, train_images=20, seed=0, data_dir=d)
  train, val = _indices(s.train[0]), _indices(s.val[0])
  assert len(train) == 20 and len(val) == 10 and not set(train) & set(val)
  assert s.train[1].tolist() == [i % 10 for i in train]  # labels stay with their images
  assert _indices(s.test[0]) == list(range(N_TEST))
  again = datasets.load_splits("fashion_mnist", val_images=10, train_images=20, seed=0, data_dir=d)
  assert _indices(again.train[0]) == train and _indices(again.val[0]) == val
  other = datasets.load_splits("fashion_mnist", val_images=10, train_images=20, seed=1, data_dir=d)
  assert _indices(other.val[0]) != val
  everything = datasets.load_splits("fashion_mnist", val_images=10, seed=0, data_dir=d)
  assert _indices(everything.val[0]) == val  # the validation split does not depend on train_images
  assert _indices(everything.train[0])[:20] == train
  assert sorted(_indices(everything.train[0]) + val) == list(range(N_TRAIN))
  assert (s.num_classes, s.image_shape, s.channels) == (10, (H, W, 1), 1)


def test_split_sizes_are_checked(tmp_path):
  d = fake_fashion_mnist(tmp_path / "fm")
  with pytest.raises(ValueError, match=r"val_images=60 is invalid for dataset 'fashion_mnist' with "
                                       r"60 training images; allowed: an integer in \[1, 59\]"):
    datasets.load_splits("fashion_mnist", val_images=60, data_dir=d)
  with pytest.raises(ValueError, match=r"train_images=51 is invalid .* val_images=10; allowed: an "
                                       r"integer in \[1, 50\]"):
    datasets.load_splits("fashion_mnist", val_images=10, train_images=51, data_dir=d)


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, message", [
    ("mnist", r"dataset='mnist' is unknown; allowed: fashion_mnist, cifar10, synthetic, tfds:NAME, "
              r"dir:PATH"),
    ("", r"dataset='' is invalid; allowed: fashion_mnist"),
    ("dir:", r"dataset='dir:' is invalid; dir: needs a path after it"),
    ("synthetic:size=0", r"dataset='synthetic:size=0': size=0 is invalid; allowed: an integer >= 1"),
    ("synthetic:colour=3", r"option 'colour=3' is not understood; allowed: size=N, channels=N, "
                           r"classes=N, train=N, test=N"),
])
def test_bad_dataset_names(name, message):
  with pytest.raises(ValueError, match=message):
    datasets.parse_dataset(name)


def test_missing_dir_names_the_path(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=f"folder '{missing}' does not exist"):
    datasets.load_arrays("dir:" + missing)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow_datasets") is not None,
                    reason="tensorflow_datasets is installed")
def test_tfds_without_the_package_says_how_to_install():
  with pytest.raises(ValueError, match=r"dataset='tfds:mnist' needs tensorflow_datasets.*"
                                       r"pip install \.\[tfds\]"):
    datasets.load_arrays("tfds:mnist")


def _png(path, rgb):
  from PIL import Image
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new("RGB", (8, 8), rgb).save(path)


def test_dir_dataset_with_train_and_test_folders(tmp_path):
  for split, n in (("train", 3), ("test", 1)):
    for cls, rgb in (("cat", (200, 10, 0)), ("dog", (0, 40, 250))):
      for i in range(n):
        _png(str(tmp_path / "pets" / split / cls / f"{i}.png"), rgb)
  raw = datasets.load_arrays(f"dir:{tmp_path / 'pets'}", image_size=8)
  assert raw.num_classes == 2
  assert raw.train[0].shape == (6, 8, 8, 3) and raw.train[1].tolist() == [0, 0, 0, 1, 1, 1]
  assert raw.train[0][0, 3, 4].tolist() == [200, 10, 0]
  assert raw.train[0][5, 7, 7].tolist() == [0, 40, 250]
  assert raw.test[0].shape == (2, 8, 8, 3) and raw.test[1].tolist() == [0, 1]


def test_dir_dataset_of_class_folders_only(tmp_path):
  for cls in ("a", "b", "c"):
    _png(str(tmp_path / "flat" / cls / "x.png"), (1, 2, 3))
  raw = datasets.load_arrays(f"dir:{tmp_path / 'flat'}", image_size=8)
  assert raw.train[1].tolist() == [0, 1, 2] and raw.test[0].shape == (0, 8, 8, 3)


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_and_determinism():
  raw = datasets.load_arrays("synthetic:size=8,channels=2,classes=3,train=30,test=6")
  assert raw.train[0].shape == (30, 8, 8, 2) and raw.test[0].shape == (6, 8, 8, 2)
  assert raw.num_classes == 3 and set(raw.train[1].tolist()) == {0, 1, 2}
  x1, y1 = datasets.synthetic_images(20, 8, 2, 3, seed=1)
  x2, y2 = datasets.synthetic_images(20, 8, 2, 3, seed=1)
  assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
  assert np.array_equal(raw.train[0], datasets.synthetic_images(30, 8, 2, 3, seed=1)[0])
  x3, _ = datasets.synthetic_images(20, 8, 2, 3, seed=2)
  assert not np.array_equal(x1, x3)


def test_synthetic_classes_differ_more_than_noise():
  x, y = datasets.synthetic_images(600, 16, 1, 4, seed=0)
  x = x.astype(np.float64).reshape(len(x), -1)
  means = np.stack([x[y == k].mean(0) for k in range(4)])
  nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  assert (nearest == y).mean() > 0.9  # a nearest-mean classifier already separates them


# ----------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("h, w, res, mode", [(28, 28, 32, "pad"), (32, 32, 32, "none"),
                                             (24, 24, 32, "pad"), (23, 23, 32, "resize"),
                                             (16, 16, 32, "resize"), (40, 40, 32, "resize"),
                                             (28, 32, 32, "pad")])
def test_fit_mode(h, w, res, mode):
  assert datasets.fit_mode(h, w, res) == mode


def test_pipeline_pads_normalizes_and_makes_rgb():
  images = np.zeros((3, 28, 28, 1), np.uint8)
  images[:, 1:27, 1:27] = 255
  ds = datasets.make_dataset(images, [4, 5, 6], datasets.Pipeline(resolution=32, batch_size=3, channels=3))
  x, y = next(iter(ds))
  x = x.numpy()
  assert x.shape == (3, 32, 32, 3) and y.numpy().tolist() == [4, 5, 6]
  assert x[0, 3, 3].tolist() == [1.0, 1.0, 1.0] and x[0, 28, 28].tolist() == [1.0, 1.0, 1.0]
  assert x[0, 2, 2].tolist() == [-1.0, -1.0, -1.0]  # the image's own black border
  assert x[0, 0, 0].tolist() == [-1.0, -1.0, -1.0] and x[0, 31, 31].tolist() == [-1.0] * 3  # pad
  assert float(x[:, 3:29, 3:29].min()) == 1.0


def test_pipeline_resizes_and_keeps_channels():
  images = np.full((2, 16, 16, 3), 51, np.uint8)
  x, _ = next(iter(datasets.make_dataset(images, [0, 1], datasets.Pipeline(resolution=32, batch_size=2))))
  assert x.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(x.numpy(), 51 / 127.5 - 1.0, atol=1e-6)


def test_pipeline_shuffles_with_its_seed_and_batches():
  images = np.zeros((100, 4, 4, 1), np.uint8)
  labels = np.arange(100)

  def order(seed, **kw):
    ds = datasets.make_dataset(images, labels, datasets.Pipeline(resolution=4, batch_size=32, shuffle=True,
                                                              seed=seed, **kw))
    return [int(v) for _, y in ds for v in y]

  a = order(0)
  assert sorted(a) == list(range(100)) and a != list(range(100))
  assert order(0) == a and order(1) != a
  dropped = datasets.make_dataset(images, labels, datasets.Pipeline(resolution=4, batch_size=32, drop_remainder=True))
  assert int(dropped.cardinality()) == 3 and len(order(0, drop_remainder=True)) == 96
  assert int(datasets.make_dataset(images, labels, datasets.Pipeline(resolution=4, batch_size=32)).cardinality()) == 4


def test_pipeline_without_cache_gives_the_same_batches():
  images = (np.arange(10 * 28 * 28).reshape(10, 28, 28, 1) % 256).astype(np.uint8)
  cached = datasets.make_dataset(images, np.arange(10), datasets.Pipeline(resolution=32, batch_size=4))
  uncached = datasets.make_dataset(images, np.arange(10), datasets.Pipeline(resolution=32, batch_size=4, cache_bytes_limit=0))
  for (xa, ya), (xb, yb) in zip(cached, uncached):
    assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy())


def test_pipeline_input_errors():
  with pytest.raises(ValueError, match=r"images of shape \(2, 4, 4\) and dtype uint8 are invalid; "
                                       r"allowed: uint8 \(N, H, W, C\)"):
    datasets.make_dataset(np.zeros((2, 4, 4), np.uint8), [0, 1], datasets.Pipeline(resolution=4, batch_size=1))
  with pytest.raises(ValueError, match=r"channels=2 is invalid for 1-channel images; allowed: None "
                                       r"or 1 or 3"):
    datasets.make_dataset(np.zeros((2, 4, 4, 1), np.uint8), [0, 1], datasets.Pipeline(resolution=4, batch_size=1, channels=2))
  with pytest.raises(ValueError, match=r"resolution=0 is invalid; allowed: an integer >= 1"):
    datasets.make_dataset(np.zeros((2, 4, 4, 1), np.uint8), [0, 1], datasets.Pipeline(resolution=0, batch_size=1))
