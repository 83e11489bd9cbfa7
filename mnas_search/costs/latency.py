"""Latency measured on this device: a lookup table of per-block TFLite timings.

Every distinct MBConv block configuration (input size, filters in and out,
kernel, stride, expansion, SE ratio, skip and activation), the stem and the
head are each converted to a tiny batch-1 TFLite model and timed in
`tf.lite.Interpreter(num_threads=N)` on the local CPU: a few warm-up runs, then
the median of R timed runs (the thread's CPU time with one thread, so that
other processes on a shared machine add little noise; the wall time with
more). A network's latency is predicted from the sum of its stem, its blocks (per
`Architecture.expand_blocks()`, with the sizes of `search_space.costs.block_costs`)
and its head, corrected by a `Calibration` fitted to a few networks timed end
to end: a lone block pays a call's fixed cost that a whole network pays once, and
keeps its weights in cache where a whole network's may not fit. Every model is
converted with its weights frozen into constants, as deployed (`to_tflite`).

The table is cached as JSON, one file per (device, TF version, threads, format) under a
cache folder (`~/.cache/mnas_search/latency/` by default), written atomically,
with one calibration per (resolution, classes).
Entries that are missing are measured on demand and added, so a search can
fill the table lazily; `LatencyModel(measure_missing=False)` refuses instead.

TensorFlow and Keras are imported only when something is measured, so a
prediction from a complete cached table stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import platform
import random
import re
import time
import warnings
from typing import Any, Callable, ClassVar, Iterable, Sequence, Union

import numpy as np
from absl import logging

from mnas_search.util import fileio
from nas_common import FieldError, check_int
from search_space.blocks import ACTIVATIONS, Architecture, ConcreteBlock, round_filters
from search_space.costs import block_costs, conv_output_size, count_params
from search_space.space import SearchSpace

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "mnas_search", "latency")
DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 30
DEFAULT_ROUNDS = 5       # end-to-end rounds (measure_end_to_end_many)
DEFAULT_KEY_ROUNDS = 3   # rounds per table entry (measure_key)
DEFAULT_CALIBRATION_NETWORKS = 6
CALIBRATION_SEED = 20261203
# 2: entries and end-to-end times of frozen graphs (weights as constants, as deployed); the
# format-1 tables timed graphs that read their weights as variables on every call. The format is
# part of the file name, so a table of another format is left alone and a new one is measured.
TABLE_FORMAT = 2


def _check_int(name: str, value: Any, minimum: int) -> int:
  return check_int(name, value, minimum)


def _check_key(key: Any, int_fields: Sequence[str]) -> None:
  """Checks a key's integer fields (each >= 1) and its activation."""
  for name in int_fields:
    _check_int(name, getattr(key, name), 1)
  if key.activation not in ACTIVATIONS:
    raise ValueError(f"activation={key.activation!r} is invalid; allowed: {list(ACTIVATIONS)}")


# ----------------------------------------------------------------------------- keys
@dataclasses.dataclass(frozen=True)
class BlockKey:
  """One MBConv block configuration as it runs: everything that changes its latency.

  `has_skip` is the effective identity skip (stride 1, equal filters, skip
  allowed), so configurations that build the same layers share one entry.
  """

  kind: ClassVar[str] = "block"
  input_size: int
  input_filters: int
  output_filters: int
  kernel_size: int
  stride: int
  expand_ratio: int
  se_ratio: float
  has_skip: bool
  activation: str

  def __post_init__(self):
    _check_key(self, ("input_size", "input_filters", "output_filters", "kernel_size", "expand_ratio"))
    if self.stride not in (1, 2):
      raise ValueError(f"stride={self.stride!r} is invalid; allowed: 1 or 2")
    se = self.se_ratio
    if isinstance(se, bool) or not isinstance(se, (int, float)) or not 0.0 <= se <= 1.0:
      raise ValueError(f"se_ratio={se!r} is invalid; allowed: a number in [0, 1]")
    if not isinstance(self.has_skip, bool):
      raise ValueError(f"has_skip={self.has_skip!r} is invalid; allowed: true or false")
    if self.has_skip and (self.stride != 1 or self.input_filters != self.output_filters):
      raise ValueError(f"has_skip=True needs stride 1 and input_filters == output_filters; got "
                       f"stride {self.stride}, filters {self.input_filters}->{self.output_filters}")
    object.__setattr__(self, "se_ratio", float(se))


@dataclasses.dataclass(frozen=True)
class StemKey:
  """The 3x3 stride-2 stem conv, BN and activation on a `resolution`² RGB image."""

  kind: ClassVar[str] = "stem"
  resolution: int
  filters: int
  activation: str

  def __post_init__(self):
    _check_key(self, ("resolution", "filters"))


