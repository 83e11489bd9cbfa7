"""Export of searched (or named) architectures: arch JSON, .keras, SavedModel and TFLite.

Each exported architecture gets a folder `NN_name/` holding `arch.json`, the
sidecar `info.json` (trial, reward, accuracy, FLOPs, params and the export
settings), and the requested model formats. Models are built fresh (initialized
weights) unless a trained `.keras` file with the same architecture is given;
then its input shape and classes are the defaults of the export.
After writing, the .keras file is reloaded (safe mode), the SavedModel is loaded
and served, and the TFLite model is run in `tf.lite.Interpreter`; each is
compared with the built model on a fixed random batch, and the largest
differences are recorded in `info.json`. A difference above
`AGREEMENT_TOLERANCE` is an error that names the format.
`index.json` in the output folder lists everything exported.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from typing import Any, Iterable, Sequence

import search_space
from mnas_search.runs import records as records_lib
from mnas_search.runs.rundir import read_params
from mnas_search.search import pareto
from mnas_search.util import fileio
from nas_common import FieldError, FieldNotFoundError, check_int
from search_space import Architecture

FORMATS = ("json", "keras", "savedmodel", "tflite")
DEFAULT_NUM_CLASSES = 1000
# Float32 outputs of the same graph agree far below this; a larger gap means a broken conversion.
AGREEMENT_TOLERANCE = 1e-3
_CHECK_BATCH = 2


@dataclasses.dataclass(frozen=True)
class ExportTarget:
  """One architecture to export and what the search measured for it (None for a bare arch)."""

  rank: int
  arch: Architecture
  trial: int | None = None
  reward: float | None = None
  accuracy: float | None = None
  flops: int | None = None
  params: int | None = None

  @property
  def folder(self) -> str:
    """Rank and name, e.g. `01_trial-17`; `01_trial17` for a trial whose arch has no name."""
    if self.trial is not None and self.arch.name in ("", "custom"):
      return f"{self.rank:02d}_trial{self.trial}"
    return f"{self.rank:02d}_{_slug(self.arch.name)}"


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "arch"


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
  """Validates format names (a list or a comma-separated string); keeps the given order, once each."""
  items = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
  items = [f for f in items if f]
  if not items:
    raise FieldError("formats", formats, f"one or more of {list(FORMATS)}", reason="is empty")
  unknown = [f for f in items if f not in FORMATS]
  if unknown:
    raise FieldError("formats", ",".join(items), f"{list(FORMATS)}",
                     reason=f"has unknown format(s) {unknown}")
  return tuple(dict.fromkeys(items))


def _target(rank: int, record: dict[str, Any]) -> ExportTarget:
  try:
    arch = Architecture.from_dict(record.get("arch"))
  except ValueError as e:
    raise ValueError(f"trial {record.get('trial')!r}: arch is invalid: {e}") from None
  return ExportTarget(rank=rank, arch=arch, trial=record["trial"], reward=record.get("reward"),
                      accuracy=record.get("accuracy"), flops=record.get("flops"),
                      params=record.get("params"))


def select_top_k(records: Iterable[dict[str, Any]], top_k: int) -> list[ExportTarget]:
  """The `top_k` best distinct architectures by reward among trials with status ok or cached.

  Ties in reward go to the lower trial number; a repeat of an architecture
  already selected is skipped, so fewer than `top_k` come back when the
  search found fewer distinct architectures.

  Raises:
    ValueError: top_k < 1, or no trial with status ok or cached.
  """
  check_int("top_k", top_k, 1)
  ranked = records_lib.distinct_by_reward(records)
  if not ranked:
    raise ValueError("no successful trial (status ok or cached) to export; the search has "
                     "not finished any trial yet, or every trial failed")
  return [_target(i + 1, r) for i, r in enumerate(ranked[:top_k])]


def select_pareto(search_dir: str, records: Sequence[dict[str, Any]]) -> list[ExportTarget]:
  """The Pareto front from `search_dir`/pareto.json, or computed from the trials when it is absent."""
  front = pareto.read_pareto_file(os.path.join(search_dir, "pareto.json"))
  if front is None:
    front = pareto.pareto_front(records)
  if not front:
    raise ValueError("the Pareto front is empty: no successful trial (status ok or cached)")
  return [_target(i + 1, r) for i, r in enumerate(front)]


def search_num_classes(search_dir: str) -> int | None:
  """The `num_classes` stored in the search's params.json, when it is there."""
  n = read_params(search_dir).get("num_classes")
  if n is None:
    return None
  check_int(f"{os.path.join(search_dir, 'params.json')}: num_classes", n, 1)
  return n


