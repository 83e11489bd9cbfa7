"""The one-shot search loop (TuNAS-style): shared-weight steps alternate with controller steps.

For `oneshot_epochs` passes over the proxy's training images, each step trains the supernet's
shared weights on one training batch along one path: a uniformly random path during the warm-up
(the first `oneshot_warmup_fraction` of the steps), then a path sampled from the controller.
After the warm-up, every shared-weight step is followed by a controller step: the controller
samples `controller_batch` paths, each is scored on a validation batch (BN statistics from the
step's training batch, in the same traced call), the reward (the chosen reward over the analytic
deploy cost, as in the multi-trial search) updates the controller, and one record goes to
oneshot.jsonl.

At the end, the finalists are the controller's most likely architecture (the argmax of each
decision's probability) plus the `oneshot_top_k` distinct architectures it sampled most often
over the last `final_window_fraction` of the steps. Each is trained stand-alone on the proxy
(the multi-trial search's backend and record format) into trials.jsonl, and the best goes to
best.json, so export, scale, train and report read the directory unchanged.

Resume: every `checkpoint_every` steps the supernet weights, the optimizer, the controller and
the loop state (step, RNG, sample counts) are written as one checkpoint (`oneshot_ckpt/`,
swapped in atomically). A killed search restarts from the last checkpoint: oneshot.jsonl is cut
back to it, and finalists already in trials.jsonl are not trained again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Sequence

import numpy as np
from absl import logging

import search_space
from controller import base as controller_base
from mnas_search.data import datasets
from mnas_search.runs.store import SearchStore
from mnas_search.search import config as search_config
from mnas_search.search import multi_trial as search_lib
from mnas_search.search import pareto as pareto_lib
from mnas_search.search.executor import Executor
from mnas_search.search.objective import Objective
from mnas_search.search.proposer import make_controller
from mnas_search.search.recorder import Board, Recorder, TrialIndex
from mnas_search.training import evaluation, recipe
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import faults, fileio
from mnas_search.util.progress import Progress
from nas_common import FieldError, check_int

CONTROLLERS = ("reinforce", "ppo")
COSTS = ("flops", "params")
# Which paths train the shared weights after the warm-up: the controller's samples (TuNAS), uniform
# random ones (single-path one-shot), or the sandwich rule (the largest, the smallest and random
# ones on the same batch: BigNAS).
PATH_RULES = ("controller", "uniform", "sandwich")
ONESHOT_LOG = "oneshot.jsonl"
FINALISTS = "finalists.json"
CHECKPOINT_DIR = "oneshot_ckpt"
# Settings a resume may change; everything else must match params.json.
MAY_CHANGE_ON_RESUME = ("checkpoint_every",)
# A PPO policy is autoregressive: its per-decision probabilities are estimated from rollouts.
# One-shot controller steps are many and single-sample: the multi-trial default step size of
# reinforce (0.2, for a few dozen batched updates) would lock the policy in on noise within a
# hundred steps. Given hparams override these.
ONESHOT_CONTROLLER_DEFAULTS = {"reinforce": (("learning_rate", 0.01), ("baseline_decay", 0.95))}


@dataclasses.dataclass(frozen=True)
class OneShotConfig(search_config.SharedConfig):
  """Every setting of a one-shot search; written to params.json (with mode "oneshot").

  Attributes (besides `SharedConfig`'s; the controller and the reward default to TuNAS's):
    controller: "reinforce" (TuNAS: independent logits, moving-average baseline) or "ppo".
    controller_hparams: extra controller settings, as (name, value) pairs; they override
      `ONESHOT_CONTROLLER_DEFAULTS` (see `hparams`).
    reward: reward name (`rewards.REWARDS`); "abs" is TuNAS's.
    cost: "flops" or "params", counted analytically at the deploy resolution.
    task: the proxy task. The supernet trains on its data, resolution, proxy width, batch size,
      optimizer and schedule (for `oneshot_epochs`, not task.epochs); the finalists are trained
      and scored on it exactly as multi-trial children.
    oneshot_epochs: passes of the supernet over the proxy's training images.
    oneshot_warmup_fraction: fraction of the steps trained on uniformly sampled paths first.
    oneshot_top_k: most-sampled architectures scored stand-alone besides the most likely one.
    controller_batch: paths sampled, scored and learnt from per controller step.
    final_window_fraction: the last fraction of the steps whose samples count for the top-k.
    checkpoint_every: steps between checkpoints.
    paths_per_step: paths trained per supernet step on the same batch, their gradients averaged.
    path_rule: which paths train after the warm-up (`PATH_RULES`); "sandwich" needs at least 2
      paths per step.
    private_weights: expansion 1 and blocks without their skip keep their own weights in the
      supernet instead of sharing them (`supernet.Sharing`).
    zero_init_residual: blocks that keep their skip start as the identity (`supernet.Sharing`).
  """

  controller: str = "reinforce"
  reward: str = "abs"
  oneshot_epochs: int = 10
  oneshot_warmup_fraction: float = 0.25
  oneshot_top_k: int = 3
  controller_batch: int = 1
  final_window_fraction: float = 0.2
  checkpoint_every: int = 200
  paths_per_step: int = 1
  path_rule: str = "controller"
  private_weights: bool = False
  zero_init_residual: bool = False

  def __post_init__(self):
    # The one-shot checks first, as before the shared config existed: the same error comes first.
    if self.controller not in CONTROLLERS:
      raise FieldError("controller", self.controller, ", ".join(CONTROLLERS),
                       detail=" for a one-shot search")
    if self.cost not in COSTS:
      raise FieldError("cost", self.cost, ", ".join(COSTS), detail=" for a one-shot search")
    if self.task.stem_stride != 2:  # the supernet is built with the reference's stride-2 stem
      raise FieldError("stem_stride", self.task.stem_stride, "2", detail=" for a one-shot search")
    for name in ("oneshot_epochs", "oneshot_top_k", "controller_batch", "checkpoint_every", "paths_per_step"):
      check_int(name, getattr(self, name), 0 if name == "oneshot_top_k" else 1)
    if self.path_rule not in PATH_RULES:
      raise FieldError("path_rule", self.path_rule, ", ".join(PATH_RULES))
    if self.path_rule == "sandwich" and self.paths_per_step < 2:
      raise FieldError("paths_per_step", self.paths_per_step, "an integer >= 2",
                       detail=" with path_rule=sandwich")
    for name in ("private_weights", "zero_init_residual"):
      if not isinstance(getattr(self, name), bool):
        raise FieldError(name, getattr(self, name), "true or false")
    for name in ("oneshot_warmup_fraction", "final_window_fraction"):
      v = getattr(self, name)
      low_ok = v >= 0 if name == "oneshot_warmup_fraction" else v > 0
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low_ok and v < 1 or
                                                                        (name == "final_window_fraction"
                                                                         and v == 1)):
        allowed = "a number in [0, 1)" if name == "oneshot_warmup_fraction" else "a number in (0, 1]"
        raise FieldError(name, v, allowed)
    super().__post_init__()  # the shared checks: space, reward, target, references, seed

  @property
  def hparams(self) -> tuple[tuple[str, Any], ...]:
    """The controller's settings: `ONESHOT_CONTROLLER_DEFAULTS` overridden by the given ones, sorted."""
    merged = dict(ONESHOT_CONTROLLER_DEFAULTS.get(self.controller, ()))
    merged.update(dict(self.controller_hparams))
    return tuple(sorted(merged.items()))

  def search_config(self) -> search_config.SearchConfig:
    """The multi-trial config of the same settings: the finalists are trained and recorded by it."""
    shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(search_config.SharedConfig)}
    return search_config.SearchConfig(
        **dict(shared, controller_hparams=self.hparams), trials=self.oneshot_top_k + 1,
        trials_per_update=1, backend="inline", workers=1)  # finalists train one at a time, here

  def to_params(self) -> dict[str, Any]:
    d = self.search_config().to_params()
    d.update(mode="oneshot", oneshot_epochs=self.oneshot_epochs,
             oneshot_warmup_fraction=self.oneshot_warmup_fraction, oneshot_top_k=self.oneshot_top_k,
             controller_batch=self.controller_batch, final_window_fraction=self.final_window_fraction,
             checkpoint_every=self.checkpoint_every)
    if (self.paths_per_step, self.path_rule) != (1, "controller"):  # an older params.json stays as it is
      d.update(paths_per_step=self.paths_per_step, path_rule=self.path_rule)
    d.update({k: True for k in ("private_weights", "zero_init_residual") if getattr(self, k)})
    return d

  @property
  def sharing(self):
    from mnas_search.search.oneshot import supernet as supernet_lib
    return supernet_lib.Sharing(self.private_weights, self.zero_init_residual)


