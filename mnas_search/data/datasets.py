"""Datasets for the proxy task and for final training, as numpy arrays plus one tf.data pipeline.

Names:
  fashion_mnist  the default. Read offline from the IDX files of the Debian package
                 `dataset-fashion-mnist` when it is installed, else from the Keras cache
                 (~/.keras/datasets/fashion-mnist), else downloaded by `keras.datasets`.
                 An explicit `data_dir` (a folder holding the four IDX files) overrides all.
  cifar10        `keras.datasets.cifar10` (its cache, else a download).
  synthetic      deterministic and learnable: a smooth class template plus noise.
                 `synthetic:size=16,channels=1,classes=4,train=600,test=100` sets any of its
                 knobs (defaults in `SYNTHETIC_DEFAULTS`).
  tfds:NAME      a TensorFlow Datasets builder (needs `pip install .[tfds]`).
  dir:PATH       a folder of class subfolders. When PATH holds a `train` subfolder, that is the
                 training set and `test` (optional) the test set; otherwise there is no test split.

The search scores children on a validation split CARVED FROM THE TRAINING SET (seeded, fixed,
disjoint from the images trained on); the test split is only for final training.

Only numpy is imported at module import; TF and Keras are imported on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import struct
import subprocess
from typing import Any

import numpy as np
from absl import logging

from nas_common import FieldError, FieldNotFoundError, check_int

DATASET_NAMES = ("fashion_mnist", "cifar10", "synthetic", "tfds:NAME", "dir:PATH")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
# Where the Debian package puts its files; used only when dpkg itself is unavailable.
FASHION_MNIST_DEBIAN_FALLBACK = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
SYNTHETIC_DEFAULTS = {"size": 32, "channels": 3, "classes": 10, "train": 10000, "test": 2000}
# Preprocessed splits larger than this are re-preprocessed every epoch instead of cached.
CACHE_BYTES_LIMIT = 1 << 30

Array = np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class RawDataset:
  """A whole dataset as loaded: uint8 NHWC images and int32 labels (arrays are read-only)."""

  train: tuple[Array, Array]
  test: tuple[Array, Array]
  num_classes: int
  source: str  # where it was read from, for the logs


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """Train, validation (carved from the training set) and test splits.

  Attributes:
    name: the dataset name as given.
    train: (images, labels) trained on; images uint8 NHWC, labels int32.
    val: (images, labels) held out from the training set, disjoint from `train`.
    test: (images, labels) of the dataset's own test split (may hold 0 images).
    num_classes: number of classes.
    source: where the arrays were read from.
  """

  name: str
  train: tuple[Array, Array]
  val: tuple[Array, Array]
  test: tuple[Array, Array]
  num_classes: int
  source: str = ""

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(int(v) for v in self.train[0].shape[1:])

  @property
  def channels(self) -> int:
    return int(self.train[0].shape[-1])


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A dataset name, parsed once by `parse_dataset`: which loader, with what.

  Attributes:
    name: the name as given (what logs and params.json say).
    kind: the loader's key in `_LOADERS`: fashion_mnist, cifar10, synthetic, tfds or dir.
    arg: the TFDS name (tfds) or the folder (dir); "" for the others.
    options: synthetic's knobs, defaults filled in, as sorted (key, value) pairs.
  """

  name: str
  kind: str
  arg: str = ""
  options: tuple[tuple[str, int], ...] = ()

  @property
  def sized_on_load(self) -> bool:
    """Its images are decoded at a size the caller picks (their files may differ in size)."""
    return self.kind in ("tfds", "dir")

  @property
  def mirror_keeps_class(self) -> bool:
    """A horizontally flipped image keeps its class (not so for synthetic's class templates)."""
    return self.kind != "synthetic"


def parse_dataset(name: str) -> DatasetSpec:
  """The spec of a dataset name (nothing is read); the one place a name is understood.

  Raises:
    FieldError: naming `dataset`, for an unknown name or bad options.
  """
  if not isinstance(name, str) or not name:
    raise FieldError("dataset", name, ", ".join(DATASET_NAMES))
  return _parse_dataset(name)


@functools.lru_cache(maxsize=64)
def _parse_dataset(name: str) -> DatasetSpec:
  if name in ("fashion_mnist", "cifar10"):
    return DatasetSpec(name, name)
  if name == "synthetic" or name.startswith("synthetic:"):
    return DatasetSpec(name, "synthetic", options=tuple(sorted(_synthetic_options(name).items())))
  for kind in ("tfds", "dir"):
    if name.startswith(kind + ":"):
      arg = name[len(kind) + 1:]
      if not arg.strip():
        raise FieldError("dataset", name, "", reason=f"is invalid; {kind}: needs a "
                         f"{'name' if kind == 'tfds' else 'path'} after it")
      return DatasetSpec(name, kind, arg)
  raise FieldError("dataset", name, ", ".join(DATASET_NAMES), reason="is unknown")


