"""The EfficientNet paper's step 1: a grid search of α, β, γ at φ=1 under α·β²·γ² ≈ 2.

Each candidate (α, β, γ) scales the baseline by depth α, width β and resolution γ (FLOPs grow by
about α·β²·γ² = 2), and is scored by training it on the proxy task through the same backends as
the search. The best triple is written as coefficients.json, which `launch.py scale
--family=compound --coefficients=...` (and `family.load_coefficients`) reads.

Resolution of a candidate while it trains on the proxy: the proxy resolution times γ, rounded to
the nearest integer (half up), at least 8 (`proxy_resolution`). At the small proxy resolutions
(16 to 64 pixels) rounding to a multiple of 8 would make most γ of the grid identical, so the
proxy uses integer rounding. Its deploy cost is counted as `scale --family=compound --phi=1`
builds it: the baseline's own resolution times γ, rounded to a multiple of 8.

Every candidate is trained with the same seed (the task's), so that the candidates differ only
in α, β, γ and not in their initialization or data order.

The output directory:
  params.json        every setting, written once; a resume with conflicting settings is refused
  grid.jsonl         one JSON object per scored candidate, appended and flushed
  grid.json          every candidate, sorted by accuracy, and the best (written atomically)
  table.txt          the printed table
  coefficients.json  the best triple: {"alpha", "beta", "gamma", ...}
  grid.png           accuracy per candidate, the paper's (1.2, 1.1, 1.15) marked
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from fractions import Fraction
from typing import Any, Sequence

from absl import logging

import search_space
from mnas_search.execution import backends as backends_lib
from mnas_search.execution.resumable import EXECUTION_FIELDS, RunOptions, run_resumable
from mnas_search.runs.records import GridRecord, finite_accuracy
from mnas_search.runs.rundir import RunDir
from mnas_search.training.proxy import ProxyTask
from mnas_search.util import figures, fileio
from mnas_search.util.progress import Progress
from nas_common import FieldError, check_int
from search_space import Architecture

PAPER_TRIPLE = (search_space.PAPER_ALPHA, search_space.PAPER_BETA, search_space.PAPER_GAMMA)
TARGET_PRODUCT = 2  # α·β²·γ² at φ=1: FLOPs double per unit of φ
MAX_VALUES_PER_AXIS = 1000
MIN_RESOLUTION = 8
LOG = "grid.jsonl"
PROXY_RESOLUTION_RULE = ("round(proxy_resolution * gamma) to the nearest integer (half up), at "
                         f"least {MIN_RESOLUTION}")
DEPLOY_RESOLUTION_RULE = "round(baseline resolution * gamma / 8) * 8, as scale --family=compound"

Triple = tuple[float, float, float]


# ----------------------------------------------------------------------------- the grid (pure)
def _exact(value: float) -> Fraction:
  """The decimal a user wrote (0.05, not 0.05000000000000000277)."""
  return Fraction(repr(float(value)))


def grid_values(low: float, high: float, step: float, field: str = "range") -> list[float]:
  """low, low+step, … up to high inclusive, as exact decimals (no float drift)."""
  for name, v in ((field, low), (field, high), ("grid_step", step)):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
      raise FieldError(name, v, "a finite number")
  if not step > 0:
    raise FieldError("grid_step", step, "a number > 0")
  if not 1.0 <= low <= high:
    raise FieldError(field, (low, high), "LOW,HIGH with 1.0 <= LOW <= HIGH (scaling up never "
                     "shrinks a dimension)")
  lo, hi, st = _exact(low), _exact(high), _exact(step)
  count = int((hi - lo) / st) + 1  # exact: a high on the grid is included
  if count > MAX_VALUES_PER_AXIS:
    raise FieldError("grid_step", step, f"at most {MAX_VALUES_PER_AXIS} values (a larger step or a "
                     "narrower range)", reason=f"gives {count} values of {field} in [{low}, {high}]")
  return [float(lo + k * st) for k in range(count)]


def constraint_product(alpha: float, beta: float, gamma: float) -> float:
  """α·β²·γ², computed exactly on the decimals and then rounded to a float."""
  return float(_exact(alpha) * _exact(beta) ** 2 * _exact(gamma) ** 2)


def enumerate_grid(step: float = 0.05, alpha_range: Sequence[float] = (1.0, 1.5),
                   beta_range: Sequence[float] = (1.0, 1.3),
                   gamma_range: Sequence[float] = (1.0, 1.3),
                   tolerance: float = 0.1) -> list[Triple]:
  """Every (α, β, γ) on the grid with |α·β²·γ² − 2| <= tolerance.

  Args:
    step: the grid step of all three axes.
    alpha_range, beta_range, gamma_range: (low, high), inclusive, each 1.0 <= low <= high.
    tolerance: how far α·β²·γ² may be from 2 (>= 0). The test is exact on the decimals, so a
      triple exactly at the tolerance is kept.

  Returns:
    The triples in order of α, then β, then γ; values are exact decimals (1.15, not
    1.1500000000000001).

  Raises:
    ValueError: a bad step, range or tolerance, naming it.
  """
  ranges = {}
  for field, r in (("alpha_range", alpha_range), ("beta_range", beta_range),
                   ("gamma_range", gamma_range)):
    if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) != 2:
      raise FieldError(field, r, "two numbers LOW,HIGH")
    ranges[field] = grid_values(r[0], r[1], step, field)
  if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
      math.isfinite(tolerance) and tolerance >= 0):
    raise FieldError("grid_tolerance", tolerance, "a finite number >= 0")
  tol = _exact(tolerance)
  return [(a, b, g) for a in ranges["alpha_range"] for b in ranges["beta_range"]
          for g in ranges["gamma_range"]
          if abs(_exact(a) * _exact(b) ** 2 * _exact(g) ** 2 - TARGET_PRODUCT) <= tol]


def proxy_resolution(resolution: int, gamma: float) -> int:
  """The proxy resolution of a candidate: resolution·γ to the nearest integer, half up, >= 8."""
  return max(MIN_RESOLUTION, math.floor(resolution * _exact(gamma) + Fraction(1, 2)))


def scaled_candidate(baseline: Architecture, triple: Triple) -> Architecture:
  """The baseline at φ=1 of (α, β, γ): depth α, width β, resolution round8(res₀·γ)."""
  alpha, beta, gamma = triple
  m = search_space.compound_member(1, alpha, beta, gamma, base_resolution=baseline.resolution)
  # Dropout stays the baseline's, so that candidates differ only in α, β, γ.
  return search_space.scale(baseline, width=m.width, depth=m.depth, resolution=m.resolution,
                            name=f"{baseline.name}-a{alpha:g}-b{beta:g}-g{gamma:g}")


# ----------------------------------------------------------------------------- the run
@dataclasses.dataclass(frozen=True)
class GridConfig:
  """What a grid search scores; written to params.json.

  Attributes:
    baseline: the network to scale (φ=0).
    task: the proxy task; each candidate trains at `proxy_resolution(task.resolution, γ)`.
    step: the grid step of α, β and γ.
    alpha_range, beta_range, gamma_range: (low, high) of each coefficient, inclusive.
    tolerance: |α·β²·γ² − 2| allowed.
    num_classes: classifier outputs at which the deploy FLOPs and params are counted.
    deterministic: TF op determinism for each child (bit-identical reruns).
  """

  baseline: Architecture
  task: ProxyTask = dataclasses.field(default_factory=ProxyTask)
  step: float = 0.05
  alpha_range: tuple[float, float] = (1.0, 1.5)
  beta_range: tuple[float, float] = (1.0, 1.3)
  gamma_range: tuple[float, float] = (1.0, 1.3)
  tolerance: float = 0.1
  num_classes: int = 1000
  deterministic: bool = False

  def __post_init__(self):
    if not isinstance(self.baseline, Architecture):
      raise ValueError(f"baseline={self.baseline!r} is invalid; allowed: an Architecture")
    if not isinstance(self.task, ProxyTask):
      raise ValueError(f"task={self.task!r} is invalid; allowed: a ProxyTask")
    check_int("num_classes", self.num_classes, 1)
    if not self.candidates():
      raise FieldError(
          "grid_tolerance", self.tolerance, "wider ranges or a larger tolerance",
          reason=f"leaves no triple with |alpha*beta^2*gamma^2 - 2| <= {self.tolerance} in the grid "
          f"(grid_step={self.step}, alpha_range={list(self.alpha_range)}, beta_range="
          f"{list(self.beta_range)}, gamma_range={list(self.gamma_range)})")

  def candidates(self) -> list[Triple]:
    return enumerate_grid(self.step, self.alpha_range, self.beta_range, self.gamma_range,
                          self.tolerance)

  def to_params(self) -> dict[str, Any]:
    return {"baseline": self.baseline.to_dict(), "task": self.task.to_dict(),
            "grid_step": self.step, "alpha_range": list(self.alpha_range),
            "beta_range": list(self.beta_range), "gamma_range": list(self.gamma_range),
            "grid_tolerance": self.tolerance, "phi": 1, "num_classes": self.num_classes,
            "deterministic": self.deterministic, "proxy_resolution_rule": PROXY_RESOLUTION_RULE,
            "deploy_resolution_rule": DEPLOY_RESOLUTION_RULE}


@dataclasses.dataclass
class GridSummary:
  """What `run_grid` reports.

  Attributes:
    rows: every scored candidate, best accuracy first (see `rank_rows`).
    best: the best candidate with status ok, or None when none trained.
    paper: the row of the paper's (1.2, 1.1, 1.15), or None when it is not in this grid.
    trained: candidates trained by this run (the others were read from grid.jsonl).
    files: what was written, by kind.
    wall_seconds: this run's wall time.
  """

  rows: list[dict[str, Any]]
  best: dict[str, Any] | None
  paper: dict[str, Any] | None
  trained: int
  files: dict[str, str]
  wall_seconds: float


def candidate_record(index: int, triple: Triple, arch: Architecture, task: ProxyTask,
                     baseline_flops: int, num_classes: int, result: Any) -> dict[str, Any]:
  """One grid.jsonl line: the triple, the scaled network's deploy cost and its proxy score."""
  flops = search_space.count_flops(arch, arch.resolution, num_classes)
  return GridRecord(
      candidate=index, alpha=triple[0], beta=triple[1], gamma=triple[2],
      product=round(constraint_product(*triple), 6), width=arch.width_coefficient,
      depth=arch.depth_coefficient, proxy_resolution=task.resolution,
      deploy_resolution=arch.resolution, flops=int(flops),
      flops_ratio=round(flops / baseline_flops, 4),
      params=int(search_space.count_params(arch, num_classes)),
      # a failed candidate scores 0 whatever it reported
      accuracy=finite_accuracy(0.0 if result.status == "failed" else result.accuracy),
      status=result.status, error=result.error, train_seconds=float(result.train_seconds),
      images_per_sec=float(result.images_per_sec), proxy_flops=int(result.proxy_flops),
      proxy_params=int(result.proxy_params), seed=int(result.seed)).to_json()