@dataclasses.dataclass
class OneShotSummary:
  """What a finished `run_oneshot` reports."""

  steps: int
  controller_steps: int
  finalists: list[dict[str, Any]]
  best: dict[str, Any] | None
  references: dict[str, Any]
  wall_seconds: float
  supernet_seconds: float
  finalist_seconds: float


# ----------------------------------------------------------------------------- data
class ArrayFeed:
  """The proxy's images preprocessed once into memory, batched by step number.

  Batch `step` of the training stream is a pure function of (seed, step), so a resumed search
  sees the very batches the killed one would have.

  Args:
    task: the proxy task (dataset, split, resolution, batch size).
    seed: the shuffle seed.
    splits: the task's splits, when already loaded.
  """

  def __init__(self, task: ProxyTask, seed: int, splits: datasets.Splits | None = None):
    splits = splits or evaluation.load_proxy_splits(task)
    self.num_classes = splits.num_classes
    channels = evaluation.proxy_channels(task, splits)
    self.train_x, self.train_y = _materialize(*splits.train, task.resolution, channels)
    self.val_x, self.val_y = _materialize(*splits.val, task.resolution, channels)
    self.batch_size = task.batch_size
    if len(self.val_y) < self.batch_size:
      raise FieldError("val_images", len(self.val_y), f"at least one validation batch (>= "
                       f"batch_size={self.batch_size})", detail=" for a one-shot search")
    self.seed = seed
    self.steps_per_epoch = len(self.train_y) // self.batch_size
    self._perms: dict[tuple[int, int], np.ndarray] = {}

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return tuple(int(v) for v in self.train_x.shape[1:])

  def _perm(self, stream: int, epoch: int, n: int) -> np.ndarray:
    key = (stream, epoch)
    if key not in self._perms:
      if len(self._perms) > 8:
        self._perms.clear()
      self._perms[key] = np.random.default_rng([self.seed, stream, epoch]).permutation(n)
    return self._perms[key]

  def train_batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    epoch, i = divmod(step, self.steps_per_epoch)
    idx = self._perm(0, epoch, len(self.train_y))[i * self.batch_size:(i + 1) * self.batch_size]
    return self.train_x[idx], self.train_y[idx]

  def val_batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
    per_pass = len(self.val_y) // self.batch_size
    epoch, i = divmod(k, per_pass)
    idx = self._perm(1, epoch, len(self.val_y))[i * self.batch_size:(i + 1) * self.batch_size]
    return self.val_x[idx], self.val_y[idx]