def _synthetic_options(name: str) -> dict[str, int]:
  """The knobs of a `synthetic[:key=value,...]` name, defaults filled in."""
  opts = dict(SYNTHETIC_DEFAULTS)
  spec = name.split(":", 1)[1] if ":" in name else ""
  for item in filter(None, (s.strip() for s in spec.split(","))):
    key, sep, value = item.partition("=")
    if not sep or key not in SYNTHETIC_DEFAULTS:
      raise FieldError("dataset", name, ", ".join(k + "=N" for k in SYNTHETIC_DEFAULTS),
                       reason=f": option {item!r} is not understood")
    try:
      opts[key] = int(value)
    except ValueError:
      raise FieldError("dataset", name, "an integer", reason=f": {key}={value!r} is invalid") from None
  minimum = {"size": 1, "channels": 1, "classes": 2, "train": 1, "test": 0}
  for key, low in minimum.items():
    if opts[key] < low:
      raise FieldError("dataset", name, f"an integer >= {low}",
                       reason=f": {key}={opts[key]} is invalid")
  return opts


# ----------------------------------------------------------------------------- loading
def load_arrays(name: str, data_dir: str | None = None, image_size: int | None = None) -> RawDataset:
  """Loads a whole dataset, once per process (later calls return the cached arrays).

  Args:
    name: a dataset name (see the module docstring).
    data_dir: fashion_mnist: the folder of its IDX files; tfds: the TFDS data folder.
    image_size: dir: and tfds: images are decoded at this square size (their files may differ
      in size); ignored by the others, whose images already share one size.

  Returns:
    The train and test arrays (read-only: they are shared by every caller in the process).
  """
  spec = parse_dataset(name)
  if not spec.sized_on_load:
    image_size = None  # keep one cache entry whatever the caller's resolution
  return _load_arrays_cached(spec, data_dir, image_size)


@functools.lru_cache(maxsize=8)
def _load_arrays_cached(spec: DatasetSpec, data_dir: str | None, image_size: int | None) -> RawDataset:
  raw = _LOADERS[spec.kind](spec, data_dir, image_size)
  name = spec.name
  for a in (*raw.train, *raw.test):
    a.setflags(write=False)
  logging.info("dataset %s: %d train, %d test images of shape %s, %d classes (from %s)", name,
               len(raw.train[1]), len(raw.test[1]), raw.train[0].shape[1:], raw.num_classes,
               raw.source)
  return raw


def clear_cache() -> None:
  """Forgets the arrays loaded so far in this process."""
  _load_arrays_cached.cache_clear()
  _debian_fashion_mnist_dir.cache_clear()


def read_idx(path: str) -> Array:
  """Reads an IDX file of unsigned bytes (gzipped when the name ends in .gz)."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise ValueError(f"IDX file {path!r} cannot be read: {e}") from None
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] < 1:
    raise ValueError(f"IDX file {path!r}: bad magic number {data[:4].hex()}; "
                     "allowed: 0000 08 NN (unsigned bytes, NN dimensions)")
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"IDX file {path!r} is truncated inside its header")
  dims = struct.unpack(f">{ndim}I", data[4:header])
  expected = int(np.prod(dims))
  if len(data) - header != expected:
    raise ValueError(f"IDX file {path!r}: shape {dims} needs {expected} bytes of data, "
                     f"found {len(data) - header}")
  return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def _idx_path(folder: str, stem: str) -> str | None:
  for candidate in (stem + ".gz", stem):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  return None


def _has_fashion_mnist(folder: str | None) -> bool:
  return bool(folder) and all(_idx_path(folder, s) for s in FASHION_MNIST_FILES.values())


@functools.lru_cache(maxsize=1)
def _debian_fashion_mnist_dir() -> str | None:
  """The folder of the Debian package's IDX files, as `dpkg -L` lists it, or None."""
  try:
    out = subprocess.run(["dpkg", "-L", FASHION_MNIST_PACKAGE], capture_output=True, text=True,
                         timeout=30, check=False)
  except (FileNotFoundError, OSError, subprocess.TimeoutExpired):
    # No dpkg (not Debian): the package's usual folder is the only other offline hint.
    return FASHION_MNIST_DEBIAN_FALLBACK if _has_fashion_mnist(FASHION_MNIST_DEBIAN_FALLBACK) else None
  if out.returncode != 0:
    return None
  target = FASHION_MNIST_FILES["train_images"]
  for line in out.stdout.splitlines():
    if os.path.basename(line.strip()).startswith(target):
      folder = os.path.dirname(line.strip())
      return folder if _has_fashion_mnist(folder) else None
  return None