@dataclasses.dataclass(frozen=True)
class HeadKey:
  """The 1x1 head conv, BN, activation, average pooling and the dense classifier."""

  kind: ClassVar[str] = "head"
  input_size: int
  input_filters: int
  filters: int
  num_classes: int
  activation: str

  def __post_init__(self):
    _check_key(self, ("input_size", "input_filters", "filters", "num_classes"))


LatencyKey = Union[StemKey, BlockKey, HeadKey]
_KEY_TYPES = {cls.kind: cls for cls in (StemKey, BlockKey, HeadKey)}


def key_to_dict(key: LatencyKey) -> dict[str, Any]:
  return {"kind": key.kind, **dataclasses.asdict(key)}


def key_from_dict(d: dict[str, Any]) -> LatencyKey:
  """The key a JSON entry describes (without its `ms`)."""
  kind = d.get("kind")
  if kind not in _KEY_TYPES:
    raise ValueError(f"kind={kind!r} is invalid; allowed: {sorted(_KEY_TYPES)}")
  cls = _KEY_TYPES[kind]
  names = {f.name for f in dataclasses.fields(cls)}
  fields = {k: v for k, v in d.items() if k != "kind"}
  if set(fields) != names:
    raise ValueError(f"a {kind} entry needs exactly the fields {sorted(names)}; got {sorted(fields)}")
  return cls(**fields)


def block_key(block: ConcreteBlock, input_size: int, activation: str) -> BlockKey:
  return BlockKey(input_size=input_size, input_filters=block.input_filters,
                  output_filters=block.output_filters, kernel_size=block.kernel_size,
                  stride=block.stride, expand_ratio=block.expand_ratio,
                  se_ratio=float(block.se_ratio), has_skip=block.has_skip, activation=activation)


def network_keys(arch: Architecture, resolution: int, num_classes: int) -> list[LatencyKey]:
  """The stem, every concrete block and the head of `arch`, in network order (repeats kept)."""
  _check_int("resolution", resolution, 1)
  _check_int("num_classes", num_classes, 1)
  costs = block_costs(arch, resolution)
  keys: list[LatencyKey] = [StemKey(resolution, arch.stem_channels, arch.activation)]
  keys += [block_key(c.block, c.input_size, arch.activation) for c in costs]
  keys.append(HeadKey(costs[-1].output_size, costs[-1].block.output_filters, arch.head_channels,
                      num_classes, arch.activation))
  return keys


def table_keys(space: SearchSpace, resolution: int = 224, num_classes: int = 1000) -> list[LatencyKey]:
  """Every distinct key reachable by the architectures `space` decodes to, at `resolution`.

  Per stage: the first (possibly strided) block over each input filter count the
  previous stage can give, and, when the stage may repeat, the stride-1 block
  with input = output filters. Kernel, expansion, SE and skip multiply both.
  """
  _check_int("resolution", resolution, 1)
  _check_int("num_classes", num_classes, 1)
  act = space.activation
  stem = round_filters(space.stem_filters, 1.0)  # decoded architectures have width 1
  keys: dict[LatencyKey, None] = {StemKey(resolution, stem, act): None}
  size = conv_output_size(resolution, 2)
  inputs: tuple[int, ...] = (stem,)
  for stage, st in enumerate(space.stages):
    out_size = conv_output_size(size, st.stride)
    outputs = tuple(round_filters(f, 1.0) for f in st.filters)
    variants = [(k, e, se, skip) for k in st.kernel for e in st.expansion for se in st.se_ratio
                for skip in st.skip]
    shapes = [(size, cin, cout, st.stride) for cin in inputs for cout in outputs]
    if max(st.repeats) > 1:
      shapes += [(out_size, cout, cout, 1) for cout in outputs]
    for (in_size, cin, cout, stride) in shapes:
      for k, e, se, skip in variants:
        block = ConcreteBlock(index=0, stage=stage, kernel_size=k, stride=stride, expand_ratio=e,
                              input_filters=cin, output_filters=cout, se_ratio=float(se),
                              id_skip=(skip == "identity"), drop_rate=0.0)
        keys[block_key(block, in_size, act)] = None
    size, inputs = out_size, outputs
  head = round_filters(space.head_filters, 1.0)
  for cin in inputs:
    keys[HeadKey(size, cin, head, num_classes, act)] = None
  return list(keys)


