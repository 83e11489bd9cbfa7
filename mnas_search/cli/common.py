"""What the commands share: flag groups defined once, flag parsing, and errors that name the flag.

Each command module defines its own flags (`define_flags(fv)`) into a `flags.FlagValues`, so a
command knows only the flags it uses and refuses any other. Bad input (an unknown flag, a value
of the wrong type or out of range, a library `ValueError`) ends the command with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from typing import Any, NoReturn

from absl import flags

import search_space
from mnas_search.data import datasets
from mnas_search.execution.backends import BACKENDS
from mnas_search.training.proxy import ProxyTask
from nas_common import FieldError
from search_space import Architecture

FlagValues = flags.FlagValues
_PROXY = ProxyTask()  # the defaults of the --proxy_* flags are ProxyTask's own

# ----------------------------------------------------------------------------- fields -> flags
# The one table from a library field (the `field` of a ProxyTaskError or another error that names
# its field) to the flag that sets it. A command whose flag for a field differs says so in
# COMMAND_FIELD_FLAGS; a field whose flag the command does not define is shown as it is.
FIELD_FLAGS = {
    # ProxyTask (evaluate, search, grid, fidelity)
    "dataset": "dataset", "data_dir": "data_dir", "resolution": "proxy_resolution",
    "epochs": "proxy_epochs", "steps": "proxy_steps", "train_images": "proxy_train_images",
    "val_images": "proxy_val_images", "batch_size": "proxy_batch_size",
    "proxy_width": "proxy_width", "learning_rate": "proxy_lr", "optimizer": "proxy_optimizer",
    "timeout_s": "proxy_timeout_s", "grayscale_to_rgb": "proxy_grayscale_to_rgb", "seed": "seed",
    "stem_stride": "proxy_stem_stride", "clip_norm": "proxy_clip_norm",
    # SearchConfig and the backends
    "space": "search_space", "controller": "controller", "controller_hparams": "controller_hparams",
    "reward": "reward", "w": "w", "cost": "cost", "target_flops": "target_flops",
    "target_params": "target_params", "target_latency_ms": "target_latency_ms",
    "trials": "trials", "trials_per_update": "trials_per_update",
    "cost_resolution": "cost_resolution", "cost_num_classes": "cost_num_classes",
    "backend": "backend", "workers": "workers", "ray_address": "ray_address",
    "ray_allow_insecure": "ray_allow_insecure",
    "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial",
    "strategy": "strategy", "tpu": "tpu", "references": "references",
    "latency_threads": "latency_threads", "latency_cache_dir": "latency_cache_dir",
    "search_dir": "search_dir", "out": "out", "warm_start_from": "warm_start_from",
    "scheduler": "scheduler", "min_budget": "min_budget", "max_budget": "max_budget", "eta": "eta",
    # GridConfig
    "step": "grid_step", "grid_step": "grid_step", "alpha_range": "alpha_range",
    "beta_range": "beta_range", "gamma_range": "gamma_range", "tolerance": "grid_tolerance",
    "grid_tolerance": "grid_tolerance", "num_classes": "cost_num_classes",
    # family (scale), export, train, fidelity
    "family": "family", "phi": "phi", "alpha": "alpha", "beta": "beta", "gamma": "gamma",
    "top_k": "top_k", "formats": "formats", "weights": "weights", "ema_decay": "ema_decay",
    "augment": "augment", "label_smoothing": "label_smoothing", "bn_momentum": "train_bn_momentum",
    "sample": "sample", "coefficients": "coefficients", "family_dir": "family_dir",
    "width_coefficient": "width_coefficient", "depth_coefficient": "depth_coefficient",
    "oneshot_epochs": "oneshot_epochs", "oneshot_warmup_fraction": "oneshot_warmup_fraction",
    "oneshot_top_k": "oneshot_top_k", "paths_per_step": "oneshot_paths_per_step",
    "path_rule": "oneshot_path_rule", "private_weights": "oneshot_private_weights",
    "zero_init_residual": "oneshot_zero_init_residual",
    # fidelity --ground_truth (mnas_search.analysis.ground_truth)
    "ground_truth": "ground_truth", "proxy": "proxy", "scores": "scores",
}
COMMAND_FIELD_FLAGS = {
    "train": {"resolution": "train_resolution", "epochs": "epochs",
              "batch_size": "train_batch_size", "learning_rate": "train_lr",
              "proxy_width": "train_width", "val_images": "train_val_images",
              "train_images": "train_images", "stem_stride": "train_stem_stride",
              "clip_norm": "train_clip_norm"},
    "fidelity": {"epochs": "fidelity_epochs"},
    "scale": {"num_classes": "num_classes"},
    "describe": {"resolution": "resolution", "num_classes": "num_classes"},
    "latency": {"resolution": "latency_resolution", "num_classes": "num_classes",
                "threads": "latency_threads", "warmup": "latency_warmup",
                "repeats": "latency_repeats", "cache_dir": "latency_cache_dir",
                "measure_missing": "latency_measure_missing"},
    "export": {"resolution": "export_resolution", "num_classes": "export_num_classes",
               "channels": "export_channels"},
}


def flag_of(command: str, field: str, fv: FlagValues) -> str | None:
  """The flag of `command` that sets library field `field`, or None when it has none."""
  flag = COMMAND_FIELD_FLAGS.get(command, {}).get(field, FIELD_FLAGS.get(field))
  return flag if flag is not None and flag in fv else None


def error_line(e: Exception, command: str, fv: FlagValues) -> str:
  """The one line that reports `e`: a FieldError names the flag that sets its field.

  A FieldError with `where` concerns a field of a stored record (a key of a trials.jsonl line),
  not a setting, so it keeps its own message, which names the file.
  """
  if isinstance(e, FieldError) and e.where is None and isinstance(e.field, str):
    flag = flag_of(command, e.field, fv)
    if flag is not None:
      return e.describe(f"--{flag}")
  return str(e)


def fail(message: str, status: int = 2) -> NoReturn:
  """Bad input: one line on stderr, exit status 2 (or `status`)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def os_error_line(e: OSError) -> str:
  """The line for a file the system refused: the file, the errno's name and its text."""
  name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno is not None else "no errno"
  where = f"{e.filename!r}" if e.filename else "a file"
  return (f"{where}: {name} ({e.strerror or e}); free space or fix the permissions, then run the "
          "same command to resume")