def keras_cache_dir(subdir: str) -> str:
  """Where `keras.datasets` caches a dataset (KERAS_HOME honoured)."""
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return os.path.join(home, "datasets", subdir)


def fashion_mnist_dir(data_dir: str | None = None) -> str | None:
  """The folder the Fashion-MNIST IDX files are read from; None means a download is needed.

  Raises:
    FieldNotFoundError: an explicit `data_dir` lacks one of the four IDX files.
  """
  if data_dir is not None:
    missing = [s for s in FASHION_MNIST_FILES.values() if not _idx_path(data_dir, s)]
    if missing:
      raise FieldNotFoundError("data_dir", data_dir, "", reason="has no Fashion-MNIST file(s) "
                               f"{[m + '.gz' for m in missing]}")
    return data_dir
  for folder in (_debian_fashion_mnist_dir(), keras_cache_dir("fashion-mnist")):
    if _has_fashion_mnist(folder):
      return folder
  return None


def _load_fashion_mnist(data_dir: str | None) -> RawDataset:
  folder = fashion_mnist_dir(data_dir)
  if folder is None:
    logging.info("Fashion-MNIST: no local copy (package %s or the Keras cache); downloading",
                 FASHION_MNIST_PACKAGE)
    return _load_keras("fashion_mnist")
  arrays = {k: read_idx(_idx_path(folder, s)) for k, s in FASHION_MNIST_FILES.items()}
  for split in ("train", "test"):
    x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
      raise ValueError(f"Fashion-MNIST in {folder!r}: {split} images {x.shape} and labels {y.shape} "
                       "do not match; expected (N, H, W) and (N,)")
  return RawDataset(train=(arrays["train_images"][..., None], arrays["train_labels"].astype(np.int32)),
                    test=(arrays["test_images"][..., None], arrays["test_labels"].astype(np.int32)),
                    num_classes=10, source=folder)


def _load_keras(name: str) -> RawDataset:
  import keras
  (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
  if xtr.ndim == 3:
    xtr, xte = xtr[..., None], xte[..., None]
  return RawDataset(train=(xtr.astype(np.uint8), ytr.reshape(-1).astype(np.int32)),
                    test=(xte.astype(np.uint8), yte.reshape(-1).astype(np.int32)),
                    num_classes=10, source=f"keras.datasets.{name}")


def synthetic_images(count: int, size: int, channels: int, num_classes: int,
                     seed: int) -> tuple[Array, Array]:
  """Deterministic, learnable images: a smooth per-class template, a random shift and noise.

  The templates depend only on (size, channels, num_classes), so every split shares them; the
  labels, shifts and noise depend on `seed`.
  """
  grid = 4
  templates = np.random.default_rng([size, channels, num_classes]).random(
      (num_classes, grid, grid, channels), dtype=np.float32)
  cells = (np.arange(size) * grid) // size  # nearest-neighbour upsampling of the 4x4 grid
  templates = templates[:, cells][:, :, cells]
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, count).astype(np.int32)
  images = templates[labels]
  shift = max(1, size // 16)
  for axis, offsets in ((1, rng.integers(-shift, shift + 1, count)),
                        (2, rng.integers(-shift, shift + 1, count))):
    for off in np.unique(offsets):
      sel = offsets == off
      images[sel] = np.roll(images[sel], off, axis=axis)
  images = images + rng.normal(0.0, 0.25, images.shape).astype(np.float32)
  return np.clip(images * 255.0, 0, 255).astype(np.uint8), labels


def _load_synthetic(spec: DatasetSpec) -> RawDataset:
  o = dict(spec.options)
  return RawDataset(train=synthetic_images(o["train"], o["size"], o["channels"], o["classes"], seed=1),
                    test=synthetic_images(o["test"], o["size"], o["channels"], o["classes"], seed=2),
                    num_classes=o["classes"], source="synthetic")


def _empty_split(shape: tuple[int, ...]) -> tuple[Array, Array]:
  return np.zeros((0, *shape), np.uint8), np.zeros((0,), np.int32)


def _load_tfds(name: str, data_dir: str | None, image_size: int | None) -> RawDataset:
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise ValueError(f"dataset='tfds:{name}' needs tensorflow_datasets, which is not installed; "
                     "install it with `pip install .[tfds]`") from None
  import tensorflow as tf
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
  except Exception as e:  # TFDS raises its own error types for unknown names and failed downloads
    raise ValueError(f"dataset='tfds:{name}' cannot be loaded: {e}") from None

  def arrays(split: str) -> tuple[Array, Array]:
    ds = builder.as_dataset(split=split, as_supervised=True)
    if image_size:
      ds = ds.map(lambda x, y: (tf.cast(tf.image.resize(x, (image_size, image_size)), tf.uint8), y))
    xs, ys = [], []
    for x, y in ds.batch(1024).as_numpy_iterator():
      xs.append(x)
      ys.append(y)
    return np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int32)

  train = arrays("train")
  test = arrays("test") if "test" in builder.info.splits else _empty_split(train[0].shape[1:])
  return RawDataset(train=train, test=test,
                    num_classes=int(builder.info.features["label"].num_classes), source=f"tfds:{name}")