# ----------------------------------------------------------------------------- prediction
class MissingEntriesError(FieldError):
  """The table lacks entries and measuring them was not allowed: a FieldError of `measure_missing`
  (False), whose message says what is missing."""

  def __init__(self, missing: int, total: int, name: str, resolution: int, example: dict,
               what: str | None = None):
    what = what or (f"{missing} of the {total} entries of {name!r} at resolution {resolution}, "
                    f"e.g. {example}")
    super().__init__(
        "measure_missing", False, "True, or a table built first (launch.py latency --build)",
        reason=f"leaves the latency table without {what}",
        message=f"the latency table lacks {what}; allowed: measure them (measure_missing=True) or "
        "build the table first (launch.py latency --build)")

  @classmethod
  def calibration(cls, resolution: int, num_classes: int) -> "MissingEntriesError":
    return cls(1, 1, "", resolution, {}, what=f"its end-to-end calibration at resolution "
               f"{resolution} with {num_classes} classes")


def predict(arch: Architecture, resolution: int, num_classes: int,
            table: dict[LatencyKey, float]) -> float:
  """Predicted latency in ms: the sum of the table's entries for the stem, blocks and head.

  Raises:
    MissingEntriesError: naming how many keys are missing and the first one.
  """
  keys = network_keys(arch, resolution, num_classes)
  missing = distinct_missing(keys, table)
  if missing:
    raise MissingEntriesError(len(missing), len(set(keys)), arch.name, resolution,
                              key_to_dict(missing[0]))
  return float(sum(table[k] for k in keys))


def distinct_missing(keys: Iterable[LatencyKey], table: dict[LatencyKey, Any]) -> list[LatencyKey]:
  """The keys absent from `table`, each once, in their first order."""
  return [k for k in dict.fromkeys(keys) if k not in table]


@dataclasses.dataclass(frozen=True)
class Calibration:
  """How a network's table sum maps to its end-to-end time, at one resolution and class count.

  predicted = overhead_ms + scale * (sum of the entries) + ms_per_mparam * (parameters / 1e6):
  one call's fixed cost, the arithmetic as the lone entries time it, and the weights a whole
  network reads from memory on every call (a lone entry finds its own in cache). Fitted by
  `fit_calibration`; `median_ratio` is the fit's predicted/measured median on its networks.
  """

  resolution: int
  num_classes: int
  overhead_ms: float
  scale: float
  ms_per_mparam: float
  n_networks: int
  median_ratio: float

  def apply(self, sum_ms: float, params: int) -> float:
    return self.overhead_ms + self.scale * sum_ms + self.ms_per_mparam * params / 1e6

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Calibration":
    names = {f.name for f in dataclasses.fields(cls)}
    if set(d) != names:
      raise ValueError(f"a calibration needs exactly the fields {sorted(names)}; got {sorted(d)}")
    return cls(**d)


def fit_calibration(sums_ms: Sequence[float], params: Sequence[int], measured_ms: Sequence[float],
                    resolution: int, num_classes: int) -> Calibration:
  """The non-negative least-squares fit of `Calibration` in relative error.

  Relative error, so that the small networks weigh as much as the large ones; every subset of
  the three terms (of at most as many terms as networks) is tried and the best fit with no
  negative coefficient is kept (a negative overhead or bandwidth term would be a fit to noise,
  and could predict below zero).

  Raises:
    ValueError: no network, lengths that differ, or a measurement that is not > 0.
  """
  if not len(sums_ms) == len(params) == len(measured_ms):
    raise ValueError(f"sums_ms, params and measured_ms differ in length: {len(sums_ms)}, "
                     f"{len(params)}, {len(measured_ms)}")
  if not len(measured_ms):
    raise ValueError("a calibration needs at least one network timed end to end; got none")
  y = np.asarray(measured_ms, dtype=float)
  x = np.stack([np.ones_like(y), np.asarray(sums_ms, dtype=float),
                np.asarray(params, dtype=float) / 1e6], axis=1)
  if not np.all(y > 0):
    raise ValueError(f"measured_ms must all be > 0; got {y.tolist()}")
  a, b = x / y[:, None], np.ones_like(y)
  best: tuple[float, np.ndarray] | None = None
  for subset in ((0, 1, 2), (1, 2), (0, 1), (0, 2), (1,), (2,), (0,)):
    if len(subset) > len(y):
      continue
    coef = np.zeros(3)
    coef[list(subset)] = np.linalg.lstsq(a[:, subset], b, rcond=None)[0]
    if np.any(coef < 0):
      continue
    loss = float(np.sum((a @ coef - b) ** 2))
    if best is None or loss < best[0] - 1e-12:
      best = (loss, coef)
  assert best is not None  # a single non-negative column always fits with a coefficient >= 0
  coef = best[1]
  ratio = float(np.median((x @ coef) / y))
  return Calibration(resolution, num_classes, round(float(coef[0]), 6), round(float(coef[1]), 6),
                     round(float(coef[2]), 6), int(len(y)), round(ratio, 4))


