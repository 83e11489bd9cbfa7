"""The command line: `python launch.py COMMAND --flag=value ...`.

Commands: describe, evaluate, search, export, scale, grid, train, report.
This file only parses and validates flags and prints results; the logic lives
in the packages, where a library user can call it directly.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf-agents (the PPO controller) needs legacy Keras as tf.keras; this must precede any TF import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app, flags, logging  # noqa: E402

import search_space  # noqa: E402
from search_space import Architecture  # noqa: E402

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- shared flags
flags.DEFINE_string("arch", None, "Architecture: a name (efficientnet-b0 … b7, mnasnet-a1, "
                    "mobilenet-v2), the path of an architecture JSON, or a search directory (its best).")
flags.DEFINE_list("blocks", None, "Comma-separated TF reference block strings (instead of --arch).")
flags.DEFINE_enum("activation", "swish", list(search_space.ACTIVATIONS), "Activation with --blocks.")
flags.DEFINE_float("width_coefficient", 1.0, "Width coefficient with --blocks.")
flags.DEFINE_float("depth_coefficient", 1.0, "Depth coefficient with --blocks.")
flags.DEFINE_integer("resolution", None, "Input resolution (the architecture's own by default).")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs used for params and FLOPs.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")


def arch_from_flags() -> Architecture:
  """The architecture named by --arch or given by --blocks."""
  if FLAGS.blocks and FLAGS.arch:
    raise ValueError("give either --arch or --blocks, not both")
  if FLAGS.blocks:
    return Architecture(blocks=search_space.parse_blocks(FLAGS.blocks), name="custom",
                        activation=FLAGS.activation, width_coefficient=FLAGS.width_coefficient,
                        depth_coefficient=FLAGS.depth_coefficient)
  if not FLAGS.arch:
    raise ValueError("--arch (a name or a JSON path) or --blocks is required; names: "
                         + ", ".join(sorted(search_space.NAMED)))
  return arch_flag("arch")


def arch_flag(flag: str) -> Architecture:
  """Resolves --arch or --baseline: a name, an architecture JSON, or a search directory (its best)."""
  from mnas_search.store import resolve_arch
  if not FLAGS[flag].value:
    raise ValueError(f"--{flag}=NAME|PATH.json|SEARCH_DIR is required; names: "
                     + ", ".join(sorted(search_space.NAMED)))
  try:
    return resolve_arch(FLAGS[flag].value)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"--{flag}={FLAGS[flag].value}: {e}") from None


def check_positive(flag: str, value, allow_none: bool = True) -> None:
  if value is None and allow_none:
    return
  if value is None or value <= 0:
    raise ValueError(f"--{flag}={value} is invalid; allowed: a number > 0")


def print_json(obj) -> None:
  print(json.dumps(obj, indent=None, sort_keys=False))


# ----------------------------------------------------------------------------- proxy/dataset flags
# How each child is trained and scored; shared by evaluate, search and grid. The defaults are
# ProxyTask's own (mnas_search.proxy imports no TF).
from mnas_search.proxy import ProxyTask, ProxyTaskError  # noqa: E402

_PROXY = ProxyTask()
flags.DEFINE_string("dataset", _PROXY.dataset, "Dataset: fashion_mnist, cifar10, synthetic (or "
                    "synthetic:size=N,channels=N,classes=N,train=N,test=N), tfds:NAME or dir:PATH.")
flags.DEFINE_string("data_dir", None, "Where the dataset's files are (fashion_mnist: a folder of "
                    "its IDX .gz files; tfds: the TFDS data folder). Default: found automatically.")
flags.DEFINE_integer("proxy_resolution", _PROXY.resolution, "Proxy: input resolution of the children.")
flags.DEFINE_integer("proxy_epochs", _PROXY.epochs, "Proxy: training epochs per child.")
flags.DEFINE_integer("proxy_steps", None, "Proxy: total training steps per child instead of epochs.")
flags.DEFINE_integer("proxy_train_images", _PROXY.train_images, "Proxy: training images.")
flags.DEFINE_integer("proxy_val_images", _PROXY.val_images,
                     "Proxy: validation images, held out from the training set.")
flags.DEFINE_integer("proxy_batch_size", _PROXY.batch_size, "Proxy: batch size.")
flags.DEFINE_float("proxy_width", _PROXY.proxy_width,
                   "Proxy: width multiplier of the children while they train (costs stay unscaled).")
flags.DEFINE_float("proxy_lr", _PROXY.learning_rate, "Proxy: peak learning rate.")
flags.DEFINE_string("proxy_optimizer", _PROXY.optimizer, "Proxy: sgd (momentum) or rmsprop.")
flags.DEFINE_float("proxy_timeout_s", None, "Proxy: wall-clock limit per child in seconds.")
flags.DEFINE_bool("proxy_grayscale_to_rgb", _PROXY.grayscale_to_rgb,
                  "Proxy: feed 1-channel datasets as 3 channels.")
flags.DEFINE_integer("cost_resolution", 224, "Resolution at which deploy FLOPs are counted.")
flags.DEFINE_integer("cost_num_classes", 1000, "Classifier outputs for deploy FLOPs and params.")
flags.DEFINE_string("strategy", "auto", "tf.distribute strategy: auto, cpu, mirrored or tpu.")
flags.DEFINE_string("tpu", None, "TPU name, grpc:// address or 'local' (default: $TPU_NAME).")
flags.DEFINE_integer("seed", 0, "Seed of the data split, the initialization and the shuffling.")
flags.DEFINE_bool("deterministic", False, "Enable TF op determinism (bit-identical reruns).")

# ProxyTask fields and the flags that set them, so that errors name the flag.
PROXY_FLAGS = {"dataset": "dataset", "data_dir": "data_dir", "resolution": "proxy_resolution",
               "epochs": "proxy_epochs", "steps": "proxy_steps",
               "train_images": "proxy_train_images", "val_images": "proxy_val_images",
               "batch_size": "proxy_batch_size", "proxy_width": "proxy_width",
               "learning_rate": "proxy_lr", "optimizer": "proxy_optimizer",
               "timeout_s": "proxy_timeout_s", "grayscale_to_rgb": "proxy_grayscale_to_rgb",
               "seed": "seed"}


def proxy_task_from_flags() -> ProxyTask:
  """The ProxyTask that the --dataset, --data_dir, --proxy_* and --seed flags describe."""
  kwargs = {field: getattr(FLAGS, flag) for field, flag in PROXY_FLAGS.items()}
  try:
    return ProxyTask(**kwargs)
  except ProxyTaskError as e:
    # "ProxyTask.resolution=0 is invalid; ..." -> "--proxy_resolution=0 is invalid; ..."
    raise ValueError(f"--{PROXY_FLAGS[e.field]}" + str(e)[len(f"ProxyTask.{e.field}"):]) from None


# ----------------------------------------------------------------------------- describe
def describe_dict(arch: Architecture, resolution: int, num_classes: int) -> dict:
  return {"name": arch.name, "blocks": arch.block_strings,
          "width_coefficient": arch.width_coefficient, "depth_coefficient": arch.depth_coefficient,
          "resolution": resolution,
          "params": search_space.count_params(arch, num_classes),
          "trainable_params": search_space.count_trainable_params(arch, num_classes),
          "flops": search_space.count_flops(arch, resolution, num_classes)}


def cmd_describe(argv) -> None:
  """Prints an architecture's blocks, parameters and multiply-adds."""
  del argv
  arch = arch_from_flags()
  check_positive("resolution", FLAGS.resolution)
  check_positive("num_classes", FLAGS.num_classes, allow_none=False)
  res = FLAGS.resolution or arch.resolution
  d = describe_dict(arch, res, FLAGS.num_classes)
  if FLAGS.json:
    print_json(d)
    return
  print(f"{d['name']}  (width {d['width_coefficient']:g}, depth {d['depth_coefficient']:g}, "
        f"resolution {res}, activation {arch.activation})")
  print(f"{'stage':>5}  {'block':<34} {'repeats':>7}")
  for i, b in enumerate(arch.blocks):
    print(f"{i + 1:>5}  {b.to_string():<34} "
          f"{search_space.round_repeats(b.repeats, arch.depth_coefficient):>7}")
  print(f"params           {d['params']:>14,}")
  print(f"trainable params {d['trainable_params']:>14,}")
  print(f"FLOPs (mult-add) {d['flops']:>14,}  ({d['flops'] / 1e9:.3f}B at {res}x{res}, "
        f"{FLAGS.num_classes} classes)")