def rank_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Status ok first, then by accuracy (highest first), then by candidate number."""
  return sorted(records, key=lambda r: (r["status"] != "ok", -r["accuracy"], r["candidate"]))


def is_paper_triple(row: dict[str, Any]) -> bool:
  return (row["alpha"], row["beta"], row["gamma"]) == PAPER_TRIPLE


def format_table(rows: Sequence[dict[str, Any]], baseline_name: str = "") -> str:
  """The printed table, one row per candidate in the given order; the paper's triple marked."""
  title = f"grid search at phi=1{' of ' + baseline_name if baseline_name else ''}: "
  lines = [title + f"{len(rows)} candidates, best validation accuracy first "
           "(* = the paper's alpha=1.2, beta=1.1, gamma=1.15)",
           f"{'rank':>4}  {'alpha':>6} {'beta':>6} {'gamma':>6} {'a*b^2*g^2':>9} {'res':>4} "
           f"{'FLOPs x':>7} {'accuracy':>8}  {'status':<7} {'seconds':>7}"]
  for i, r in enumerate(rows):
    mark = " *" if is_paper_triple(r) else ""
    lines.append(f"{i + 1:>4}  {r['alpha']:>6g} {r['beta']:>6g} {r['gamma']:>6g} "
                 f"{r['product']:>9.4f} {r['proxy_resolution']:>4} {r['flops_ratio']:>7.3f} "
                 f"{r['accuracy']:>8.4f}  {r['status']:<7} {r['train_seconds']:>7.1f}{mark}")
  return "\n".join(lines)