def calibration_architectures(space: SearchSpace, count: int,
                              seed: int = CALIBRATION_SEED) -> list[Architecture]:
  """`count` distinct networks of `space` drawn with a fixed seed (names "calibration-I")."""
  rng = np.random.default_rng(seed)
  archs: dict[tuple, Architecture] = {}
  for _ in range(100 * count):
    if len(archs) == count:
      break
    arch = space.decode(space.sample_indices(rng), name=f"calibration-{len(archs)}")
    archs.setdefault(arch.blocks, arch)
  return list(archs.values())


# ----------------------------------------------------------------------------- the cache
def device_name() -> str:
  """The CPU model name (from /proc/cpuinfo, else `platform.processor()`), for cache keys."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown-cpu"


def tf_version() -> str:
  """The installed TensorFlow version, read without importing TensorFlow when possible."""
  try:
    return importlib.metadata.version("tensorflow")
  except importlib.metadata.PackageNotFoundError:
    import tensorflow as tf
    return tf.__version__


def cache_path(cache_dir: str | None, threads: int, device: str | None = None,
               version: str | None = None) -> str:
  """The table file for (device, TF version, threads) and this `TABLE_FORMAT` under `cache_dir`.

  Args:
    cache_dir: the cache folder; `DEFAULT_CACHE_DIR` when None.
    threads: the interpreter threads the table is timed with.
    device: the CPU model; this machine's (`device_name()`) when None.
    version: the TF version; the installed one when None.
  """
  _check_int("threads", threads, 1)
  device = device_name() if device is None else device
  version = tf_version() if version is None else version
  folder = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
  return os.path.join(folder, f"{_slug(device)}__tf{_slug(version)}__threads{threads}"
                      f"__format{TABLE_FORMAT}.json")


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def _read_table(path: str, device: str, version: str, threads: int) -> dict[str, Any] | None:
  """A table file's JSON after its header checks; None when there is no file."""
  if not os.path.exists(path):
    return None
  data = fileio.read_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
    raise ValueError(f"latency table {path!r} is not a table: expected an object with 'entries'")
  if data.get("format") != TABLE_FORMAT:
    raise ValueError(f"latency table {path!r} has format={data.get('format')!r} but this version "
                     f"reads format={TABLE_FORMAT}; allowed: a table written by this version "
                     "(delete the file to measure it again)")
  want = {"device": device, "tf_version": version, "threads": threads}
  for field, value in want.items():
    if data.get(field) != value:
      raise ValueError(f"latency table {path!r} has {field}={data.get(field)!r} but {value!r} was "
                       "asked for; allowed: a table measured on this device, TF version and threads")
  return data


def load_table(path: str, device: str, version: str, threads: int) -> dict[LatencyKey, float]:
  """Reads a table file's entries; a missing file is an empty table.

  Raises:
    ValueError: the file is not a table, or it was measured for another
      device, TF version or thread count (the file name is only a slug of those).
  """
  data = _read_table(path, device, version, threads)
  if data is None:
    return {}
  table = {}
  for i, entry in enumerate(data["entries"]):
    try:
      entry = dict(entry)
      ms = entry.pop("ms")
      if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms >= 0:
        raise ValueError(f"ms={ms!r} is invalid; allowed: a number >= 0")
      table[key_from_dict(entry)] = float(ms)
    except (ValueError, TypeError, KeyError) as e:
      raise ValueError(f"latency table {path!r} entry {i}: {e}") from None
  return table


CalibrationKey = tuple[int, int]  # (resolution, num_classes)


def load_calibrations(path: str, device: str, version: str,
                      threads: int) -> dict[CalibrationKey, Calibration]:
  """Reads a table file's calibrations (none in a missing file or one written before them)."""
  data = _read_table(path, device, version, threads)
  found = {}
  for i, d in enumerate((data or {}).get("calibrations", [])):
    try:
      c = Calibration.from_dict(dict(d))
    except (ValueError, TypeError) as e:
      raise ValueError(f"latency table {path!r} calibration {i}: {e}") from None
    found[(c.resolution, c.num_classes)] = c
  return found