# ----------------------------------------------------------------------------- evaluate
def cmd_evaluate(argv) -> None:
  """Trains one architecture on the proxy task; prints its accuracy, deploy cost and speed.

  Exits with status 1 when the child failed (an exception or a NaN/Inf loss).
  """
  del argv
  arch = arch_from_flags()
  task = proxy_task_from_flags()
  check_positive("cost_resolution", FLAGS.cost_resolution, allow_none=False)
  check_positive("cost_num_classes", FLAGS.cost_num_classes, allow_none=False)
  flops = search_space.count_flops(arch, FLAGS.cost_resolution, FLAGS.cost_num_classes)
  params = search_space.count_params(arch, FLAGS.cost_num_classes)
  from mnas_search import strategy as strategy_lib
  from mnas_search import trainer
  strategy = strategy_lib.make_strategy(FLAGS.strategy, FLAGS.tpu)
  r = trainer.evaluate(arch, task, strategy=strategy, deterministic=FLAGS.deterministic)
  out = {"name": arch.name, "status": r.status, "accuracy": r.accuracy, "flops": flops,
         "params": params, "train_seconds": r.train_seconds, "images_per_sec": r.images_per_sec,
         "proxy_flops": r.proxy_flops, "proxy_params": r.proxy_params, "steps": r.steps,
         "epochs_completed": r.epochs_completed, "loss": r.loss, "error": r.error,
         "dataset": task.dataset, "cost_resolution": FLAGS.cost_resolution}
  if FLAGS.json:
    print_json(out)
  else:
    print(f"{arch.name} on {task.dataset} (proxy: {task.resolution}x{task.resolution}, width "
          f"{task.proxy_width:g}, {task.train_images} images x {task.epochs} epochs)")
    print(f"status           {r.status}" + (f"  ({r.error})" if r.error else ""))
    print(f"val accuracy     {r.accuracy:.4f}")
    print(f"FLOPs (mult-add) {flops:>14,}  ({flops / 1e9:.3f}B at {FLAGS.cost_resolution}x"
          f"{FLAGS.cost_resolution}, {FLAGS.cost_num_classes} classes)")
    print(f"params           {params:>14,}")
    print(f"proxy child      {r.proxy_flops:,} mult-adds, {r.proxy_params:,} params")
    print(f"training         {r.train_seconds:.1f}s, {r.steps} steps, "
          f"{r.images_per_sec:,.0f} img/s after the first step")
  if r.status == "failed":
    sys.exit(1)