def plot_grid(rows: Sequence[dict[str, Any]], path: str, baseline_name: str = "") -> str:
  """Accuracy per candidate (best first); the paper's triple and the best one marked."""
  n = len(rows)
  width = max(figures.FIGSIZE[0], 0.22 * n + 2)  # room for one rotated label per candidate
  plt, fig, ax = figures.figure((width, figures.FIGSIZE[1]))
  # Points, not bars: candidates differ by a few points, so the axis does not start at 0.
  styles = (("ok", "o", "tab:blue", "candidate"),
            ("failed", "x", "tab:gray", "failed, accuracy 0"),
            ("timeout", "x", "tab:orange", "timed out"))
  for status, marker, color, label in styles:
    xs = [i for i, r in enumerate(rows) if r["status"] == status and not is_paper_triple(r)]
    if xs:
      ax.scatter(xs, [100 * rows[i]["accuracy"] for i in xs], marker=marker, color=color, s=36,
                 label=f"{label} ({len(xs)})", zorder=3)
  paper = [i for i, r in enumerate(rows) if is_paper_triple(r)]
  if paper:
    ax.scatter(paper, [100 * rows[paper[0]]["accuracy"]], marker="*", s=260, color="tab:red",
               edgecolor="black", zorder=4, label="paper's α=1.2, β=1.1, γ=1.15")
  if rows and rows[0]["status"] == "ok":
    ax.scatter([0], [100 * rows[0]["accuracy"]], marker="o", s=260, facecolor="none",
               edgecolor="black", lw=1.5, zorder=5, label="best")
  ax.set_xticks(range(n), [f"{r['alpha']:g}/{r['beta']:g}/{r['gamma']:g}" for r in rows],
                rotation=90, fontsize=7 if n > 30 else 8)
  ax.margins(x=0.5 / max(n, 1) + 0.02, y=0.15)
  ax.set_xlabel("Candidate α / β / γ (depth / width / resolution), best first")
  ax.set_ylabel("Proxy validation accuracy (%)")
  ax.set_title(f"Grid search at φ=1{' of ' + baseline_name if baseline_name else ''}: "
               f"{n} candidates with α·β²·γ² ≈ 2")
  ax.grid(alpha=0.3)
  ax.legend(loc="best")
  return figures.save_figure(plt, fig, path)