def save_table(path: str, table: dict[LatencyKey, float], device: str, version: str,
               threads: int, method: dict[str, Any] | None = None,
               calibrations: Iterable[Calibration] = ()) -> None:
  """Writes the table atomically, keeping entries and calibrations another process added to the
  file meanwhile (the given ones win)."""
  merged = {**load_table(path, device, version, threads), **table}
  cal = load_calibrations(path, device, version, threads)
  cal.update({(c.resolution, c.num_classes): c for c in calibrations})
  data = {"format": TABLE_FORMAT, "device": device, "tf_version": version, "threads": threads,
          "method": method or {},
          "entries": [{**key_to_dict(k), "ms": ms} for k, ms in merged.items()],
          "calibrations": [c.to_dict() for _, c in sorted(cal.items())]}
  fileio.atomic_write_json(path, data)


# ----------------------------------------------------------------------------- measuring
def measure_key(key: LatencyKey, threads: int = 1, warmup: int = DEFAULT_WARMUP,
                repeats: int = DEFAULT_REPEATS, rounds: int = DEFAULT_KEY_ROUNDS) -> float:
  """Times one stem, block or head as its own batch-1 TFLite model, in ms: the fastest of
  `rounds` medians of `repeats` calls (other processes only ever add time)."""
  _check_timing(threads, warmup, repeats)
  model, shape = _key_model(key)
  return time_tflite(to_tflite(model, shape), shape, threads, warmup, repeats, rounds)


def measure_end_to_end(arch: Architecture, resolution: int, num_classes: int, threads: int = 1,
                       warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS) -> float:
  """Times the whole network as one batch-1 TFLite model, as `measure_key` times an entry."""
  return measure_end_to_end_many([arch], resolution, num_classes, threads, warmup, repeats, 1)[0]


def measure_end_to_end_many(archs: Sequence[Architecture], resolution: int, num_classes: int,
                            threads: int = 1, warmup: int = DEFAULT_WARMUP,
                            repeats: int = DEFAULT_REPEATS,
                            rounds: int = DEFAULT_ROUNDS) -> list[float]:
  """Times whole networks side by side; each one's latency in ms, in the order given.

  The fastest of `rounds` interleaved rounds (`end_to_end_rounds`) is kept: other processes' use of
  the shared cache and cores only ever adds time, so the fastest round is the least disturbed one.
  """
  return fastest(end_to_end_rounds(archs, resolution, num_classes, threads, warmup, repeats,
                                   rounds))


def fastest(times: np.ndarray) -> list[float]:
  """Each network's fastest round (rows of `end_to_end_rounds`), in ms."""
  return [round(float(t), 4) for t in np.asarray(times).min(axis=1)]


def end_to_end_rounds(archs: Sequence[Architecture], resolution: int, num_classes: int,
                      threads: int = 1, warmup: int = DEFAULT_WARMUP,
                      repeats: int = DEFAULT_REPEATS,
                      rounds: int = DEFAULT_ROUNDS) -> np.ndarray:
  """Per-round medians in ms, shape (networks, rounds).

  Every round times each network (in a shuffled order) `repeats` times after `warmup` calls, so
  that all networks are timed under the same conditions.
  """
  from search_space.model import build_model
  _check_int("resolution", resolution, 1)
  _check_int("num_classes", num_classes, 1)
  _check_timing(threads, warmup, repeats)
  _check_int("rounds", rounds, 1)
  shape = (1, resolution, resolution, 3)
  interpreters = [_interpreter(to_tflite(build_model(a, shape[1:], num_classes), shape), shape,
                               threads) for a in archs]
  times = np.zeros((len(archs), rounds))
  order = list(range(len(archs)))
  rng = random.Random(0)  # a fixed order per round, so that a rerun times the same way
  for r in range(rounds):
    rng.shuffle(order)
    for i in order:
      times[i, r] = _time_invokes(interpreters[i], threads, warmup, repeats)
  return times


def _check_timing(threads: int, warmup: int, repeats: int) -> None:
  _check_int("threads", threads, 1)
  _check_int("warmup", warmup, 0)
  _check_int("repeats", repeats, 1)