def _load_dir(path: str, image_size: int | None) -> RawDataset:
  if not os.path.isdir(path):
    raise FieldNotFoundError("dataset", f"dir:{path}", "",
                             reason=f": folder {path!r} does not exist")
  size = image_size or 256
  train_dir, test_dir = path, None
  if os.path.isdir(os.path.join(path, "train")):
    train_dir = os.path.join(path, "train")
    test_dir = os.path.join(path, "test") if os.path.isdir(os.path.join(path, "test")) else None
  train, classes = _read_image_folder(train_dir, size)
  test = _empty_split(train[0].shape[1:])
  if test_dir is not None:
    test, test_classes = _read_image_folder(test_dir, size, classes)
    if test_classes != classes:
      raise ValueError(f"dataset='dir:{path}': test classes {test_classes} differ from the "
                       f"training classes {classes}")
  return RawDataset(train=train, test=test, num_classes=len(classes), source=path)


def _read_image_folder(folder: str, size: int,
                       class_names: list[str] | None = None) -> tuple[tuple[Array, Array], list[str]]:
  import keras
  try:
    ds = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", label_mode="int", class_names=class_names, image_size=(size, size),
        batch_size=256, shuffle=False, verbose=False)
  except ValueError as e:
    raise ValueError(f"dataset folder {folder!r}: {e}") from None
  xs, ys = [], []
  for x, y in ds.as_numpy_iterator():
    xs.append(np.clip(np.round(x), 0, 255).astype(np.uint8))
    ys.append(y.astype(np.int32))
  return (np.concatenate(xs), np.concatenate(ys)), list(ds.class_names)


# ----------------------------------------------------------------------------- splits
# The loaders by kind, each (spec, data_dir, image_size) -> RawDataset.
_LOADERS = {
    "fashion_mnist": lambda spec, data_dir, size: _load_fashion_mnist(data_dir),
    "cifar10": lambda spec, data_dir, size: _load_keras("cifar10"),
    "synthetic": lambda spec, data_dir, size: _load_synthetic(spec),
    "tfds": lambda spec, data_dir, size: _load_tfds(spec.arg, data_dir, size),
    "dir": lambda spec, data_dir, size: _load_dir(spec.arg, size),
}


def load_splits(name: str, val_images: int, train_images: int | None = None, seed: int = 0,
                data_dir: str | None = None, image_size: int | None = None) -> Splits:
  """Loads a dataset and carves a validation split from its training set.

  The training set is permuted with `seed`; the first `val_images` of the permutation are the
  validation split and the next `train_images` (all the rest when None) the training split. So
  the split is fixed by (seed, val_images), disjoint, and a smaller `train_images` gives a subset
  of a larger one.

  Args:
    name: a dataset name (see the module docstring).
    val_images: images held out for validation (>= 1).
    train_images: images to train on; None for all the rest.
    seed: the split's seed.
    data_dir: see `load_arrays`.
    image_size: see `load_arrays`.

  Returns:
    The splits (views of the process-wide cached arrays; read-only).

  Raises:
    ValueError: the dataset has too few training images for val_images + train_images.
  """
  raw = load_arrays(name, data_dir, image_size)
  x, y = raw.train
  n = len(y)
  if isinstance(val_images, bool) or not isinstance(val_images, int) or not 1 <= val_images < n:
    raise FieldError("val_images", val_images, f"an integer in [1, {n - 1}]",
                     detail=f" for dataset {name!r} with {n} training images")
  if train_images is not None and (isinstance(train_images, bool) or not isinstance(train_images, int)
                                   or not 1 <= train_images <= n - val_images):
    raise FieldError("train_images", train_images, f"an integer in [1, {n - val_images}]",
                     detail=f" for dataset {name!r} with {n} training images and "
                     f"val_images={val_images}")
  perm = np.random.default_rng(seed).permutation(n)
  val_idx = perm[:val_images]
  train_idx = perm[val_images:] if train_images is None else perm[val_images:val_images + train_images]
  return Splits(name=name, train=(x[train_idx], y[train_idx]), val=(x[val_idx], y[val_idx]),
                test=raw.test, num_classes=raw.num_classes, source=raw.source)