# ----------------------------------------------------------------------------- parsing
def _allowed(flag: flags.Flag) -> str:
  """What `flag` accepts, in the words of the library's errors."""
  parser = flag.parser
  if isinstance(parser, flags.EnumParser):
    return ", ".join(parser.enum_values)
  if isinstance(parser, flags.BooleanParser):
    return "true or false"
  if isinstance(parser, (flags.IntegerParser, flags.FloatParser)):
    kind = "an integer" if isinstance(parser, flags.IntegerParser) else "a number"
    low, high = parser.lower_bound, parser.upper_bound
    if low is not None and high is not None:
      return f"{kind} in [{low}, {high}]"
    if low is not None:
      return f"{kind} >= {low}"
    return f"{kind} <= {high}" if high is not None else kind
  return flag.parser.syntactic_help or "a value"


def _given(argv: list[str], fv: FlagValues) -> list[tuple[str, str]]:
  """(flag, text) for each `--flag=text` or `--flag text` in argv that names a flag of fv."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    i += 1
    if not arg.startswith("-") or arg in ("-", "--"):
      continue
    name, eq, text = arg.lstrip("-").partition("=")
    if name not in fv:
      continue
    if not eq and not isinstance(fv[name].parser, flags.BooleanParser) and i < len(argv):
      text = argv[i]
      i += 1
    if eq or not isinstance(fv[name].parser, flags.BooleanParser):
      out.append((name, text))
  return out


def parse_flags(command: str, fv: FlagValues, argv: list[str]) -> list[str]:
  """Parses `argv` (argv[0] the program) into `fv`; bad flags end the command with exit status 2.

  Returns:
    argv[0] and the positional arguments (refused by `run`).
  """
  try:
    return fv(argv)
  except flags.UnrecognizedFlagError as e:
    taken = ", ".join(f"--{n}" for n in own_flags(fv))
    fail(f"--{e.flagname} is not taken by {command}; allowed: {taken}")
  except flags.IllegalFlagValueError as e:
    for name, text in _given(argv[1:], fv):
      try:
        fv[name].parser.parse(text)
      except (TypeError, ValueError, OverflowError):
        fail(f"--{name}={text} is invalid; allowed: {_allowed(fv[name])}")
    fail(str(e))
  except flags.Error as e:
    fail(str(e))


def own_flags(fv: FlagValues) -> list[str]:
  """The names of the flags that the command modules defined in fv (not absl's own, such as
  --verbosity), sorted."""
  return sorted(f.name for module, module_flags in fv.flags_by_module_dict().items()
                if module.startswith("mnas_search.cli") for f in module_flags)


def print_json(obj: Any) -> None:
  print(json.dumps(obj, indent=None, sort_keys=False))


def check_positive(fv: FlagValues, flag: str, allow_none: bool = True) -> None:
  value = fv[flag].value
  if value is None and allow_none:
    return
  if value is None or value <= 0:
    raise ValueError(f"--{flag}={value} is invalid; allowed: a number > 0")


def require(fv: FlagValues, flag: str, message: str) -> Any:
  """The value of --flag; raises ValueError(message) when it is not given."""
  if not fv[flag].value:
    raise ValueError(message)
  return fv[flag].value


# ----------------------------------------------------------------------------- shared flag groups
def define_json(fv: FlagValues) -> None:
  flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.", flag_values=fv)


def define_out(fv: FlagValues, help_text: str = "Output directory.") -> None:
  flags.DEFINE_string("out", None, help_text, flag_values=fv)


def define_search_dir(fv: FlagValues, help_text: str = "The search directory.") -> None:
  flags.DEFINE_string("search_dir", None, help_text, flag_values=fv)


def define_num_classes(fv: FlagValues) -> None:
  flags.DEFINE_integer("num_classes", 1000, "Classifier outputs used for params and FLOPs.",
                       lower_bound=1, flag_values=fv)


def define_arch(fv: FlagValues) -> None:
  """--arch or --blocks (with --activation and the coefficients): one architecture."""
  flags.DEFINE_string("arch", None, "Architecture: a name (efficientnet-b0 … b7, mnasnet-a1, "
                      "mobilenet-v2), the path of an architecture JSON, or a search directory "
                      "(its best).", flag_values=fv)
  flags.DEFINE_list("blocks", None, "Comma-separated TF reference block strings (instead of "
                    "--arch).", flag_values=fv)
  flags.DEFINE_enum("activation", "swish", list(search_space.ACTIVATIONS),
                    "Activation with --blocks.", flag_values=fv)
  flags.DEFINE_float("width_coefficient", 1.0, "Width coefficient with --blocks.", flag_values=fv)
  flags.DEFINE_float("depth_coefficient", 1.0, "Depth coefficient with --blocks.", flag_values=fv)


def define_baseline(fv: FlagValues) -> None:
  flags.DEFINE_string("baseline", None, "The architecture to scale: a name or a JSON path.",
                      flag_values=fv)


def define_proxy(fv: FlagValues) -> None:
  """--dataset, --data_dir, --proxy_* and --seed: how each child is trained and scored."""
  def define(kind, name, default, help_text, **bounds):
    # help by keyword: DEFINE_enum takes enum_values (given in bounds) before it.
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text, flag_values=fv, **bounds)
  define("string", "dataset", _PROXY.dataset, "Dataset: fashion_mnist, cifar10, synthetic (or "
         "synthetic:size=N,channels=N,classes=N,train=N,test=N), tfds:NAME or dir:PATH.")
  define("string", "data_dir", None, "Where the dataset's files are (fashion_mnist: a folder of "
         "its IDX .gz files; tfds: the TFDS data folder). Default: found automatically.")
  define("integer", "proxy_resolution", _PROXY.resolution, "Proxy: input resolution of the children.",
         lower_bound=1)
  define("integer", "proxy_epochs", _PROXY.epochs, "Proxy: training epochs per child.", lower_bound=1)
  define("integer", "proxy_steps", None, "Proxy: total training steps per child instead of epochs.",
         lower_bound=1)
  define("integer", "proxy_train_images", _PROXY.train_images, "Proxy: training images.", lower_bound=1)
  define("integer", "proxy_val_images", _PROXY.val_images,
         "Proxy: validation images, held out from the training set.", lower_bound=1)
  define("integer", "proxy_batch_size", _PROXY.batch_size, "Proxy: batch size.", lower_bound=1)
  define("float", "proxy_width", _PROXY.proxy_width,
         "Proxy: width multiplier of the children while they train (costs stay unscaled).")
  define("float", "proxy_lr", _PROXY.learning_rate, "Proxy: peak learning rate.")
  define("string", "proxy_optimizer", _PROXY.optimizer, "Proxy: sgd (momentum) or rmsprop.")
  define("float", "proxy_timeout_s", None, "Proxy: wall-clock limit per child in seconds.")
  define("bool", "proxy_grayscale_to_rgb", _PROXY.grayscale_to_rgb,
         "Proxy: feed 1-channel datasets as 3 channels.")
  define("enum", "proxy_stem_stride", str(_PROXY.stem_stride), "Proxy: the stem's stride, 2 as in "
         "the reference or 1 for small images (the architecture and its costs are unchanged).",
         enum_values=["1", "2"])
  define("float", "proxy_clip_norm", _PROXY.clip_norm,
         "Proxy: clip the gradients to this global norm (none by default).")
  define_seed(fv)


# The ProxyTask fields that define_proxy's flags set.
PROXY_FIELDS = ("dataset", "data_dir", "resolution", "epochs", "steps", "train_images",
                "val_images", "batch_size", "proxy_width", "learning_rate", "optimizer",
                "timeout_s", "grayscale_to_rgb", "seed", "stem_stride", "clip_norm")


def define_seed(fv: FlagValues) -> None:
  flags.DEFINE_integer("seed", 0, "Seed of the data split, the initialization and the shuffling.",
                       lower_bound=0, flag_values=fv)


def define_cost(fv: FlagValues, resolution: bool = True) -> None:
  """--cost_resolution (unless the command scales it), --cost_num_classes: where deploy FLOPs and
  params are counted."""
  if resolution:
    flags.DEFINE_integer("cost_resolution", 224, "Resolution at which deploy FLOPs are counted.",
                         lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("cost_num_classes", 1000, "Classifier outputs for deploy FLOPs and params.",
                       lower_bound=1, flag_values=fv)


def define_strategy(fv: FlagValues, tpu: bool = True) -> None:
  """--strategy (and --tpu): the tf.distribute strategy of the training."""
  flags.DEFINE_string("strategy", "auto", "tf.distribute strategy: auto, cpu, mirrored or tpu.",
                      flag_values=fv)
  if tpu:
    flags.DEFINE_string("tpu", None, "TPU name, grpc:// address or 'local' (default: $TPU_NAME).",
                        flag_values=fv)


def define_deterministic(fv: FlagValues) -> None:
  flags.DEFINE_bool("deterministic", False, "Enable TF op determinism (bit-identical reruns).",
                    flag_values=fv)


def define_backend(fv: FlagValues) -> None:
  """--backend, --workers, --ray_address, --*_per_trial: where the children train."""
  flags.DEFINE_enum("backend", "auto", ["auto", *BACKENDS],
                    "Where children train. auto packs this machine: one 1-thread process worker per "
                    "core on a CPU, inline with a GPU or TPU; or inline, process or ray.",
                    flag_values=fv)
  flags.DEFINE_string("workers", "auto", "Concurrent children: auto (process: one per core; ray: 2) "
                      "or an integer >= 1.", flag_values=fv)
  flags.DEFINE_string("ray_address", None, "Join the Ray cluster whose head is at HOST:PORT; it must "
                      "require a token (RAY_AUTH_MODE=token, with the token in RAY_AUTH_TOKEN, "
                      "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). Default: start a local Ray, on "
                      "127.0.0.1 only.", flag_values=fv)
  flags.DEFINE_bool("ray_allow_insecure", False, "Join a --ray_address cluster that has no "
                    "authentication: anyone who can reach its ports can run code on it.",
                    flag_values=fv)
  flags.DEFINE_float("cpus_per_trial", 1.0, "Ray CPUs per trial.", flag_values=fv)
  flags.DEFINE_float("gpus_per_trial", 0.0, "Ray GPUs per trial.", flag_values=fv)


def define_progress(fv: FlagValues) -> None:
  flags.DEFINE_bool("progress", True, "Draw a progress bar on stderr.", flag_values=fv)


# ----------------------------------------------------------------------------- flag values
def arch_from_flags(fv: FlagValues) -> Architecture:
  """The architecture named by --arch or given by --blocks."""
  if fv.blocks and fv.arch:
    raise ValueError(f"--arch={fv.arch} and --blocks={','.join(fv.blocks)} were given together; "
                     "allowed: one of them")
  if fv.blocks:
    for flag in ("width_coefficient", "depth_coefficient"):
      if not (math.isfinite(fv[flag].value) and fv[flag].value > 0):
        raise FieldError(flag, fv[flag].value, "a finite number > 0")
    try:
      return Architecture(blocks=search_space.parse_blocks(fv.blocks), name="custom",
                          activation=fv.activation, width_coefficient=fv.width_coefficient,
                          depth_coefficient=fv.depth_coefficient)
    except ValueError as e:  # search_space names a block or a field of its own, not the flag
      raise ValueError(f"--blocks={','.join(fv.blocks)}: {e}") from None
  if not fv.arch:
    raise ValueError("--arch (a name or a JSON path) or --blocks is required; names: "
                     + ", ".join(sorted(search_space.NAMED)))
  return arch_flag(fv, "arch")


def arch_flag(fv: FlagValues, flag: str) -> Architecture:
  """Resolves --arch or --baseline: a name, an architecture JSON, or a search directory (its best)."""
  if not fv[flag].value:
    raise ValueError(f"--{flag}=NAME|PATH.json|SEARCH_DIR is required; names: "
                     + ", ".join(sorted(search_space.NAMED)))
  try:
    return resolve_arch(fv[flag].value)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"--{flag}={fv[flag].value}: {e}") from None


def proxy_values(fv: FlagValues, only_present: bool = False) -> dict[str, Any]:
  """ProxyTask field -> value of its flag (only the flags given on the command line if asked)."""
  values = {field: fv[FIELD_FLAGS[field]].value for field in PROXY_FIELDS
            if not only_present or fv[FIELD_FLAGS[field]].present}
  if "stem_stride" in values:  # an enum flag: its values are strings
    values["stem_stride"] = int(values["stem_stride"])
  return values


def proxy_task(values: dict[str, Any]) -> ProxyTask:
  """ProxyTask(**values), its dataset name checked first: the datasets module's error says what is
  wrong with the name, where ProxyTask's lists only the names allowed."""
  datasets.parse_dataset(values.get("dataset", _PROXY.dataset))
  return ProxyTask(**values)