def _key_model(key: LatencyKey):
  """A Keras 3 model of one entry and its batch-1 input shape."""
  # The stem and head below come from the builder, which rounds every channel count with
  # round_filters, so only those counts can be built exactly.
  for name in ("filters", "input_filters") if not isinstance(key, BlockKey) else ():
    value = getattr(key, name, None)
    if value is not None and round_filters(value, 1.0) != value:
      raise ValueError(f"{key.kind} {name}={value} is invalid; allowed: a channel count the builder "
                       f"makes (round_filters: a multiple of 8, e.g. {round_filters(value, 1.0)})")
  import keras

  from search_space.model import build_model, mbconv
  if isinstance(key, BlockKey):
    shape = (1, key.input_size, key.input_size, key.input_filters)
    block = ConcreteBlock(index=0, stage=0, kernel_size=key.kernel_size, stride=key.stride,
                          expand_ratio=key.expand_ratio, input_filters=key.input_filters,
                          output_filters=key.output_filters, se_ratio=key.se_ratio,
                          id_skip=key.has_skip, drop_rate=0.0)
    x = keras.Input(batch_shape=shape)
    return keras.Model(x, mbconv(x, block, key.activation, prefix="block_")), shape
  # The stem and head reuse the builder's own layers (taken from a one-block network), so they
  # are exactly what build_model makes; dropout is an identity at inference and is left out.
  if isinstance(key, StemKey):
    shape = (1, key.resolution, key.resolution, 3)
    names = ("stem_conv", "stem_bn", "stem_activation")
    arch = Architecture(blocks=(f"r1_k3_s11_e1_i{key.filters}_o8",), stem_filters=key.filters,
                        activation=key.activation)
    source = build_model(arch, (8, 8, 3), 1)
  else:
    shape = (1, key.input_size, key.input_size, key.input_filters)
    names = ("top_conv", "top_bn", "top_activation", "avg_pool", "predictions")
    arch = Architecture(blocks=(f"r1_k3_s11_e1_i8_o{key.input_filters}",), stem_filters=8,
                        head_filters=key.filters, activation=key.activation)
    source = build_model(arch, (8, 8, 3), key.num_classes)
  x = y = keras.Input(batch_shape=shape)
  for name in names:
    y = source.get_layer(name)(y)
  return keras.Model(x, y), shape


def to_tflite(model, shape: Sequence[int]) -> bytes:
  """Converts a Keras 3 model with a fixed float32 input `shape` to a deployable TFLite flatbuffer.

  The weights are frozen into constants first, as a SavedModel export (`analysis.export`) does.
  Converted with its variables live, the flatbuffer would read each weight as a resource variable
  on every call and fold BatchNormalization at run time, and XNNPACK could not pack the weights
  ahead: a graph several times slower than the deployed one, and unlike it.
  """
  import tensorflow as tf
  from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
  # A concrete function converts in memory, several times faster than a SavedModel round trip.
  @tf.function(input_signature=[tf.TensorSpec(tuple(shape), tf.float32)])
  def serve(x):
    return model(x, training=False)
  frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
  # The converter logs several absl INFO lines per model (a temporary SavedModel); a table has
  # hundreds of models, so they are held back while it runs.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(min(verbosity, logging.WARNING))
  try:
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen], model).convert()
  finally:
    logging.set_verbosity(verbosity)


def time_tflite(content: bytes, shape: Sequence[int], threads: int, warmup: int, repeats: int,
                rounds: int = 1) -> float:
  """Median time in ms of `repeats` single invocations, after `warmup` untimed ones; with several
  `rounds`, the fastest round's median.

  With one thread the interpreter runs on the calling thread, so that
  thread's CPU time is the latency without the time other processes take
  from it (which on a shared machine inflates the long invocations more than
  the short ones, and so biases a sum of short ones); with several threads
  only the wall time measures the latency. See `timing_clock`.
  """
  _check_int("rounds", rounds, 1)
  interpreter = _interpreter(content, shape, threads)
  return round(min(_time_invokes(interpreter, threads, warmup, repeats) for _ in range(rounds)), 4)


def _interpreter(content: bytes, shape: Sequence[int], threads: int):
  """A tf.lite.Interpreter of `content`, its tensors allocated and a fixed random input set."""
  import tensorflow as tf
  with warnings.catch_warnings():
    # TF warns that tf.lite.Interpreter moves to the separate ai_edge_litert package; it still works.
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads)
  interpreter.allocate_tensors()
  x = np.random.default_rng(0).standard_normal(tuple(shape)).astype(np.float32)
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  return interpreter


def _time_invokes(interpreter, threads: int, warmup: int, repeats: int) -> float:
  """The median ms of `repeats` timed calls after `warmup` untimed ones."""
  for _ in range(warmup):
    interpreter.invoke()
  clock = time.thread_time if timing_clock(threads) == "thread_cpu" else time.perf_counter
  times = []
  for _ in range(repeats):
    t0 = clock()
    interpreter.invoke()
    times.append(clock() - t0)
  return float(np.median(times)) * 1e3


def timing_clock(threads: int) -> str:
  """The clock `time_tflite` reads: "thread_cpu" for one thread, else "wall"."""
  return "thread_cpu" if threads == 1 else "wall"