# ----------------------------------------------------------------------------- export
# --search_dir, --out and --baseline are shared with other commands; allow_override lets whichever
# section defines them too do so without a DuplicateFlagError.
flags.DEFINE_string("search_dir", None, "The search directory.", allow_override=True)
flags.DEFINE_string("out", None, "Output directory.", allow_override=True)
flags.DEFINE_integer("top_k", 1, "export: how many distinct architectures, best reward first.")
flags.DEFINE_bool("pareto", False, "export: the whole Pareto front instead of the top k.")
flags.DEFINE_list("formats", ["json", "keras", "savedmodel", "tflite"],
                  "export: any of json, keras, savedmodel, tflite.")
flags.DEFINE_string("weights", None, "export: a trained .keras model of the same architecture.")
flags.DEFINE_integer("export_resolution", None,
                     "export: input resolution (default: the weights', else the arch's own).")
flags.DEFINE_integer("export_num_classes", None, "export: classifier outputs (default: the "
                     "weights', else the search's params.json num_classes, else 1000).")
flags.DEFINE_integer("export_channels", None, "export: input channels (default: the weights', else 3).")


def cmd_export(argv) -> None:
  """Exports the top-k (or Pareto) trials of a search, or one architecture, to model files."""
  del argv
  from mnas_search import export
  if not FLAGS.out:
    raise ValueError("--out=DIR is required: where the exported models go")
  check_positive("top_k", FLAGS.top_k, allow_none=False)
  check_positive("export_resolution", FLAGS.export_resolution)
  check_positive("export_num_classes", FLAGS.export_num_classes)
  check_positive("export_channels", FLAGS.export_channels)
  formats = export.parse_formats(FLAGS.formats)
  options = dict(formats=formats, resolution=FLAGS.export_resolution,
                 channels=FLAGS.export_channels, weights=FLAGS.weights)
  if FLAGS.search_dir:
    if FLAGS.arch or FLAGS.blocks:
      raise ValueError("give either --search_dir or --arch/--blocks, not both")
    entries = export.export_search(FLAGS.search_dir, FLAGS.out, top_k=FLAGS.top_k,
                                   use_pareto=FLAGS.pareto, num_classes=FLAGS.export_num_classes,
                                   **options)
  else:
    if FLAGS.pareto or FLAGS["top_k"].present:
      raise ValueError("--top_k and --pareto select trials of a search; give --search_dir=DIR")
    entries = export.export_architecture(
        arch_from_flags(), FLAGS.out, num_classes=FLAGS.export_num_classes,
        source=FLAGS.arch or "--blocks", **options)
  print(export.format_index(entries))
  print(f"wrote {os.path.join(FLAGS.out, 'index.json')}")


# ----------------------------------------------------------------------------- scale
flags.DEFINE_string("baseline", None, "The architecture to scale: a name or a JSON path.",
                    allow_override=True)
flags.DEFINE_string("family", "paper", "scale: paper (the B0–B7 table) or compound (α^φ, β^φ, γ^φ).")
flags.DEFINE_float("alpha", 1.2, "scale: depth coefficient α of the compound rule.",
                   allow_override=True)
flags.DEFINE_float("beta", 1.1, "scale: width coefficient β of the compound rule.",
                   allow_override=True)
flags.DEFINE_float("gamma", 1.15, "scale: resolution coefficient γ of the compound rule.",
                   allow_override=True)
flags.DEFINE_string("coefficients", None,
                    "scale: a JSON file with alpha, beta, gamma (e.g. written by grid).")
flags.DEFINE_list("phi", None, "scale: compound coefficients φ (default 1,2,3,4,5,6,7).")