@dataclasses.dataclass(frozen=True)
class ExportOptions:
  """What the exported models look like.

  Attributes:
    formats: any of `FORMATS` (a comma-separated string is accepted and parsed).
    resolution: the exported input resolution; when None, the weights' (a square input) or
      else each architecture's own.
    num_classes: classifier outputs; when None, the weights', else the search's params.json
      `num_classes`, else 1000.
    channels: input image channels; when None, the weights', else 3.
    weights: a trained .keras file to load into the (single) exported model.
  """

  formats: str | Sequence[str] = FORMATS
  resolution: int | None = None
  num_classes: int | None = None
  channels: int | None = None
  weights: str | None = None

  def __post_init__(self):
    parse_formats(self.formats)  # refuses an unknown format now, before anything is written
    for field in ("resolution", "num_classes", "channels"):
      if getattr(self, field) is not None:
        check_int(field, getattr(self, field), 1)


def export_search(search_dir: str, out_dir: str, top_k: int = 1, use_pareto: bool = False,
                  options: ExportOptions | None = None) -> list[dict[str, Any]]:
  """Exports the best `top_k` trials (or, with `use_pareto`, the Pareto front) of a search.

  Args:
    search_dir: the search directory (trials.jsonl, optionally params.json and pareto.json).
    out_dir: where the per-architecture folders and index.json go.
    top_k: how many distinct architectures to export, best reward first (ignored with use_pareto).
    use_pareto: export the whole Pareto front instead of the top k.
    options: formats, input shape, classes and weights (`ExportOptions()` when None).

  Returns:
    The index entries (also written to out_dir/index.json).
  """
  options = options or ExportOptions()
  check_int("top_k", top_k, 1)
  records = records_lib.read_trials(search_dir)
  try:
    targets = select_pareto(search_dir, records) if use_pareto else select_top_k(records, top_k)
  except ValueError as e:
    raise FieldError("search_dir", search_dir, "", reason=f": {e}") from None
  if options.num_classes is None and options.weights is None:
    options = dataclasses.replace(options, num_classes=search_num_classes(search_dir))
  return export_targets(targets, out_dir, options, source=os.path.abspath(search_dir))


def export_architecture(arch: Architecture, out_dir: str, options: ExportOptions | None = None,
                        source: str | None = None) -> list[dict[str, Any]]:
  """Exports one architecture (see `export_search` for the arguments); returns the index entries."""
  return export_targets([ExportTarget(rank=1, arch=arch)], out_dir, options or ExportOptions(),
                        source=source or arch.name)


def export_targets(targets: Sequence[ExportTarget], out_dir: str, options: ExportOptions,
                   source: str) -> list[dict[str, Any]]:
  """Exports each target into its folder under `out_dir` and writes out_dir/index.json.

  None for resolution, num_classes or channels means: the trained model's (with
  weights), else each architecture's resolution, 1000 classes and 3 channels.
  """
  formats, resolution, num_classes, channels, weights = (
      parse_formats(options.formats), options.resolution, options.num_classes, options.channels,
      options.weights)
  trained = None
  if weights is not None:
    if not os.path.isfile(weights):
      raise FieldNotFoundError("weights", weights, "a trained .keras file", reason="does not exist")
    if len(targets) != 1:
      raise FieldError("weights", weights, "a single architecture (top_k=1) with weights",
                       reason=f"holds one model but {len(targets)} architectures are selected")
    import keras
    trained = keras.saving.load_model(weights, safe_mode=True, compile=False)
    _, height, width, in_channels = trained.input_shape
    resolution = resolution or (height if height == width else None)
    channels = channels or in_channels
    num_classes = num_classes or trained.output_shape[-1]
  shape = ExportOptions(formats, resolution, num_classes or DEFAULT_NUM_CLASSES, channels or 3, weights)
  entries = [_export_one(t, out_dir, dataclasses.replace(shape, resolution=resolution or t.arch.resolution),
                         trained) for t in targets]
  fileio.atomic_write_json(os.path.join(out_dir, "index.json"),
                           {"source": source, "formats": list(formats), "models": entries})
  return entries


def _export_one(target: ExportTarget, out_dir: str, options: ExportOptions, trained) -> dict[str, Any]:
  """One architecture's folder; `options` is resolved (no None but the weights)."""
  formats, resolution, num_classes, channels, weights = (
      parse_formats(options.formats), options.resolution, options.num_classes, options.channels,
      options.weights)
  folder = os.path.join(out_dir, target.folder)
  os.makedirs(folder, exist_ok=True)
  arch = target.arch.replace(resolution=resolution)  # arch.json describes the exported model
  files, checks = [], {}
  if "json" in formats:
    fileio.atomic_write_json(os.path.join(folder, "arch.json"), arch.to_dict())
    files.append("arch.json")
  model_formats = [f for f in formats if f != "json"]
  if model_formats:
    files_, checks = _write_models(arch, folder, model_formats, (resolution, resolution, channels),
                                   num_classes, weights, trained)
    files += files_
  info = {"rank": target.rank, "name": target.arch.name, "trial": target.trial,
          "reward": target.reward, "accuracy": target.accuracy, "flops": target.flops,
          "params": target.params,
          "export": {"resolution": resolution, "num_classes": num_classes, "channels": channels,
                     "flops": search_space.count_flops(arch, resolution, num_classes, channels),
                     "params": search_space.count_params(arch, num_classes, channels),
                     "weights": os.path.abspath(weights) if weights else None},
          "checks": checks}
  fileio.atomic_write_json(os.path.join(folder, "info.json"), info)
  return {**info, "folder": target.folder, "files": files + ["info.json"]}