# ----------------------------------------------------------------------------- the model
@dataclasses.dataclass(frozen=True)
class FillProgress:
  """How far filling a table is: entries measured of those to measure, and time spent.

  The first report comes before any measurement (`done` 0), with the counts.
  """

  done: int
  total: int      # entries to measure
  cached: int     # entries asked for that the table already had
  elapsed_s: float

  @property
  def eta_s(self) -> float:
    return self.elapsed_s / self.done * (self.total - self.done) if self.done else math.nan

  def __str__(self) -> str:
    if not self.done:
      then = f"a time estimate follows the first {min(5, self.total)}" if self.total else "all cached"
      return (f"{self.total + self.cached} latency entries: {self.cached} cached, {self.total} to "
              f"measure; {then}")
    return (f"measured {self.done}/{self.total} latency entries in {self.elapsed_s:.0f}s "
            f"({self.elapsed_s / self.done:.2f}s each); about {self.eta_s / 60:.1f} min left")


ProgressCallback = Callable[[FillProgress], None]


def _log_progress(p: FillProgress) -> None:
  logging.info("%s", p)


@dataclasses.dataclass(frozen=True)
class Timing:
  """How a model is timed: `warmup` untimed calls, then the median of `repeats` timed ones."""

  warmup: int = DEFAULT_WARMUP
  repeats: int = DEFAULT_REPEATS

  def __post_init__(self):
    _check_int("warmup", self.warmup, 0)
    _check_int("repeats", self.repeats, 1)


@dataclasses.dataclass(frozen=True)
class CalibrationPlan:
  """Which networks calibrate a table: `networks` drawn from `space` (the default space when
  None); 0 networks predicts the plain sum of the entries."""

  networks: int = DEFAULT_CALIBRATION_NETWORKS
  space: SearchSpace | None = None

  def __post_init__(self):
    _check_int("calibration_networks", self.networks, 0)