def proxy_task_from_flags(fv: FlagValues) -> ProxyTask:
  """The ProxyTask that the --dataset, --data_dir, --proxy_* and --seed flags describe."""
  return proxy_task(proxy_values(fv))


def proxy_task_for_dir(fv: FlagValues, directory: str | None) -> ProxyTask:
  """The proxy task of a run in `directory`: on a resume, the stored task with only the --proxy_*
  flags given on the command line changing it, so that a run started under older defaults resumes
  with its own (the resume check still refuses a change it does not allow); else the flags'."""
  from mnas_search.runs import rundir  # a corrupted params.json is named (rundir.corrupted)
  stored = rundir.read_params(directory).get("task") if directory else None
  if not isinstance(stored, dict):
    return proxy_task_from_flags(fv)
  return proxy_task({**stored, **proxy_values(fv, only_present=True)})


def workers_from_flags(fv: FlagValues) -> int:
  """--workers as an int; 0 for auto (the backends choose)."""
  if fv.workers == "auto":
    return 0
  try:
    workers = int(fv.workers)
  except ValueError:
    workers = None
  if workers is None or workers < 1:
    raise FieldError("workers", fv.workers, "auto or an integer >= 1")
  return workers


def backend_options(fv: FlagValues) -> dict[str, Any]:
  """The backend group's values as make_backend's arguments (SearchConfig's fields too)."""
  return dict(backend=fv.backend, workers=workers_from_flags(fv), ray_address=fv.ray_address,
              ray_allow_insecure=fv.ray_allow_insecure, cpus_per_trial=fv.cpus_per_trial,
              gpus_per_trial=fv.gpus_per_trial)