def cmd_scale(argv) -> None:
  """Writes a scaled family of a baseline (arch JSON per member, family.json) and prints it."""
  del argv
  from mnas_search import family
  baseline = arch_flag("baseline")
  if not FLAGS.out:
    raise ValueError("--out=DIR is required: where the member JSONs and family.json go")
  check_positive("num_classes", FLAGS.num_classes, allow_none=False)
  explicit = [f"--{f}" for f in ("alpha", "beta", "gamma") if FLAGS[f].present]
  if FLAGS.family == "paper" and (explicit or FLAGS.coefficients or FLAGS.phi):
    given = explicit + ["--coefficients"] * bool(FLAGS.coefficients) + ["--phi"] * bool(FLAGS.phi)
    raise ValueError(f"only --family=compound takes {', '.join(given)}; --family=paper is the "
                     "fixed B0–B7 table")
  if FLAGS.coefficients and explicit:
    raise ValueError(f"give either --coefficients or {', '.join(explicit)}, not both")
  coefficients = (FLAGS.alpha, FLAGS.beta, FLAGS.gamma)
  if FLAGS.coefficients:
    coefficients = family.load_coefficients(FLAGS.coefficients)
  try:
    members = family.scale_family(baseline, FLAGS.family, FLAGS.phi, *coefficients,
                                  num_classes=FLAGS.num_classes)
  except ValueError as e:
    raise ValueError(f"--{e}") from None  # library fields are the flags' names
  record = family.family_record(baseline, members, FLAGS.family, coefficients, FLAGS.num_classes,
                                coefficients_source=FLAGS.coefficients)
  family.write_family(FLAGS.out, record, members)
  print(family.format_family(record))
  print(f"wrote {len(members)} architecture JSONs and {os.path.join(FLAGS.out, 'family.json')}")


# ----------------------------------------------------------------------------- report
flags.DEFINE_string("family_dir", None, "report: a folder written by `scale` to plot as well.")


def cmd_report(argv) -> None:
  """Writes the plots and summary.md of a search directory."""
  del argv
  from mnas_search import report
  if not FLAGS.search_dir:
    raise ValueError("--search_dir=DIR is required: the search to report on")
  written = report.write_report(FLAGS.search_dir, FLAGS.out, FLAGS.family_dir)
  for kind, path in written.items():
    print(f"{kind:<15} {path}")


# ----------------------------------------------------------------------------- search
flags.DEFINE_string("search_space", "default", "search: the search space (default or micro).")
flags.DEFINE_string("controller", "ppo", "search: ppo, reinforce, evolution or random.")
flags.DEFINE_list("controller_hparams", [], "search: controller settings as name=value pairs, e.g. "
                  "learning_rate=0.003,num_epochs=4.")
flags.DEFINE_string("reward", "mnas", "search: mnas (a·(c/T)^w), mnas_hard or abs.")
flags.DEFINE_float("w", None, "search: the reward's exponent or coefficient (default: the reward's "
                   "own, -0.07 for mnas).")
flags.DEFINE_string("cost", "flops", "search: the cost in the reward: flops, params or latency.")
flags.DEFINE_float("target_flops", 400e6, "search: target T in multiply-adds at --cost_resolution.")
flags.DEFINE_float("target_params", None, "search: target T in parameters, with --cost=params.")
flags.DEFINE_float("target_latency_ms", None, "search: target T in ms of TFLite latency on this CPU, "
                   "with --cost=latency (uses --latency_threads and --latency_cache_dir).")
flags.DEFINE_integer("trials", 100, "search: finished trials to reach (raise it to extend a search).")
flags.DEFINE_integer("trials_per_update", 8, "search: children per controller update.")
flags.DEFINE_string("backend", "inline", "search: inline, process or ray.")
flags.DEFINE_integer("workers", None, "search: concurrent children (process: CPU cores; ray: 2).")
flags.DEFINE_string("ray_address", None, "search: join this Ray cluster (default: start a local one).")
flags.DEFINE_float("cpus_per_trial", 1.0, "search: Ray CPUs per trial.")
flags.DEFINE_float("gpus_per_trial", 0.0, "search: Ray GPUs per trial.")
flags.DEFINE_list("references", ["efficientnet-b0", "mnasnet-a1"],
                  "search: named networks scored once on the same proxy (empty for none).")
flags.DEFINE_bool("progress", True, "search: draw a progress bar on stderr.")


def workers_from_flags() -> int:
  from mnas_search import backends
  return FLAGS.workers if FLAGS.workers is not None else backends.default_workers(FLAGS.backend)


def parse_hparams(pairs) -> tuple:
  """`name=value` strings to (name, value) pairs; values are JSON when they parse, else strings."""
  out = []
  for pair in pairs or []:
    if "=" not in pair:
      raise ValueError(f"--controller_hparams: {pair!r} is not name=value")
    name, value = pair.split("=", 1)
    try:
      value = json.loads(value)
    except json.JSONDecodeError:
      pass
    out.append((name.strip(), value))
  return tuple(out)


def search_config_from_flags():
  from mnas_search.search import SearchConfig
  return SearchConfig(
      space=FLAGS.search_space, controller=FLAGS.controller,
      controller_hparams=parse_hparams(FLAGS.controller_hparams), reward=FLAGS.reward, w=FLAGS.w,
      cost=FLAGS.cost, target_flops=FLAGS.target_flops, target_params=FLAGS.target_params,
      target_latency_ms=FLAGS.target_latency_ms, latency_threads=FLAGS.latency_threads,
      latency_cache_dir=FLAGS.latency_cache_dir,
      trials=FLAGS.trials, trials_per_update=FLAGS.trials_per_update,
      cost_resolution=FLAGS.cost_resolution, cost_num_classes=FLAGS.cost_num_classes,
      task=proxy_task_from_flags(), backend=FLAGS.backend, workers=workers_from_flags(),
      ray_address=FLAGS.ray_address, cpus_per_trial=FLAGS.cpus_per_trial,
      gpus_per_trial=FLAGS.gpus_per_trial, strategy=FLAGS.strategy, tpu=FLAGS.tpu, seed=FLAGS.seed,
      deterministic=FLAGS.deterministic, references=tuple(FLAGS.references or ()))


