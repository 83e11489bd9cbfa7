"""The proxy task: how each sampled child is trained briefly and scored during a search.

MnasNet trains each child for 5 epochs on ImageNet; here the default is scaled to a 2-core CPU:
Fashion-MNIST padded to 32x32, 10,000 training images, 4 epochs, SGD with momentum and a cosine
schedule after a short warmup, BN moving averages that settle within the run. A B0-shaped child
at width 0.25 trains in about 30 s there (plus about 10 s of graph tracing) and reaches about
78% validation accuracy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mnas_search.data import datasets
from nas_common import FieldError, check_int

OPTIMIZERS = ("sgd", "rmsprop")
LR_SCHEDULES = ("cosine", "constant")
STEM_STRIDES = (1, 2)
# Fields added after the first release, with the defaults that reproduce it.
# ProxyTask's size defaults before the ground-truth measurements chose today's: benchmarks whose
# committed records were made under them pin them, so that new runs compare with those records.
EARLIER_DEFAULTS = {"train_images": 10000, "epochs": 4, "batch_size": 128}
LATER_FIELDS = {"stem_stride": 2, "clip_norm": None}


class ProxyTaskError(FieldError):
  """A ProxyTask field is invalid; `field`, `value` and `allowed` say which and why."""

  def __init__(self, field: str, value: Any, allowed: str, message: str | None = None):
    super().__init__(field, value, allowed,
                     message=message or f"ProxyTask.{field}={value!r} is invalid; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class ProxyTask:
  """How a child is trained and scored on the proxy.

  The defaults are the candidate proxy that ranked the ground-truth set G best among those costing
  at most 60 s a child on a 2-core CPU (`benchmarks/ground_truth.py`, "8k-e2-w0.25-s2-noclip");
  the README's proxy table says how well (not well) any of them ranks.

  Attributes:
    dataset: a dataset name (see `mnas_search.data.datasets`).
    resolution: square input size of the child during the proxy.
    train_images: images trained on; None for the whole training set minus validation.
    val_images: images held out from the TRAINING set to score the child.
    epochs: passes over the training images (ignored when `steps` is given).
    steps: total optimizer steps instead of epochs (the data repeats as needed); None for epochs.
    batch_size: images per step.
    optimizer: "sgd" (with momentum) or "rmsprop" (decay 0.9, epsilon 1e-3, as MnasNet).
    learning_rate: the peak learning rate.
    momentum: momentum of either optimizer.
    lr_schedule: "cosine" (decay to 0 over the run) or "constant".
    warmup_fraction: fraction of the steps spent warming up linearly from 0 to the peak.
    weight_decay: decoupled weight decay (0 disables it).
    label_smoothing: label smoothing of the cross-entropy (0 disables it).
    bn_momentum: BatchNormalization moving-average momentum during the proxy; None keeps the
      builder's 0.99, whose moving statistics need thousands of steps to settle, far more than
      a proxy runs (validation accuracy then sits near chance).
    proxy_width: width multiplier applied to each child during the proxy only
      (`search_space.scale(arch, width=proxy_width)`); deploy costs stay unscaled.
    grayscale_to_rgb: feed 1-channel datasets as 3 channels (else the stem sees 1 channel).
    stem_stride: the stem's stride during the proxy: 2 as in the reference, or 1, the
      small-image geometry (at 32 px the last stages then see 2x2 maps instead of 1x1). The
      architecture and its deploy costs are unchanged; only the trained child differs.
    clip_norm: clip the gradients to this global norm; None for no clipping.
    seed: fixes the train/validation split, and by default the init and shuffle seeds.
    timeout_s: per-child wall-clock limit in seconds, checked between steps; None for none.
    data_dir: where the dataset's files are (see `datasets.load_arrays`); None to find them.
  """

  dataset: str = "fashion_mnist"
  resolution: int = 32
  train_images: int | None = 8000
  val_images: int = 2000
  epochs: int = 2
  steps: int | None = None
  batch_size: int = 64
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.9
  lr_schedule: str = "cosine"
  warmup_fraction: float = 0.1
  weight_decay: float = 0.0
  label_smoothing: float = 0.0
  bn_momentum: float | None = 0.9
  proxy_width: float = 0.25
  grayscale_to_rgb: bool = False
  stem_stride: int = 2
  clip_norm: float | None = None
  seed: int = 0
  timeout_s: float | None = None
  data_dir: str | None = None

  def __post_init__(self):
    try:
      datasets.parse_dataset(self.dataset)
    except ValueError as e:
      raise ProxyTaskError("dataset", self.dataset, ", ".join(datasets.DATASET_NAMES),
                           message=f"ProxyTask.{e}") from None
    _check_int("resolution", self.resolution, 1)
    _check_int("train_images", self.train_images, 1, allow_none=True)
    _check_int("val_images", self.val_images, 1)
    _check_int("epochs", self.epochs, 1)
    _check_int("steps", self.steps, 1, allow_none=True)
    _check_int("batch_size", self.batch_size, 1)
    _check_int("seed", self.seed, 0)
    if self.train_images is not None and self.batch_size > self.train_images:
      raise ProxyTaskError("batch_size", self.batch_size,
                           f"an integer in [1, train_images={self.train_images}]")
    if self.optimizer not in OPTIMIZERS:
      raise ProxyTaskError("optimizer", self.optimizer, " or ".join(OPTIMIZERS))
    if self.lr_schedule not in LR_SCHEDULES:
      raise ProxyTaskError("lr_schedule", self.lr_schedule, " or ".join(LR_SCHEDULES))
    _check_float("learning_rate", self.learning_rate, "a finite number > 0", lambda v: v > 0)
    _check_float("proxy_width", self.proxy_width, "a finite number > 0", lambda v: v > 0)
    _check_float("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
    _check_float("warmup_fraction", self.warmup_fraction, "a number in [0, 1)", lambda v: 0 <= v < 1)
    _check_float("weight_decay", self.weight_decay, "a finite number >= 0", lambda v: v >= 0)
    _check_float("label_smoothing", self.label_smoothing, "a number in [0, 1)", lambda v: 0 <= v < 1)
    if self.bn_momentum is not None:
      _check_float("bn_momentum", self.bn_momentum, "None or a number in [0, 1)",
                   lambda v: 0 <= v < 1)
    if not isinstance(self.stem_stride, int) or isinstance(self.stem_stride, bool) \
        or self.stem_stride not in STEM_STRIDES:
      raise ProxyTaskError("stem_stride", self.stem_stride, "1 or 2")
    if self.clip_norm is not None:
      _check_float("clip_norm", self.clip_norm, "None or a finite number > 0", lambda v: v > 0)
    if self.timeout_s is not None:
      _check_float("timeout_s", self.timeout_s, "None or a finite number > 0", lambda v: v > 0)
    if not isinstance(self.grayscale_to_rgb, bool):
      raise ProxyTaskError("grayscale_to_rgb", self.grayscale_to_rgb, "True or False")
    if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir):
      raise ProxyTaskError("data_dir", self.data_dir, "None or a folder path")

  def replace(self, **changes: Any) -> "ProxyTask":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able dict of every field; the fields added since the first release only where they
    differ from their default, so that a task of that release writes the same params.json."""
    d = dataclasses.asdict(self)
    for field, default in LATER_FIELDS.items():
      if d[field] == default:
        del d[field]
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ProxyTask":
    """The task of a `to_dict()` dict; missing keys take their defaults, unknown keys are refused."""
    if not isinstance(d, dict):
      raise ValueError(f"a ProxyTask dict must be a JSON object, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
      raise ValueError(f"ProxyTask dict has unknown key(s) {unknown}; allowed: {names}")
    return cls(**d)


def _check_int(field: str, value: Any, minimum: int, allow_none: bool = False) -> None:
  check_int(field, value, minimum, allow_none=allow_none, error=ProxyTaskError)


def _check_float(field: str, value: Any, allowed: str, ok) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
      or not ok(value):
    raise ProxyTaskError(field, value, allowed)
