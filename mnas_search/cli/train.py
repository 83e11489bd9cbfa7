"""`launch.py train`: trains an architecture fully (or continues), then prints its test accuracy."""

from __future__ import annotations

import os
import sys

from absl import flags

from mnas_search.cli import common
from mnas_search.training.proxy import ProxyTask

_PROXY = ProxyTask()

# TrainConfig.task fields and the flags that set them (common.COMMAND_FIELD_FLAGS["train"] maps the
# fields back to these flags in errors).
TRAIN_FIELDS = {"dataset": "dataset", "data_dir": "data_dir", "resolution": "train_resolution",
                "epochs": "epochs", "batch_size": "train_batch_size", "learning_rate": "train_lr",
                "proxy_width": "train_width", "label_smoothing": "label_smoothing",
                "val_images": "train_val_images", "train_images": "train_images",
                "bn_momentum": "train_bn_momentum", "seed": "seed",
                "stem_stride": "train_stem_stride", "clip_norm": "train_clip_norm"}


def define_flags(fv: flags.FlagValues) -> None:
  common.define_out(fv)
  common.define_arch(fv)
  flags.DEFINE_string("dataset", _PROXY.dataset, "Dataset: fashion_mnist, cifar10, synthetic (or "
                      "synthetic:size=N,...), tfds:NAME or dir:PATH.", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "Where the dataset's files are (default: found "
                      "automatically).", flag_values=fv)
  common.define_seed(fv)
  flags.DEFINE_integer("epochs", 10, "Epochs over the training split.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("train_batch_size", 128, "Batch size.", lower_bound=1, flag_values=fv)
  flags.DEFINE_float("train_lr", 0.1, "Peak learning rate (SGD with momentum; linear warmup over "
                     "10% of the steps, then cosine decay to 0).", flag_values=fv)
  flags.DEFINE_integer("train_resolution", None, "Input resolution (default: the arch's own).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_float("train_width", 1.0, "Width multiplier applied to the architecture.",
                     flag_values=fv)
  flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy.",
                     flag_values=fv)
  flags.DEFINE_float("ema_decay", None, "Decay of the exponential moving average of the weights; "
                     "0 disables it (default: 1 - 10/total_steps, at most 0.9999).", flag_values=fv)
  flags.DEFINE_list("augment", ["auto"], "crop, flip, none, or auto (crop, plus flip except on "
                    "synthetic data).", flag_values=fv)
  flags.DEFINE_integer("train_val_images", _PROXY.val_images, "Images held out from the training "
                       "set for monitoring (with --seed, the search's validation split).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("train_images", None, "Training images (default: all but the validation "
                       "split).", lower_bound=1, flag_values=fv)
  flags.DEFINE_float("train_bn_momentum", 0.99, "BatchNormalization moving-average momentum.",
                     flag_values=fv)
  flags.DEFINE_enum("train_stem_stride", "2", ["1", "2"], "The stem's stride: 2 as in the "
                    "reference, 1 for small images (28-32 px).", flag_values=fv)
  flags.DEFINE_float("train_clip_norm", None, "Clip the gradients to this global norm (none by "
                     "default).", flag_values=fv)
  common.define_strategy(fv, tpu=False)
  common.define_json(fv)


def run(fv: flags.FlagValues) -> None:
  """Trains an architecture fully (or continues), then prints its test accuracy."""
  from mnas_search.training import full_train as train
  out = common.require(fv, "out", "--out=DIR is required: where model.keras, metrics.json, the "
                       "checkpoints and TensorBoard logs go (an unfinished training there is "
                       "continued)")
  arch = common.arch_from_flags(fv)
  values = {field: fv[flag].value for field, flag in TRAIN_FIELDS.items()}
  values["resolution"] = fv.train_resolution or arch.resolution
  values["stem_stride"] = int(values["stem_stride"])
  task = common.proxy_task(values)
  augment = [a.strip() for a in fv.augment or [] if a.strip()]
  if augment == ["auto"]:
    augment = None
  elif augment in ([], ["none"]):
    augment = ()
  config = train.TrainConfig(task=task, ema_decay=fv.ema_decay,
                             augment=None if augment is None else tuple(augment))
  print(f"training {arch.name} on {task.dataset} at {task.resolution}x{task.resolution}, width "
        f"x{task.proxy_width:g}, {task.epochs} epochs -> {out}", flush=True)
  r = train.train(arch, out, config, strategy=fv.strategy, verbose=1 if sys.stdout.isatty() else 2)
  if r.status == "failed":
    print(f"failed: {r.error}; the checkpoint of epoch {r.epochs_done} is kept, and the same command "
          "restarts from it")
    sys.exit(1)
  if not r.finished:
    print(f"stopped after epoch {r.epochs_done} of {task.epochs}; run the same command again to "
          "continue")
    sys.exit(1)
  m = r.metrics
  if fv.json:
    common.print_json({k: v for k, v in m.items() if k not in ("history", "arch", "trained_arch")})
    return
  if r.resumed_from >= task.epochs:
    print(f"already trained for {task.epochs} epochs; the stored results:")
  elif r.resumed_from:
    print(f"continued after epoch {r.resumed_from}")
  print(f"test accuracy    {m['test_accuracy']:.4f}  ({m['test_images']} test images)")
  print(f"val accuracy     {m['val_accuracy']:.4f}  ({m['val_split']})")
  print(f"epochs           {m['epochs']} ({m['steps']} steps, {m['train_images']} training images, "
        f"{m['train_seconds']:.0f}s)")
  print(f"params           {m['params']:,}")
  print(f"FLOPs (mult-add) {m['flops']:,} at {m['resolution']}x{m['resolution']}")
  print(f"files: {os.path.join(out, 'model.keras')}, metrics.json, tb/ "
        f"(tensorboard --logdir {os.path.join(out, 'tb')})")