class LatencyModel:
  """Predicts a network's latency on this device from the cached lookup table.

  The search's cost function: `predict_ms(arch)` sums the table's entries at
  the model's resolution and classes and applies the table's calibration for
  them, measuring (and caching) entries or the calibration that are missing
  unless `measure_missing` is False.

  Args:
    cache_dir: the table folder (`DEFAULT_CACHE_DIR` when None).
    threads: tf.lite.Interpreter threads.
    resolution: the input resolution predicted for.
    num_classes: the classifier's outputs.
    measure_missing: measure what the table lacks (else raise `MissingEntriesError`).
    timing: warm-up and timed calls per model.
    plan: the networks timed end to end to fit the calibration (`CalibrationPlan`).

  Attributes:
    path: the table file for this device, TF version and threads.
    table: the entries, key -> ms.
    calibration: the calibration at this resolution and class count, or None.
    measured: how many entries this object has measured so far.
  """

  def __init__(self, cache_dir: str | None = None, threads: int = 1, resolution: int = 224,
               num_classes: int = 1000, measure_missing: bool = True,
               timing: Timing = Timing(), plan: CalibrationPlan = CalibrationPlan()):
    _check_int("threads", threads, 1)  # Timing checked its own fields
    self.resolution = _check_int("resolution", resolution, 1)
    self.num_classes = _check_int("num_classes", num_classes, 1)
    self.plan = plan
    self.threads, self.warmup, self.repeats = threads, timing.warmup, timing.repeats
    self.measure_missing = bool(measure_missing)
    self.device, self.tf_version = device_name(), tf_version()
    self.path = cache_path(cache_dir, threads, self.device, self.tf_version)
    self.table = load_table(self.path, self.device, self.tf_version, threads)
    cal = load_calibrations(self.path, self.device, self.tf_version, threads)
    self.calibration: Calibration | None = cal.get((self.resolution, self.num_classes))
    self.measured = 0

  def keys(self, arch: Architecture) -> list[LatencyKey]:
    return network_keys(arch, self.resolution, self.num_classes)

  def _method(self) -> dict[str, Any]:
    return {"batch": 1, "warmup": self.warmup, "repeats": self.repeats,
            "statistic": f"fastest of {DEFAULT_KEY_ROUNDS} medians",
            "clock": timing_clock(self.threads), "runtime": "tf.lite.Interpreter"}

  def fill(self, keys: Iterable[LatencyKey], on_progress: ProgressCallback | None = _log_progress,
           progress_every: int = 25) -> int:
    """Measures the keys the table lacks, saving after each; returns how many were measured.

    FillProgress is reported after the first few entries (for an early time
    estimate), then every `progress_every` entries and at the end.
    """
    _check_int("progress_every", progress_every, 1)
    keys = list(dict.fromkeys(keys))
    missing = distinct_missing(keys, self.table)
    if on_progress:
      on_progress(FillProgress(0, len(missing), len(keys) - len(missing), 0.0))
    # Shuffled (with a fixed seed) so that the time per entry so far predicts the rest: in
    # enumeration order the large early-stage blocks would all come first.
    random.Random(0).shuffle(missing)
    t0 = time.perf_counter()
    for i, key in enumerate(missing, 1):
      self.table[key] = measure_key(key, self.threads, self.warmup, self.repeats)
      self.measured += 1
      save_table(self.path, self.table, self.device, self.tf_version, self.threads, self._method())
      if on_progress and (i == min(5, len(missing)) or i % progress_every == 0 or i == len(missing)):
        on_progress(FillProgress(i, len(missing), len(keys) - len(missing), time.perf_counter() - t0))
    return len(missing)

  def sum_ms(self, arch: Architecture) -> float:
    """The plain sum of `arch`'s entries in ms (measuring missing ones when allowed)."""
    if self.measure_missing:
      self.fill(self.keys(arch), on_progress=None)
    return predict(arch, self.resolution, self.num_classes, self.table)

  def calibrate(self, archs: Sequence[Architecture] | None = None,
                measured_ms: Sequence[float] | None = None) -> Calibration:
    """Times `archs` end to end, fits and saves the calibration at this resolution and classes.

    Args:
      archs: the networks (3 or more fit all three terms); the plan's, drawn with
        `CALIBRATION_SEED`, when None.
      measured_ms: their end-to-end times, when measured already (`measure_end_to_end_many`).
    """
    if archs is None:
      from search_space import default_space
      space = self.plan.space or default_space()
      archs = calibration_architectures(space, self.plan.networks)
    logging.info("latency: calibrating at %dx%d, %d classes, on %d networks timed end to end",
                 self.resolution, self.resolution, self.num_classes, len(archs))
    sums = [self.sum_ms(a) for a in archs]
    measured = measured_ms if measured_ms is not None else measure_end_to_end_many(
        archs, self.resolution, self.num_classes, self.threads, self.warmup, self.repeats)
    params = [count_params(a, self.num_classes) for a in archs]
    self.calibration = fit_calibration(sums, params, measured, self.resolution, self.num_classes)
    save_table(self.path, self.table, self.device, self.tf_version, self.threads, self._method(),
               calibrations=[self.calibration])
    logging.info("latency: %s", self.calibration)
    return self.calibration

  def predict_ms(self, arch: Architecture) -> float:
    """The predicted latency of `arch` in ms (measuring missing entries when allowed).

    Raises:
      MissingEntriesError: entries or the calibration are missing and `measure_missing` is False.
    """
    total = self.sum_ms(arch)
    if not self.plan.networks:
      return total
    if self.calibration is None:
      if not self.measure_missing:
        raise MissingEntriesError.calibration(self.resolution, self.num_classes)
      self.calibrate()
    assert self.calibration is not None
    return self.calibration.apply(total, count_params(arch, self.num_classes))


@dataclasses.dataclass(frozen=True)
class TableBuild:
  """What `build_table` did."""

  path: str
  total: int      # distinct entries the space reaches
  cached: int     # of those, already in the table
  measured: int
  seconds: float
  calibration: Calibration | None = None


def build_table(space: SearchSpace, model: LatencyModel, progress_every: int = 25,
                on_progress: ProgressCallback | None = _log_progress,
                dry_run: bool = False) -> TableBuild:
  """Measures every entry `space` can reach at the model's resolution that its table lacks.

  `model` says where the table lives and how to time (cache folder, threads, resolution, classes,
  warm-up and repeats). A smaller space (e.g. `get_space("micro")`) or a lower resolution builds a
  cheap table; an interrupted build resumes where it stopped, since every entry is saved as soon
  as it is measured. Then, unless the table has one or `model.plan.networks` is 0, the
  calibration is fitted on networks of `space`. `dry_run` only counts.
  """
  keys = table_keys(space, model.resolution, model.num_classes)
  cached = len(keys) - len(distinct_missing(keys, model.table))
  t0 = time.perf_counter()
  measured = 0 if dry_run else model.fill(keys, on_progress, progress_every)
  if not dry_run and model.calibration is None and model.plan.networks:
    model.calibrate(calibration_architectures(space, model.plan.networks))
  return TableBuild(model.path, len(keys), cached, measured, time.perf_counter() - t0,
                    model.calibration)