def _write_models(arch: Architecture, folder: str, formats: Sequence[str],
                  input_shape: tuple[int, int, int], num_classes: int,
                  weights: str | None, trained) -> tuple[list[str], dict[str, float]]:
  """Builds the model, writes the model formats and checks that each reloads to the same outputs."""
  import keras
  import numpy as np
  model = search_space.build_model(arch, input_shape, num_classes)
  if trained is not None:
    copy_matching_weights(trained, model, weights)
  batch = np.random.default_rng(0).standard_normal((_CHECK_BATCH, *input_shape)).astype("float32")
  expected = model(batch, training=False).numpy()
  files, checks = [], {}
  if "keras" in formats:
    path = os.path.join(folder, "model.keras")
    model.save(path)
    files.append("model.keras")
    reloaded = keras.saving.load_model(path, safe_mode=True)
    checks["keras_max_abs_diff"] = _max_diff(reloaded(batch, training=False).numpy(), expected)
  if "savedmodel" in formats or "tflite" in formats:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
      saved = os.path.join(folder if "savedmodel" in formats else tmp, "saved_model")
      model.export(saved, verbose=False)
      if "savedmodel" in formats:
        files.append("saved_model")
        import tensorflow as tf
        served = tf.saved_model.load(saved)  # keep a reference: it owns the variables
        checks["savedmodel_max_abs_diff"] = _max_diff(served.serve(batch).numpy(), expected)
      if "tflite" in formats:
        path = os.path.join(folder, "model.tflite")
        fileio.atomic_write_text(path, convert_to_tflite(saved))
        files.append("model.tflite")
        checks["tflite_max_abs_diff"] = _max_diff(run_tflite(path, batch), expected)
  for name, diff in checks.items():
    if not diff <= AGREEMENT_TOLERANCE:  # NaN counts as a disagreement
      fmt = name[:-len("_max_abs_diff")]
      raise ValueError(f"{folder}: the exported {fmt} model disagrees with the built Keras model: "
                       f"max abs difference {diff:g} > tolerance {AGREEMENT_TOLERANCE:g}; the "
                       f"{fmt} conversion is broken")
  return files, checks


def _max_diff(a, b) -> float:
  import numpy as np
  return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b)))


def copy_matching_weights(trained, model, weights: str) -> None:
  """Copies the weights of `trained` (loaded from the file `weights`) into `model`, if they fit.

  Raises:
    ValueError: the trained model's weights differ in number or shape (another
      architecture, or another number of classes or input channels).
  """
  want = [tuple(w.shape) for w in model.weights]
  have = [tuple(w.shape) for w in trained.weights]
  if len(want) != len(have):
    raise FieldError("weights", weights, "a .keras model of the same architecture",
                     reason=f"has {len(have)} weight tensors but the architecture needs {len(want)}")
  for w, a, b in zip(model.weights, want, have):
    if a != b:
      raise FieldError("weights", weights, "a .keras model of the same architecture, classes and "
                       "channels", reason=f": {w.path} has shape {b} but the architecture needs {a}")
  model.set_weights(trained.get_weights())


def convert_to_tflite(saved_model_dir: str) -> bytes:
  """Converts a SavedModel (from `model.export`) to a float32 TFLite flatbuffer."""
  import tensorflow as tf
  return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert()


def run_tflite(path: str, batch):
  """Runs a TFLite model on a float32 batch (resizing its batch dimension) and returns the outputs."""
  import warnings

  import tensorflow as tf
  with warnings.catch_warnings():
    # TF warns that tf.lite.Interpreter moves to the separate ai_edge_litert package; it still works.
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    interpreter = tf.lite.Interpreter(model_path=path)
  inp = interpreter.get_input_details()[0]
  interpreter.resize_tensor_input(inp["index"], batch.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(inp["index"], batch)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def format_index(entries: Sequence[dict[str, Any]]) -> str:
  """The printed summary of an export: one row per exported architecture."""
  def num(v, fmt):
    return "-" if v is None else format(v, fmt)
  lines = [f"{'rank':>4}  {'folder':<32} {'trial':>6} {'reward':>8} {'accuracy':>8} "
           f"{'FLOPs':>14} {'params':>11} {'res':>4}  files"]
  for e in entries:
    x = e["export"]
    lines.append(f"{e['rank']:>4}  {e['folder']:<32} {num(e['trial'], 'd'):>6} "
                 f"{num(e['reward'], '.4f'):>8} {num(e['accuracy'], '.4f'):>8} "
                 f"{x['flops']:>14,} {x['params']:>11,} {x['resolution']:>4}  "
                 + ", ".join(e["files"]))
  return "\n".join(lines)