def cmd_search(argv) -> None:
  """Runs or resumes a search; prints where the results are and the best architecture."""
  del argv
  if not FLAGS.search_dir:
    raise ValueError("--search_dir is required; allowed: a folder (created if missing; an existing "
                     "search there is resumed)")
  from mnas_search.search import run_search
  config = search_config_from_flags()
  summary = run_search(FLAGS.search_dir, config, show_progress=FLAGS.progress)
  out = {"search_dir": FLAGS.search_dir, "trials": summary.trials, "updates": summary.updates,
         "wall_seconds": round(summary.wall_seconds, 1)}
  if summary.best:
    out["best"] = {k: summary.best[k] for k in ("trial", "reward", "accuracy", "flops", "params", "blocks")}
  out["references"] = {n: {k: r[k] for k in ("accuracy", "reward", "flops", "status")}
                       for n, r in summary.references.items()}
  if FLAGS.json:
    print_json(out)
    return
  print(f"search {FLAGS.search_dir}: {summary.trials} trials, {summary.updates} controller updates, "
        f"{summary.wall_seconds:.0f}s")
  if summary.best:
    b = summary.best
    print(f"best: trial {b['trial']}  reward {b['reward']:.4f}  accuracy {b['accuracy']:.4f}  "
          f"{b['flops'] / 1e6:.1f}M FLOPs  {b['params'] / 1e6:.2f}M params")
    for block in b["blocks"]:
      print(f"    {block}")
  for name, r in summary.references.items():
    print(f"reference {name}: reward {r['reward']:.4f}  accuracy {r['accuracy']:.4f}  "
          f"{r['flops'] / 1e6:.1f}M FLOPs ({r['status']})")
  print(f"files: {os.path.join(FLAGS.search_dir, 'trials.jsonl')}, best.json, pareto.json, tb/ "
        f"(tensorboard --logdir {os.path.join(FLAGS.search_dir, 'tb')})")


# ----------------------------------------------------------------------------- latency
flags.DEFINE_bool("build", False, "latency: measure the lookup table of every block --search_space "
                  "can reach at --latency_resolution (entries already cached are kept).")
flags.DEFINE_bool("latency_dry_run", False, "latency --build: count the entries, measure none.")
flags.DEFINE_integer("latency_resolution", None, "latency: input resolution (default: the search "
                     "space's with --build, else the architecture's own; 224 for both defaults).")
flags.DEFINE_integer("latency_threads", 1, "latency: tf.lite.Interpreter threads.")
flags.DEFINE_string("latency_cache_dir", None, "latency: the lookup-table folder (default "
                    "~/.cache/mnas_search/latency); one file per CPU model, TF version and threads.")
flags.DEFINE_integer("latency_warmup", 5, "latency: untimed runs before timing each model.")
flags.DEFINE_integer("latency_repeats", 30, "latency: timed runs per model; the median is kept.")
flags.DEFINE_bool("latency_measure_missing", True, "latency --arch: measure the table entries "
                  "that are missing (else fail and say so).")
flags.DEFINE_bool("latency_end_to_end", True, "latency --arch: also time the whole network.")


