"""The controller interface, its argument checks and its atomic checkpoints.

A controller proposes index vectors (one index per decision, decision d taking
values 0..arities[d]-1) and learns from their rewards. It knows nothing about
what a decision means. The search loop calls

    samples = c.sample(K)                 # list[Sample]
    metrics = c.update(samples, rewards)  # after the children are trained
    c.save(directory)

and, on resume, `c.restore(directory)` then `c.sample(K)`, which must return
the very samples the uninterrupted controller would have returned. So a
checkpoint holds everything: learned state, optimizer state, baselines or
population, the numpy RNG state and the counters.

Checkpoint layout: `directory/ckpt-NNNNNN/` holds one complete checkpoint
(`state.json` plus whatever the controller adds) and `directory/LATEST` names
the current one. A save writes a temporary folder, renames it into place and
then replaces LATEST with os.replace, so a crash at any point leaves the
previous checkpoint intact and loadable.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
import numbers
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from nas_common import FieldError, atomic_write_json, check_int, fsync_dir
from nas_common.atomic import TMP_PREFIX

if TYPE_CHECKING:  # numpy is imported on use: importing the package stays light
  import numpy as np

FORMAT_VERSION = 1
LATEST = "LATEST"
STATE_FILE = "state.json"
_CKPT_PREFIX = "ckpt-"
_TMP_PREFIX = TMP_PREFIX  # also the atomic writer's, so that one sweep removes both


@dataclasses.dataclass(frozen=True)
class Sample:
  """One proposed architecture.

  Attributes:
    indices: one option index per decision.
    info: what the controller that made it needs to learn from it later (for
      PPO, the logits it was sampled from). Opaque to callers; not compared.
  """

  indices: tuple[int, ...]
  info: Any = dataclasses.field(default=None, compare=False, repr=False)


# ----------------------------------------------------------------------------- argument checks
def check_arities(arities: Sequence[int]) -> tuple[int, ...]:
  """The arities as a tuple of ints >= 1, or a ValueError naming the bad entry."""
  try:
    values = tuple(arities)
  except TypeError:
    raise ValueError(f"arities={arities!r} is invalid; allowed: a non-empty sequence of "
                     "integers >= 1") from None
  if not values:
    raise ValueError("arities=() is invalid; allowed: a non-empty sequence of integers >= 1")
  for d, a in enumerate(values):
    if isinstance(a, bool) or not isinstance(a, numbers.Integral) or a < 1:
      raise ValueError(f"arities[{d}]={a!r} is invalid; allowed: an integer >= 1")
  return tuple(int(a) for a in values)


def check_float(name: str, value, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
  """`value` as a float within [low, high] (ends open where asked), or a ValueError."""
  lo, hi = "(" if low_open else "[", ")" if high_open else "]"
  allowed = f"a number in {lo}{low}, {high}{hi}"
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise FieldError(name, value, allowed)
  v = float(value)
  ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
  if not ok:  # also refuses NaN
    raise FieldError(name, value, allowed)
  return v


def check_bool(name: str, value) -> bool:
  import numpy as np  # numpy is imported on use, so importing a controller stays free of it
  if not isinstance(value, (bool, np.bool_)):
    raise FieldError(name, value, "True or False")
  return bool(value)


def make_config(config_cls: type, controller: str, hparams: Mapping[str, Any]):
  """`config_cls(**hparams)`, refusing unknown names with a ValueError that lists the known ones."""
  known = [f.name for f in dataclasses.fields(config_cls)]
  unknown = sorted(set(hparams) - set(known))
  if unknown:
    raise ValueError(f"unknown hparam {unknown[0]!r} for controller {controller!r}; "
                     f"allowed: {known}")
  return config_cls(**hparams)


@dataclasses.dataclass(frozen=True)
class NoHparams:
  """The config of a controller that has no knobs."""


# ----------------------------------------------------------------------------- atomic checkpoints
def write_json_atomic(path: str, obj: Any) -> None:
  """Writes compact JSON atomically (the project's one writer, `nas_common.atomic_write_json`)."""
  atomic_write_json(path, obj, indent=None)


def latest_checkpoint(directory: str) -> str | None:
  """The folder of the current checkpoint in `directory`, or None when there is none."""
  pointer = os.path.join(directory, LATEST)
  if not os.path.isfile(pointer):
    return None
  with open(pointer) as f:
    name = json.load(f)["checkpoint"]
  path = os.path.join(directory, name)
  if not os.path.isfile(os.path.join(path, STATE_FILE)):
    raise ValueError(f"checkpoint directory={directory!r} is corrupt: {LATEST} names {name!r}, "
                     f"which has no {STATE_FILE}")
  return path


def write_checkpoint(directory: str, write: Callable[[str], None]) -> str:
  """Calls `write(folder)` on a fresh temporary folder and makes it the current checkpoint.

  Returns:
    The folder of the new checkpoint.
  """
  os.makedirs(directory, exist_ok=True)
  current = latest_checkpoint(directory)
  number = int(os.path.basename(current)[len(_CKPT_PREFIX):]) + 1 if current else 1
  name = f"{_CKPT_PREFIX}{number:06d}"
  tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory)
  try:
    write(tmp)
    for entry in os.listdir(tmp):
      path = os.path.join(tmp, entry)
      if os.path.isfile(path):
        with open(path, "rb") as f:
          os.fsync(f.fileno())
    final = os.path.join(directory, name)
    if os.path.exists(final):  # left by a crash between the rename and the LATEST update
      shutil.rmtree(final)
    os.rename(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  fsync_dir(directory)
  write_json_atomic(os.path.join(directory, LATEST), {"checkpoint": name})
  # Only now may older checkpoints and crash leftovers go.
  for entry in os.listdir(directory):
    if (entry.startswith(_CKPT_PREFIX) and entry != name) or entry.startswith(_TMP_PREFIX):
      path = os.path.join(directory, entry)
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
  return final


# ----------------------------------------------------------------------------- the interface
class Controller(abc.ABC):
  """Proposes index vectors over decisions of the given arities and learns from rewards.

  Subclasses set `NAME` and `Config` (a frozen dataclass whose fields are the
  hparams, with their defaults) and implement `_sample`, `_update`, `entropy`,
  and `_state`/`_load_state` for what they must checkpoint beyond the RNG and
  counters kept here.

  Args:
    arities: how many options each decision has (each >= 1).
    seed: seeds the controller's own numpy Generator (and its initial weights).
    **hparams: fields of `Config`; an unknown name is a ValueError.
  """

  NAME: ClassVar[str] = ""
  Config: ClassVar[type] = NoHparams

  def __init__(self, arities: Sequence[int], seed: int = 0, **hparams):
    self._arities = check_arities(arities)
    self._seed = check_int("seed", seed, 0)
    self._config = make_config(self.Config, self.NAME, hparams)
    import numpy as np
    self._rng = np.random.default_rng(self._seed)
    self._num_sampled = 0
    self._num_updates = 0

  @property
  def arities(self) -> tuple[int, ...]:
    return self._arities

  @property
  def num_decisions(self) -> int:
    return len(self._arities)

  @property
  def seed(self) -> int:
    return self._seed

  @property
  def config(self):
    """The hparams, as a frozen dataclass."""
    return self._config

  @property
  def num_sampled(self) -> int:
    """How many samples this controller has handed out, over its whole life."""
    return self._num_sampled

  @property
  def num_updates(self) -> int:
    return self._num_updates

  def sample(self, n: int) -> list[Sample]:
    """`n` new samples; the same controller state always gives the same samples."""
    n = check_int("n", n, 1)
    out = self._sample(n)
    self._num_sampled += n
    return out

  def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, float]:
    """Learns from the rewards of `samples` (a failed child comes with reward 0).

    Returns:
      Metrics: at least `loss`, `entropy` (of the policy after the update, in
      nats summed over decisions) and `mean_reward` (of this batch).
    """
    import numpy as np
    samples = list(samples)
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1 or len(samples) != r.shape[0] or not samples:
      raise ValueError(f"got {len(samples)} samples and rewards of shape {r.shape}; allowed: "
                       "equally many (at least one) samples and rewards")
    if not np.all(np.isfinite(r)):
      raise ValueError(f"rewards={r.tolist()} is invalid; allowed: finite numbers (give a "
                       "failed child reward 0)")
    for i, s in enumerate(samples):
      self._check_indices(f"samples[{i}].indices", s.indices)
    metrics = dict(self._update(samples, r))
    self._num_updates += 1
    metrics["mean_reward"] = float(r.mean())
    return {k: float(v) for k, v in metrics.items()}

  def _check_indices(self, name: str, indices: Sequence[int]) -> None:
    if len(indices) != self.num_decisions or not all(
        0 <= int(i) < a for i, a in zip(indices, self._arities)):
      raise ValueError(f"{name}={tuple(indices)} is invalid; allowed: {self.num_decisions} "
                       f"indices, index d in 0..arities[d]-1 with arities={self._arities}")

  def decision_probabilities(self) -> list[list[float]]:
    """Each decision's option probabilities under the current policy, without touching the
    controller's own RNG. Controllers without such a policy (random, evolution) do not say.

    Raises:
      NotImplementedError: this controller has no per-decision policy.
    """
    raise NotImplementedError(f"controller {self.NAME!r} has no per-decision probabilities")

  @abc.abstractmethod
  def entropy(self) -> float:
    """The entropy of the current sampling distribution, in nats, summed over decisions."""

  @abc.abstractmethod
  def _sample(self, n: int) -> list[Sample]:
    """`n` samples, drawn with `self._rng`."""

  @abc.abstractmethod
  def _update(self, samples: list[Sample], rewards: np.ndarray) -> dict[str, float]:
    """Learns from checked samples and finite rewards; returns at least loss and entropy."""

  def _state(self) -> dict[str, Any]:
    """JSON-serializable state beyond the RNG and counters."""
    return {}

  # Optional hooks, empty on purpose: a controller with no extra state overrides none of them.
  def _load_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027
    """Inverse of `_state`."""

  def _write_files(self, folder: str) -> None:  # noqa: B027
    """Writes state that is not JSON (such as TF variables) into `folder`."""

  def _read_files(self, folder: str) -> None:  # noqa: B027
    """Inverse of `_write_files`."""

  # --------------------------------------------------------------------------- checkpoints
  def save(self, directory: str) -> None:
    """Writes a complete checkpoint to `directory`, atomically (see the module docstring)."""
    state = {"format_version": FORMAT_VERSION, "controller": self.NAME,
             "arities": list(self._arities), "config": dataclasses.asdict(self._config),
             "seed": self._seed, "rng": self._rng.bit_generator.state,
             "num_sampled": self._num_sampled, "num_updates": self._num_updates,
             "controller_state": self._state()}

    def write(folder: str) -> None:
      with open(os.path.join(folder, STATE_FILE), "w") as f:
        json.dump(state, f)
      self._write_files(folder)

    write_checkpoint(directory, write)

  def restore(self, directory: str) -> bool:
    """Loads the current checkpoint of `directory` into this controller.

    Returns:
      False (changing nothing) when `directory` holds no checkpoint.

    Raises:
      ValueError: when the checkpoint was written by another kind of
        controller, for other arities or with other hparams.
    """
    folder = latest_checkpoint(directory)
    if folder is None:
      return False
    path = os.path.join(folder, STATE_FILE)
    with open(path) as f:
      try:
        state = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} is not valid JSON: {e}") from None
    # Compared after a JSON round trip, as they were stored.
    mine = json.loads(json.dumps({"controller": self.NAME, "arities": list(self._arities),
                                  "config": dataclasses.asdict(self._config)}))
    for key, value in mine.items():
      if state.get(key) != value:
        raise ValueError(f"checkpoint {folder!r} was written with {key}={state.get(key)!r}; "
                         f"this controller has {key}={value!r}")
    self._read_files(folder)
    self._load_state(state["controller_state"])
    self._rng.bit_generator.state = state["rng"]
    self._seed = state["seed"]
    self._num_sampled = state["num_sampled"]
    self._num_updates = state["num_updates"]
    return True


def advance_baseline(baseline: float | None, rewards: np.ndarray,
                     decay: float) -> tuple[float, float]:
  """A moving-average reward baseline: (the value to subtract now, the next value).

  The first batch's mean starts it (so the first advantages are centred);
  then it moves by decay·b + (1 − decay)·mean(rewards) after each batch.
  """
  import numpy as np
  mean = float(np.mean(rewards))
  used = mean if baseline is None else baseline
  return used, decay * used + (1.0 - decay) * mean


def uniform_entropy(arities: Sequence[int]) -> float:
  """The entropy of the uniform distribution over all index vectors, in nats."""
  return float(sum(math.log(a) for a in arities))