def check_ray_cluster(fv: FlagValues) -> None:
  """--backend=ray --ray_address: the cluster must require a token and accept this process's,
  unless --ray_allow_insecure; checked before the command writes anything (the backend checks
  again when it joins)."""
  if fv.backend != "ray" or not fv.ray_address or fv.ray_allow_insecure:
    return
  from mnas_search.execution import raycluster
  if not raycluster.requires_token(fv.ray_address):
    raise ValueError(f"--ray_address={fv.ray_address} is a Ray cluster without authentication: "
                     "anyone who can reach its ports can run code on it; allowed: a cluster "
                     "started with RAY_AUTH_MODE=token (see scripts/ray_two_nodes.sh), or "
                     "--ray_allow_insecure to join it anyway")
  raycluster.check_token(fv.ray_address)


def backend_from_flags(fv: FlagValues, task: ProxyTask):
  """The backend that the backend group describes, for children of `task`."""
  from mnas_search.execution import backends
  check_ray_cluster(fv)
  ray = backends.RayOptions(fv.ray_address, fv.ray_allow_insecure, fv.cpus_per_trial,
                            fv.gpus_per_trial)
  return backends.make_backend(fv.backend, workers_from_flags(fv), ray,
                               hard_timeout_s=backends.hard_timeout_for(task.timeout_s),
                               strategy=fv.strategy)


def resolve_arch(spec: str):
  """An architecture from a name, an architecture JSON, or a search directory (its best trial).

  Args:
    spec: `efficientnet-b0` (any `search_space.NAMED`), `path/arch.json`, or a search
      directory holding best.json.

  Returns:
    The `search_space.Architecture`.
  """
  from mnas_search.runs import store
  if spec and os.path.isdir(spec):
    best = store.SearchStore(spec).read_best()
    if best is None:
      raise FileNotFoundError(f"{spec!r} is a folder without best.json; allowed: a search directory "
                              "with at least one finished trial, an architecture JSON or a name")
    return search_space.Architecture.from_dict(best["arch"]).replace(
        name=f"{os.path.basename(os.path.normpath(spec))}-best")
  return search_space.resolve_arch(spec)