def cmd_latency(argv) -> None:
  """Builds the latency lookup table (--build), or predicts and measures one architecture."""
  del argv
  from mnas_search import latency
  for flag in ("latency_threads", "latency_repeats", "num_classes"):
    check_positive(flag, FLAGS[flag].value, allow_none=False)
  check_positive("latency_resolution", FLAGS.latency_resolution)
  if FLAGS.latency_warmup < 0:
    raise ValueError(f"--latency_warmup={FLAGS.latency_warmup} is invalid; allowed: an integer >= 0")
  timing = dict(threads=FLAGS.latency_threads, cache_dir=FLAGS.latency_cache_dir,
                warmup=FLAGS.latency_warmup, repeats=FLAGS.latency_repeats)
  if FLAGS.build:
    if FLAGS.arch or FLAGS.blocks:
      raise ValueError("give either --build (the whole table of --search_space) or --arch/--blocks, "
                       "not both")
    try:
      space = search_space.get_space(FLAGS.search_space)
    except ValueError as e:
      raise ValueError(f"--search_space={FLAGS.search_space}: {e}") from None
    res = FLAGS.latency_resolution or space.resolution
    print(f"latency table {latency.cache_path(FLAGS.latency_cache_dir, FLAGS.latency_threads)}: "
          f"space {space.name!r} at {res}x{res}, {FLAGS.num_classes} classes, "
          f"{FLAGS.latency_threads} thread(s)", flush=True)
    done = latency.build_table(space, res, FLAGS.num_classes, dry_run=FLAGS.latency_dry_run,
                               on_progress=lambda p: print(f"  {p}", flush=True), **timing)
    if FLAGS.latency_dry_run:
      print(f"  {done.total} entries: {done.cached} cached, {done.total - done.cached} to measure "
            "(dry run: none measured)")
    else:
      print(f"measured {done.measured} entries in {done.seconds:.0f}s; the table now has all "
            f"{done.total} entries of this space")
    return
  if FLAGS.latency_dry_run:
    raise ValueError("--latency_dry_run goes with --build")
  arch = arch_from_flags()
  res = FLAGS.latency_resolution or arch.resolution
  model = latency.LatencyModel(resolution=res, num_classes=FLAGS.num_classes,
                               measure_missing=FLAGS.latency_measure_missing, **timing)
  predicted = model.predict_ms(arch)
  measured = None
  if FLAGS.latency_end_to_end:
    measured = latency.measure_end_to_end(arch, res, FLAGS.num_classes, FLAGS.latency_threads,
                                          FLAGS.latency_warmup, FLAGS.latency_repeats)
  d = {"name": arch.name, "resolution": res, "num_classes": FLAGS.num_classes,
       "threads": FLAGS.latency_threads, "device": model.device, "tf_version": model.tf_version,
       "clock": latency.timing_clock(FLAGS.latency_threads), "predicted_ms": round(predicted, 4),
       "measured_ms": measured,
       "error_pct": None if measured is None else round((predicted - measured) / measured * 100, 2),
       "entries_measured": model.measured, "table": model.path}
  if FLAGS.json:
    print_json(d)
    return
  print(f"{arch.name} at {res}x{res}, {FLAGS.num_classes} classes, {d['threads']} thread(s) on "
        f"{d['device']} (TF {d['tf_version']}, {d['clock']} clock)")
  print(f"predicted (lookup table) {predicted:9.3f} ms   ({model.measured} entries measured now)")
  if measured is not None:
    print(f"measured (end to end)    {measured:9.3f} ms   (prediction error {d['error_pct']:+.1f}%)")
  print(f"table: {model.path}")


# ----------------------------------------------------------------------------- grid
flags.DEFINE_float("grid_step", 0.05, "grid: step of the α, β and γ grids.")
flags.DEFINE_list("alpha_range", ["1.0", "1.5"], "grid: LOW,HIGH of α (depth), inclusive.")
flags.DEFINE_list("beta_range", ["1.0", "1.3"], "grid: LOW,HIGH of β (width), inclusive.")
flags.DEFINE_list("gamma_range", ["1.0", "1.3"], "grid: LOW,HIGH of γ (resolution), inclusive.")
flags.DEFINE_float("grid_tolerance", 0.1, "grid: keep the triples with |α·β²·γ² − 2| <= this.")


def parse_range(flag: str) -> tuple[float, float]:
  """--FLAG=LOW,HIGH as two floats."""
  values = FLAGS[flag].value or []
  try:
    low, high = (float(v) for v in values)
  except ValueError:
    raise ValueError(f"--{flag}={','.join(values)} is invalid; allowed: two numbers LOW,HIGH, "
                     "e.g. 1.0,1.3") from None
  return low, high


def backend_from_flags(task):
  """The backend that --backend, --workers, --ray_address and --*_per_trial describe."""
  from mnas_search import backends
  return backends.make_backend(FLAGS.backend, workers=workers_from_flags(),
                               ray_address=FLAGS.ray_address, cpus_per_trial=FLAGS.cpus_per_trial,
                               gpus_per_trial=FLAGS.gpus_per_trial,
                               hard_timeout_s=backends.hard_timeout_for(task.timeout_s))


def cmd_grid(argv) -> None:
  """Scores the α, β, γ grid at φ=1 on the proxy (resumable); prints the table and the best."""
  del argv
  from mnas_search import grid
  baseline = arch_flag("baseline")
  if not FLAGS.out:
    raise ValueError("--out=DIR is required: where grid.jsonl, the table and coefficients.json go "
                     "(an existing grid there is resumed)")
  check_positive("cost_num_classes", FLAGS.cost_num_classes, allow_none=False)
  try:
    config = grid.GridConfig(
        baseline=baseline, task=proxy_task_from_flags(), step=FLAGS.grid_step,
        alpha_range=parse_range("alpha_range"), beta_range=parse_range("beta_range"),
        gamma_range=parse_range("gamma_range"), tolerance=FLAGS.grid_tolerance,
        num_classes=FLAGS.cost_num_classes, deterministic=FLAGS.deterministic)
  except ValueError as e:
    # "alpha_range=(...) is invalid" -> "--alpha_range=(...) is invalid"
    raise ValueError(str(e) if str(e).startswith(("--", "the grid")) else f"--{e}") from None
  print(f"grid of {baseline.name}: {len(config.candidates())} candidates with "
        f"|alpha*beta^2*gamma^2 - 2| <= {config.tolerance} (step {config.step}); proxy "
        f"{config.task.dataset} at {config.task.resolution}px x gamma", flush=True)
  with backend_from_flags(config.task) as backend:
    summary = grid.run_grid(FLAGS.out, config, backend=backend, strategy=FLAGS.strategy,
                            tpu=FLAGS.tpu, show_progress=FLAGS.progress)
  print(grid.format_table(summary.rows, baseline.name))
  print(f"trained {summary.trained} candidate(s) in {summary.wall_seconds:.0f}s "
        f"({len(summary.rows) - summary.trained} read from grid.jsonl)")
  if summary.paper is not None:
    p = summary.paper
    print(f"paper  alpha={p['alpha']:g} beta={p['beta']:g} gamma={p['gamma']:g}: accuracy "
          f"{p['accuracy']:.4f} (rank {summary.rows.index(p) + 1} of {len(summary.rows)})")
  for kind, path in summary.files.items():
    print(f"{kind:<13} {path}")
  if summary.best is None:
    raise ValueError(f"no candidate trained successfully; see the errors in "
                     f"{summary.files['records']}")
  b = summary.best
  print(f"best   alpha={b['alpha']:g} beta={b['beta']:g} gamma={b['gamma']:g}: accuracy "
        f"{b['accuracy']:.4f} (use: launch.py scale --family=compound "
        f"--coefficients={summary.files['coefficients']})")