def read_records(path: str, candidates: Sequence[Triple]) -> dict[int, dict[str, Any]]:
  """grid.jsonl by candidate number, each checked against the grid of params.json."""
  out = {}
  for i, r in enumerate(fileio.read_jsonl(path)):
    c = r.get("candidate") if isinstance(r, dict) else None
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(candidates) or \
        (r.get("alpha"), r.get("beta"), r.get("gamma")) != candidates[c]:
      raise ValueError(f"{path!r} record {i + 1} does not belong to this grid (candidate "
                       f"{c!r}); was the file edited by hand?")
    out[c] = GridRecord.from_json(r, f"{path} record {i + 1}").to_json()
  return out


def run_grid(out_dir: str, config: GridConfig, options: RunOptions | None = None) -> GridSummary:
  """Scores every candidate of the grid on the proxy (or resumes), then writes the results.

  Args:
    out_dir: the output directory (created if missing; an existing grid there is resumed).
    config: the grid and the proxy task.
    options: where and how candidates train (inline when None); `on_record` hears of each
      stored record.

  Returns:
    The summary; the files are listed in its `files`.

  Raises:
    ValueError: out_dir holds a grid with other settings, or a malformed grid.jsonl.
  """
  started = time.perf_counter()
  rundir = RunDir(out_dir, "grid")
  with rundir.lock():  # one process per directory
    return _run_grid(rundir, config, options or RunOptions(), started)