def _materialize(images, labels, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
  """The one input pipeline's preprocessing (`datasets.make_dataset`), gathered into arrays."""
  ds = datasets.make_dataset(images, labels, datasets.Pipeline(resolution, 1024, channels=channels))
  xs, ys = [], []
  for x, y in ds:
    xs.append(x.numpy())
    ys.append(y.numpy())
  return np.concatenate(xs), np.concatenate(ys).astype(np.int32)


# ----------------------------------------------------------------------------- controller views
def make_runner(space, task: ProxyTask, feed: ArrayFeed, total_steps: int, seed: int,
                sharing: Any = None) -> Any:
  """The supernet of `space` at the task's width (its weight sharing `sharing`, a
  `supernet.Sharing`; the default shares everything), trained with the proxy child's optimizer
  (its schedule over `total_steps`) and loss, behind its runner."""
  from mnas_search.search.oneshot import runner as runner_lib
  from mnas_search.search.oneshot import supernet as supernet_lib
  net = supernet_lib.make_supernet(space, task.proxy_width, feed.input_shape, feed.num_classes,
                                   bn_momentum=0.99 if task.bn_momentum is None else task.bn_momentum,
                                   seed=seed, sharing=sharing or supernet_lib.Sharing())
  return runner_lib.SupernetRunner(net, recipe.make_optimizer(task, total_steps),
                                   recipe.make_loss(task, feed.num_classes), calib_rows=task.batch_size)


def train_one_path(space, task: ProxyTask, arch: search_space.Architecture) -> tuple[Any, ArrayFeed, Any]:
  """The single-path check's training: the supernet trained along `arch`'s path only, for as long
  as a proxy child (task.epochs). Returns (runner, feed, path), not yet recalibrated."""
  from mnas_search.search.oneshot import supernet as supernet_lib
  feed = ArrayFeed(task, seed=task.seed)
  steps = task.epochs * feed.steps_per_epoch
  runner = make_runner(space, task, feed, steps, task.seed)
  path = supernet_lib.encode_path(space, task.proxy_width, arch)
  for step in range(steps):
    runner.train_step(*feed.train_batch(step), path)
  return runner, feed, path


def extreme_indices(space, largest: bool) -> tuple[int, ...]:
  """The largest (or smallest) network of the space: each numeric decision at its largest (or
  smallest) option; a non-numeric one (skip) at its first."""
  out = []
  for d in space.decisions:
    if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in d.options):
      pick = max if largest else min
      out.append(d.options.index(pick(d.options)))
    else:
      out.append(0)
  return tuple(out)