# ----------------------------------------------------------------------------- train
flags.DEFINE_integer("epochs", 10, "train: epochs over the training split.")
flags.DEFINE_integer("train_batch_size", 128, "train: batch size.")
flags.DEFINE_float("train_lr", 0.1, "train: peak learning rate (SGD with momentum; linear warmup "
                   "over 10% of the steps, then cosine decay to 0).")
flags.DEFINE_integer("train_resolution", None, "train: input resolution (default: the arch's own).")
flags.DEFINE_float("train_width", 1.0, "train: width multiplier applied to the architecture.")
flags.DEFINE_float("label_smoothing", 0.1, "train: label smoothing of the cross-entropy.")
flags.DEFINE_float("ema_decay", None, "train: decay of the exponential moving average of the "
                   "weights; 0 disables it (default: 1 - 10/total_steps, at most 0.9999).")
flags.DEFINE_list("augment", ["auto"], "train: crop, flip, none, or auto (crop, plus flip except "
                  "on synthetic data).")
flags.DEFINE_integer("train_val_images", _PROXY.val_images, "train: images held out from the "
                     "training set for monitoring (with --seed, the search's validation split).")
flags.DEFINE_integer("train_images", None, "train: training images (default: all but the "
                     "validation split).")
flags.DEFINE_float("train_bn_momentum", 0.99, "train: BatchNormalization moving-average momentum.")

# TrainConfig.task fields and the flags that set them, so that errors name the flag.
TRAIN_FLAGS = {"dataset": "dataset", "data_dir": "data_dir", "resolution": "train_resolution",
               "epochs": "epochs", "batch_size": "train_batch_size", "learning_rate": "train_lr",
               "proxy_width": "train_width", "label_smoothing": "label_smoothing",
               "val_images": "train_val_images", "train_images": "train_images",
               "bn_momentum": "train_bn_momentum", "seed": "seed"}


def task_with_flags(flag_of: dict, values: dict, base: ProxyTask | None = None) -> ProxyTask:
  """A ProxyTask of `values` (field -> value, over `base`); errors name the flag of the field."""
  try:
    return base.replace(**values) if base is not None else ProxyTask(**values)
  except ProxyTaskError as e:
    raise ValueError(f"--{flag_of.get(e.field, e.field)}"
                     + str(e)[len(f"ProxyTask.{e.field}"):]) from None


def cmd_train(argv) -> None:
  """Trains an architecture fully (or continues), then prints its test accuracy."""
  del argv
  from mnas_search import train
  if not FLAGS.out:
    raise ValueError("--out=DIR is required: where model.keras, metrics.json, the checkpoints and "
                     "TensorBoard logs go (an unfinished training there is continued)")
  arch = arch_from_flags()
  check_positive("train_resolution", FLAGS.train_resolution)
  values = {field: getattr(FLAGS, flag) for field, flag in TRAIN_FLAGS.items()}
  values["resolution"] = FLAGS.train_resolution or arch.resolution
  task = task_with_flags(TRAIN_FLAGS, values)
  augment = [a.strip() for a in FLAGS.augment or [] if a.strip()]
  if augment == ["auto"]:
    augment = None
  elif augment in ([], ["none"]):
    augment = ()
  try:
    config = train.TrainConfig(task=task, ema_decay=FLAGS.ema_decay,
                               augment=None if augment is None else tuple(augment))
  except ValueError as e:
    raise ValueError(f"--{e}") from None  # "ema_decay=..." -> "--ema_decay=..."
  print(f"training {arch.name} on {task.dataset} at {task.resolution}x{task.resolution}, width "
        f"x{task.proxy_width:g}, {task.epochs} epochs -> {FLAGS.out}", flush=True)
  r = train.train(arch, FLAGS.out, config, strategy=FLAGS.strategy,
                  verbose=1 if sys.stdout.isatty() else 2)
  if not r.finished:
    print(f"stopped after epoch {r.epochs_done} of {task.epochs}; run the same command again to "
          "continue")
    sys.exit(1)
  m = r.metrics
  if FLAGS.json:
    print_json({k: v for k, v in m.items() if k not in ("history", "arch", "trained_arch")})
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
  print(f"files: {os.path.join(FLAGS.out, 'model.keras')}, metrics.json, tb/ "
        f"(tensorboard --logdir {os.path.join(FLAGS.out, 'tb')})")