def _run_grid(rundir: RunDir, config: GridConfig, options: RunOptions, started: float) -> GridSummary:
  out_dir = rundir.directory
  rundir.write_or_check_params(config.to_params(), EXECUTION_FIELDS)
  rundir.repair(LOG)
  candidates = config.candidates()
  done = read_records(rundir.path(LOG), candidates)
  jobs, planned = _plan(config, candidates, done, options.strategy, options.tpu)
  logging.info("grid: %d candidates, %d already scored, %d to train", len(candidates), len(done),
               len(jobs))
  progress = Progress(total=len(candidates), done=len(done), enabled=options.show_progress,
                      label="candidates", every=1)
  baseline_flops = search_space.count_flops(config.baseline, config.baseline.resolution,
                                            config.num_classes)

  def to_record(job, result):
    triple, arch = planned[job.trial]
    return candidate_record(job.trial, triple, arch, job.task, baseline_flops, config.num_classes,
                            result)

  def stored(rec):
    done[rec["candidate"]] = rec
    logging.info("candidate %d  alpha %g beta %g gamma %g  %s  accuracy %.4f  %.1fs",
                 rec["candidate"], rec["alpha"], rec["beta"], rec["gamma"], rec["status"],
                 rec["accuracy"], rec["train_seconds"])
    if rec["status"] == "ok" and (progress.best is None or rec["accuracy"] > progress.best):
      progress.best = rec["accuracy"]
    if options.on_record:
      options.on_record(rec)

  run_resumable(rundir, LOG, jobs, to_record, options.backend, stored, progress)
  progress.close()
  summary = write_results(out_dir, list(done.values()), config.baseline.name)
  summary.trained = len(jobs)
  summary.wall_seconds = time.perf_counter() - started
  return summary


def _plan(config: GridConfig, candidates: Sequence[Triple], done: dict[int, Any], strategy: str,
          tpu: str | None) -> tuple[list[backends_lib.Job], dict[int, tuple[Triple, Architecture]]]:
  """The jobs of the candidates grid.jsonl does not hold yet, and (triple, arch) by candidate."""
  jobs, planned = [], {}
  for i, triple in enumerate(candidates):
    if i in done:
      continue
    arch = scaled_candidate(config.baseline, triple)
    task = config.task.replace(resolution=proxy_resolution(config.task.resolution, triple[2]))
    planned[i] = (triple, arch)
    jobs.append(backends_lib.Job(trial=i, arch=arch, task=task, seed=config.task.seed,
                                 deterministic=config.deterministic, strategy=strategy, tpu=tpu))
  return jobs, planned


def write_results(out_dir: str, records: Sequence[dict[str, Any]],
                  baseline_name: str = "") -> GridSummary:
  """Writes grid.json, table.txt, grid.png and (when a candidate trained) coefficients.json."""
  rows = rank_rows(records)
  best = rows[0] if rows and rows[0]["status"] == "ok" else None
  paper = next((r for r in rows if is_paper_triple(r)), None)
  files = {"params": os.path.join(out_dir, "params.json"),
           "records": os.path.join(out_dir, "grid.jsonl"),
           "summary": os.path.join(out_dir, "grid.json"),
           "table": os.path.join(out_dir, "table.txt")}
  fileio.atomic_write_json(files["summary"], {
      "baseline": baseline_name, "candidates": len(rows),
      "best": best, "paper": paper,
      "paper_rank": rows.index(paper) + 1 if paper is not None else None, "rows": rows})
  fileio.atomic_write_text(files["table"], format_table(rows, baseline_name) + "\n")
  if best is not None:
    files["coefficients"] = os.path.join(out_dir, "coefficients.json")
    fileio.atomic_write_json(files["coefficients"], {
        "alpha": best["alpha"], "beta": best["beta"], "gamma": best["gamma"],
        "accuracy": best["accuracy"], "product": best["product"], "candidate": best["candidate"],
        "baseline": baseline_name,
        "source": "grid search at phi=1 under alpha*beta^2*gamma^2 ~= 2 (launch.py grid)"})
  files["plot"] = plot_grid(rows, os.path.join(out_dir, "grid.png"), baseline_name)
  return GridSummary(rows=rows, best=best, paper=paper, trained=0, files=files, wall_seconds=0.0)