def most_likely(probabilities: Sequence[Sequence[float]]) -> tuple[int, ...]:
  """The argmax of every decision (the first option on a tie)."""
  return tuple(int(np.argmax(p)) for p in probabilities)


def select_finalists(space, probabilities, counts: dict[str, list[int]], top_k: int) -> list[dict[str, Any]]:
  """The most likely architecture, then the `top_k` distinct ones sampled most (latest first on ties).

  Args:
    space: the search space (to tell architectures apart).
    probabilities: the final policy's `decision_probabilities`.
    counts: {json indices: [times sampled, last step sampled]} over the final window.
    top_k: how many sampled architectures to add.

  Returns:
    [{"trial", "indices", "source" ("most_likely" or "sampled"), "count"}], trials from 0.
  """
  out, seen = [], set()

  def add(indices, source, count):
    key = space.decode(indices).identity()
    if key in seen:
      return
    seen.add(key)
    out.append({"trial": len(out), "indices": list(indices), "source": source, "count": count})

  ml = most_likely(probabilities)
  add(ml, "most_likely", counts.get(json.dumps(list(ml)), [0, 0])[0])
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
  for key, (count, _) in ranked:
    if len(out) >= top_k + 1:
      break
    add(tuple(json.loads(key)), "sampled", count)
  return out