# ----------------------------------------------------------------------------- fidelity
flags.DEFINE_integer("sample", None, "fidelity: K, how many distinct architectures to retrain "
                     "(the top, middle and bottom by proxy reward).")
flags.DEFINE_integer("fidelity_epochs", None, "fidelity: epochs of the longer training "
                     "(default: 4x the search's).")


def cmd_fidelity(argv) -> None:
  """Retrains K trials of a search longer; prints Kendall τ and Spearman ρ of the two rankings."""
  del argv
  from mnas_search import fidelity
  if not FLAGS.search_dir:
    raise ValueError("--search_dir=DIR is required: the search whose proxy is checked")
  if FLAGS.sample is None:
    raise ValueError("--sample=K is required; allowed: an integer >= 2")
  if FLAGS["proxy_epochs"].present or (FLAGS["proxy_steps"].present and
                                       FLAGS.fidelity_epochs is not None):
    given = "--proxy_epochs" if FLAGS["proxy_epochs"].present else "--proxy_steps with --fidelity_epochs"
    raise ValueError(f"{given} is not taken by fidelity; allowed: --fidelity_epochs=N or "
                     "--proxy_steps=N (the length of the longer training)")
  check_positive("fidelity_epochs", FLAGS.fidelity_epochs)
  _, search_task = fidelity.read_search(FLAGS.search_dir)
  # Other --proxy_* (and --dataset, --seed) flags given explicitly override the search's task.
  overrides = {field: getattr(FLAGS, flag) for field, flag in PROXY_FLAGS.items()
               if FLAGS[flag].present and field != "epochs"}
  flag_of = dict(PROXY_FLAGS, epochs="fidelity_epochs")
  long_task = task_with_flags(flag_of, {}, fidelity.longer_task(
      search_task, epochs=FLAGS.fidelity_epochs))
  long_task = task_with_flags(flag_of, overrides, long_task)
  config = fidelity.FidelityConfig(sample=FLAGS.sample, task=long_task,
                                   deterministic=FLAGS.deterministic)
  with backend_from_flags(long_task) as backend:
    s = fidelity.run_fidelity(FLAGS.search_dir, config, out_dir=FLAGS.out, backend=backend,
                              strategy=FLAGS.strategy, tpu=FLAGS.tpu, show_progress=FLAGS.progress)
  if FLAGS.json:
    print_json({k: s[k] for k in ("selected", "n", "kendall_tau", "spearman_rho", "files")})
    return
  print(f"{'trial':>6} {'group':<7} {'proxy reward':>12} {'proxy acc':>9} {'long acc':>9}  status")
  for r in s["trials"]:
    print(f"{r['trial']:>6} {r['group']:<7} {r['proxy_reward']:>12.4f} {r['proxy_accuracy']:>9.4f} "
          f"{r['accuracy']:>9.4f}  {r['status']}")
  fmt = lambda v: "n/a (a constant ranking)" if v is None else f"{v:+.4f}"  # noqa: E731
  schedule = (f"{long_task.steps} steps" if long_task.steps else f"{long_task.epochs} epochs")
  print(f"proxy ({search_task.epochs} epochs) vs longer training ({schedule}, "
        f"{long_task.train_images or 'all'} images) over {s['n']} trials: Kendall tau "
        f"{fmt(s['kendall_tau'])}, Spearman rho {fmt(s['spearman_rho'])}")
  print(f"trained {s['trained']} trial(s) in {s['wall_seconds']:.0f}s; files: "
        + ", ".join(s["files"].values()))


# ----------------------------------------------------------------------------- commands
COMMANDS = {
    "describe": cmd_describe,
    "evaluate": cmd_evaluate,
    "search": cmd_search,
    "export": cmd_export,
    "scale": cmd_scale,
    "report": cmd_report,
    "latency": cmd_latency,
    "grid": cmd_grid,
    "train": cmd_train,
    "fidelity": cmd_fidelity,
}


def main(argv) -> None:
  if len(argv) < 2 or argv[1] not in COMMANDS:
    given = argv[1] if len(argv) > 1 else "(none)"
    print(f"error: unknown command {given!r}; allowed: {', '.join(COMMANDS)}\n"
          f"usage: python launch.py COMMAND --flag=value ... (--helpfull lists the flags)",
          file=sys.stderr)
    sys.exit(2)
  try:
    COMMANDS[argv[1]](argv[2:])
  except (ValueError, FileNotFoundError) as e:
    # Library errors name the bad value and what is allowed; show them without a traceback.
    logging.debug("error", exc_info=True)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def run_main() -> None:
  app.run(main)


if __name__ == "__main__":
  run_main()