# ----------------------------------------------------------------------------- tf.data
def fit_mode(height: int, width: int, resolution: int) -> str:
  """How images of height x width reach resolution²: 'none', 'pad' or 'resize'.

  Images a little smaller than the target (at least 3/4 of it, as 28 -> 32) are zero-padded
  around the centre, which keeps every pixel as it is; all others are resized (bilinear).
  """
  if height == width == resolution:
    return "none"
  if height <= resolution and width <= resolution and 4 * min(height, width) >= 3 * resolution:
    return "pad"
  return "resize"


def _check_pipeline_input(images: Array, labels: Array, resolution: int, batch_size: int,
                          channels: int | None) -> int:
  """Checks `make_dataset`'s input; returns the channels of its output."""
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f"images of shape {images.shape} and dtype {images.dtype} are invalid; "
                     "allowed: uint8 (N, H, W, C)")
  if len(labels) != len(images):
    raise ValueError(f"{len(labels)} labels for {len(images)} images; allowed: one label per image")
  for field, v in (("resolution", resolution), ("batch_size", batch_size)):
    check_int(field, v, 1)
  c = images.shape[-1]
  out_c = c if channels is None else channels
  if out_c not in (c, 3) or (out_c != c and c != 1):
    raise ValueError(f"channels={channels!r} is invalid for {c}-channel images; allowed: None or "
                     f"{c}" + (" or 3" if c == 1 else ""))
  return out_c


@dataclasses.dataclass(frozen=True)
class Pipeline:
  """How `make_dataset` feeds images to a model.

  Attributes:
    resolution: the square size the model sees.
    batch_size: images per batch.
    shuffle: reshuffle every epoch (seeded by `seed`).
    seed: the shuffle seed.
    channels: 3 turns 1-channel images into RGB; None keeps the images' own channels.
    drop_remainder: drop the last partial batch (one input shape: no retracing).
    repeat: repeat forever (for a fixed number of steps).
    cache_bytes_limit: cache the preprocessed images when they take at most this many bytes.
  """

  resolution: int
  batch_size: int
  shuffle: bool = False
  seed: int = 0
  channels: int | None = None
  drop_remainder: bool = False
  repeat: bool = False
  cache_bytes_limit: int = CACHE_BYTES_LIMIT


def make_dataset(images: Array, labels: Array, pipeline: Pipeline) -> Any:
  """The one input pipeline: normalize, pad or resize, set channels, cache, shuffle, batch, prefetch.

  Args:
    images: uint8 NHWC images.
    labels: integer labels, one per image.
    pipeline: resolution, batch size, shuffling, channels and caching.

  Returns:
    A `tf.data.Dataset` of (float32 images in [-1, 1] at resolution², int32 labels).
  """
  import tensorflow as tf
  p = pipeline
  resolution, batch_size, channels = p.resolution, p.batch_size, p.channels
  images = np.asarray(images)
  out_c = _check_pipeline_input(images, labels, resolution, batch_size, channels)
  n, h, w, c = images.shape
  mode = fit_mode(h, w, resolution)

  def preprocess(x, y):  # on a batch: all ops vectorized
    x = tf.cast(x, tf.float32)
    if mode == "pad":
      top, left = (resolution - h) // 2, (resolution - w) // 2
      x = tf.pad(x, [[0, 0], [top, resolution - h - top], [left, resolution - w - left], [0, 0]])
    elif mode == "resize":
      x = tf.image.resize(x, (resolution, resolution), antialias=h > resolution or w > resolution)
    x = x / 127.5 - 1.0
    if out_c != c:
      x = tf.repeat(x, out_c, axis=-1)
    return x, y

  ds = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
  cache = n * resolution * resolution * out_c * 4 <= p.cache_bytes_limit
  if cache:
    # Preprocess once, in large vectorized chunks, and keep the result in memory.
    ds = ds.batch(1024).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
    # unbatch() forgets the length; Keras needs it to know the epoch's steps in advance.
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
  if p.shuffle:
    ds = ds.shuffle(n, seed=p.seed, reshuffle_each_iteration=True)
  if p.repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=p.drop_remainder)
  if not cache:
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)