# ----------------------------------------------------------------------------- the search
class OneShotSearch:
  """One one-shot search over one search directory (new or resumed).

  Args:
    search_dir: the search directory.
    config: every setting.
    show_progress: draw progress bars on stderr.
  """

  def __init__(self, search_dir: str, config: OneShotConfig, show_progress: bool = True):
    self.config = config
    # The finalists are trained and recorded as multi-trial children (one record format).
    finalist_config = config.search_config()
    self.store = SearchStore(search_dir)
    self.objective = Objective(finalist_config)
    self.timings = {"children": 0.0, "cost": 0.0, "store": 0.0}
    self.executor = Executor(finalist_config, self.store, self.objective, self.timings)
    self.space = search_space.get_space(config.space)
    self.show_progress = show_progress
    self.ckpt_dir = self.store.path(CHECKPOINT_DIR)
    self.runner = None
    self.feed = None

  # --------------------------------------------------------------------------- set-up
  def make_controller(self):
    return make_controller(self.config.search_config(), self.space.arities)

  def build(self):
    """Loads the data, builds the supernet, its optimizer and the runner."""
    c, task = self.config, self.config.task
    self.feed = ArrayFeed(task, seed=c.seed)
    self.runner = make_runner(self.space, task, self.feed, self.total_steps, c.seed, c.sharing)
    return self.runner

  @property
  def total_steps(self) -> int:
    return self.config.oneshot_epochs * self.feed.steps_per_epoch

  def path(self, indices) -> dict[str, np.ndarray]:
    from mnas_search.search.oneshot import supernet as supernet_lib
    return supernet_lib.encode_path(self.space, self.config.task.proxy_width, self.space.decode(indices))

  # --------------------------------------------------------------------------- checkpoints
  def _save(self, ctrl, state: dict[str, Any]) -> None:
    def write(folder):
      self.runner.save_weights(os.path.join(folder, "weights.npz"))
      fileio.atomic_write_json(os.path.join(folder, "state.json"), state)
      ctrl.save(os.path.join(folder, "controller"))
    controller_base.write_checkpoint(self.ckpt_dir, write)

  def _restore(self, ctrl) -> dict[str, Any] | None:
    folder = controller_base.latest_checkpoint(self.ckpt_dir) if os.path.isdir(self.ckpt_dir) else None
    if folder is None:
      return None
    self.runner.load_weights(os.path.join(folder, "weights.npz"))
    if not ctrl.restore(os.path.join(folder, "controller")):
      raise ValueError(f"{folder!r} has no controller checkpoint; the one-shot checkpoint is corrupt")
    return fileio.read_json(os.path.join(folder, "state.json"))

  # --------------------------------------------------------------------------- phase 1: supernet
  def train_supernet(self, board) -> tuple[Any, dict[str, Any]]:
    """Runs (or resumes, or skips when done) the alternating loop; returns (controller, state)."""
    c = self.config
    ctrl = self.make_controller()
    self.build()
    total = self.total_steps
    warmup = int(c.oneshot_warmup_fraction * total)
    window_start = total - max(1, int(math.ceil(c.final_window_fraction * total)))
    state = self._restore(ctrl)
    if state is None:
      state = {"step": 0, "controller_steps": 0, "rng": np.random.default_rng([c.seed, 7]).bit_generator.state,
               "counts": {}, "supernet_seconds": 0.0, "total_steps": total}
    elif state["total_steps"] != total:
      raise ValueError(f"the checkpoint in {self.ckpt_dir!r} is of a {state['total_steps']}-step run; "
                       f"this one has {total} steps")
    else:
      logging.info("one-shot: resuming at step %d of %d", state["step"], total)
    # Records past the checkpoint are redone: cut the log back to it.
    log_path = self.store.path(ONESHOT_LOG)
    fileio.repair_jsonl(log_path)
    kept = [r for r in fileio.read_jsonl(log_path) if r["step"] < state["step"]]
    if os.path.isfile(log_path):
      fileio.atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    counts = state["counts"]
    progress = Progress(total=total, done=state["step"], enabled=self.show_progress, label="steps")
    t_last = time.perf_counter()
    for step in range(state["step"], total):
      x, y = self.feed.train_batch(step)
      paths = [self.path(i) for i in self.training_paths(ctrl, rng, step < warmup)]
      loss, train_acc = self.runner.train_step_paths(x, y, paths)
      if not math.isfinite(loss):
        raise FloatingPointError(f"the supernet's training loss became {loss} at step {step}; lower "
                                 "the proxy's learning rate")
      if step >= warmup:
        rec = self._controller_step(ctrl, step, state["controller_steps"], x, counts, step >= window_start)
        rec.update(loss=loss, train_accuracy=train_acc)
        fileio.append_jsonl(log_path, rec)
        board.scalars("oneshot", state["controller_steps"],
                      {k: rec[k] for k in ("entropy", "reward", "accuracy", "cost", "loss")})
        state["controller_steps"] += 1
      faults.kill_point("oneshot_step")
      progress.advance()
      if (step + 1) % c.checkpoint_every == 0 or step + 1 == total:
        now = time.perf_counter()
        state.update(step=step + 1, rng=rng.bit_generator.state, counts=counts,
                     supernet_seconds=state["supernet_seconds"] + now - t_last)
        t_last = now
        self._save(ctrl, state)
        board.flush()
        faults.kill_point("oneshot_checkpoint_saved")
    progress.close()
    return ctrl, state

  def training_paths(self, ctrl, rng: np.random.Generator, warming_up: bool) -> list[tuple[int, ...]]:
    """The decisions of the paths one supernet step trains (`path_rule`, `paths_per_step`)."""
    c = self.config
    n = c.paths_per_step
    if warming_up or c.path_rule == "uniform":
      return [tuple(self.space.sample_indices(rng)) for _ in range(n)]
    if c.path_rule == "controller":
      return [tuple(s.indices) for s in ctrl.sample(n)]
    return [extreme_indices(self.space, largest=True), extreme_indices(self.space, largest=False)] + [
        tuple(self.space.sample_indices(rng)) for _ in range(n - 2)]

  def _controller_step(self, ctrl, step: int, cstep: int, x_calib, counts, in_window: bool) -> dict:
    c = self.config
    samples = ctrl.sample(c.controller_batch)
    rewards, accs, costs = [], [], []
    for i, s in enumerate(samples):
      arch = self.space.decode(s.indices)
      x_val, y_val = self.feed.val_batch(cstep * c.controller_batch + i)
      acc = self.runner.score(x_calib, x_val, y_val, self.path(s.indices))
      cost = self.objective.cost_of(arch).cost
      rewards.append(self.objective.reward("ok", acc, cost))
      accs.append(acc)
      costs.append(cost)
      if in_window:
        key = json.dumps(list(s.indices))
        seen = counts.setdefault(key, [0, step])
        seen[0] += 1
        seen[1] = step
    metrics = ctrl.update(samples, rewards)
    probs = ctrl.decision_probabilities()
    return {"step": step, "controller_step": cstep, "entropy": float(metrics["entropy"]),
            "reward": float(np.mean(rewards)), "accuracy": float(np.mean(accs)),
            "cost": float(np.mean(costs)), "indices": [list(s.indices) for s in samples],
            "probabilities": [[round(v, 5) for v in p] for p in probs]}

  # --------------------------------------------------------------------------- phase 2: finalists
  def finalists(self, board) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The finalists (finalists.json, written once at the end of the supernet phase) and state."""
    path = self.store.path(FINALISTS)
    if os.path.isfile(path):
      saved = fileio.read_json(path)
      return saved["finalists"], saved["state"]
    ctrl, state = self.train_supernet(board)
    finalists = select_finalists(self.space, ctrl.decision_probabilities(), state["counts"],
                                 self.config.oneshot_top_k)
    summary = {k: state[k] for k in ("step", "controller_steps", "supernet_seconds", "total_steps")}
    summary["controller_updates"] = ctrl.num_updates
    fileio.atomic_write_json(path, {"finalists": finalists, "state": summary})
    return finalists, summary

  def run(self) -> OneShotSummary:
    c = self.config
    t_start = time.perf_counter()
    store = self.store
    self.make_controller()  # a bad hparam is refused before anything is written
    store.repair()
    store.write_or_check_params(c.to_params(), search_lib.MAY_CHANGE_ON_RESUME + MAY_CHANGE_ON_RESUME)
    board = Board(store.tb_dir)
    finalists, state = self.finalists(board)
    self.runner = None  # the supernet is no longer needed; free it before training children
    t_children = time.perf_counter()
    records = store.read_trials()
    by_trial = {r["trial"]: r for r in records}
    best = store.read_best()
    progress = Progress(total=len(finalists), done=len(by_trial), enabled=self.show_progress)
    if best:
      progress.best = best["reward"]
    update = max(0, state.get("controller_updates", 0) - 1)
    # Stored as multi-trial children are: same records, best.json, TensorBoard and log lines.
    items = [(f["trial"], self.space.decode(f["indices"], name=f"oneshot-{f['trial']}"), f["indices"])
             for f in finalists]
    refs = self.executor.train_given(items, update, Recorder(store, TrialIndex(by_trial), board, progress, self.timings))
    ok = [r for r in by_trial.values() if r["status"] == "ok"]
    pareto_lib.update_pareto_file(store.path("pareto.json"), ok)
    progress.close()
    board.close()
    return OneShotSummary(steps=state["step"], controller_steps=state["controller_steps"],
                          finalists=[by_trial[f["trial"]] for f in finalists if f["trial"] in by_trial],
                          best=store.read_best(), references=refs,
                          wall_seconds=time.perf_counter() - t_start,
                          supernet_seconds=float(state["supernet_seconds"]),
                          finalist_seconds=time.perf_counter() - t_children)


def run_oneshot(search_dir: str, config: OneShotConfig, show_progress: bool = True) -> OneShotSummary:
  """Runs (or resumes) a one-shot search into `search_dir`; see the module docstring."""
  return OneShotSearch(search_dir, config, show_progress=show_progress).run()
