"""Reads a search directory and writes its plots (PNG) and a Markdown summary.

The files are read through `mnas_search.runs.records` and `mnas_search.runs.rundir`: tolerant of the
optional files (params.json, references.json, updates.jsonl, a family's metrics.json) being
absent, and strict about malformed content: a bad record raises ValueError naming the file, the
record, the field and the value. Matplotlib is imported inside the
plotting functions (Agg backend), so reading a search never pays for it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Sequence

import rewards
from mnas_search.analysis.oneshot_plot import write_oneshot_plot
from mnas_search.runs import records as records_lib
from mnas_search.runs.rundir import read_params
from mnas_search.search import pareto
from mnas_search.util import figures, fileio

REFERENCE_NAMES = ("efficientnet-b0", "mnasnet-a1")
COST_TARGETS = rewards.COST_TARGETS


def usable_reference(ref: dict[str, Any]) -> bool:
  """A reference scored successfully (references.json keeps failed ones too, with their status)."""
  return ref.get("status", "ok") in pareto.FRONT_STATUSES and ref.get("accuracy") is not None


def search_target(params: dict[str, Any]) -> tuple[str, float | None]:
  """(cost kind, target T) of the search's reward from params.json; T is None when not recorded."""
  cost = params.get("cost", "flops")
  if cost not in COST_TARGETS:
    raise ValueError(f"params.json: cost={cost!r} is invalid; allowed: {list(COST_TARGETS)}")
  key = COST_TARGETS[cost][0]
  records_lib.require_number("params.json", params, key, optional=True)
  return cost, params.get(key)


def status_counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
  counts = {s: 0 for s in records_lib.STATUSES}
  for r in records:
    counts[r["status"]] += 1
  return counts


# ----------------------------------------------------------------------------- plots
def plot_reward(records: Sequence[dict[str, Any]], path: str, reward_name: str = "") -> str:
  """Reward of every trial in trial order, failed ones marked, and the best-so-far line."""
  from matplotlib.ticker import MaxNLocator
  plt, fig, ax = figures.figure()
  ordered = sorted(records, key=lambda r: r["trial"])
  styles = {"ok": ("o", "tab:blue", "ok"), "cached": ("s", "tab:cyan", "cached repeat"),
            "failed": ("x", "tab:red", "failed, reward 0"),
            "timeout": ("x", "tab:orange", "timeout, reward 0")}
  for status, (marker, color, label) in styles.items():
    rs = [r for r in ordered if r["status"] == status]
    if rs:
      ax.scatter([r["trial"] for r in rs], [r["reward"] for r in rs], marker=marker, color=color,
                 s=22, alpha=0.8, label=f"{label} ({len(rs)})")
  best, best_so_far = -math.inf, []
  for r in ordered:
    best = max(best, r["reward"])
    best_so_far.append(best)
  ax.step([r["trial"] for r in ordered], best_so_far, where="post", color="black", lw=1.5,
          label="best so far")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("Trial (in order of sampling)")
  ax.set_ylabel(f"Reward{f', {reward_name}' if reward_name else ''} (unitless)")
  ax.set_title(f"Reward over {len(ordered)} trials")
  ax.grid(alpha=0.3)
  ax.legend(loc="center right")  # successes sit high and failures at 0: the middle is free
  return figures.save_figure(plt, fig, path)


def plot_rungs(rung_records: Sequence[dict[str, Any]], path: str) -> str:
  """A multi-fidelity search: each child's reward against the budget it was trained to, a line
  joining the records of one child (promoted children climb; stopped ones end low)."""
  plt, fig, ax = figures.figure()
  by_trial: dict[int, list[dict[str, Any]]] = {}
  for r in rung_records:
    by_trial.setdefault(r["trial"], []).append(r)
  for rs in by_trial.values():
    rs.sort(key=records_lib.budget_of)
    ax.plot([r["budget"] for r in rs], [r["reward"] for r in rs], color="tab:blue", alpha=0.35, lw=0.8,
            marker="o", ms=3)
  budgets = sorted({r["budget"] for r in rung_records})
  ax.set_xscale("log")
  ax.set_xticks(budgets, [str(b) for b in budgets])
  ax.minorticks_off()
  ax.set_xlabel("Budget (proxy epochs, or steps; log scale)")
  ax.set_ylabel("Reward (unitless)")
  ax.set_title(f"Rungs: {len(by_trial)} children, {len(rung_records)} records")
  ax.grid(alpha=0.3)
  return figures.save_figure(plt, fig, path)


def rung_lines(rung_records: Sequence[dict[str, Any]]) -> list[str]:
  """The summary's table of a multi-fidelity search: records and the best reward per budget."""
  lines = ["## Rungs", "", "| budget | children | ok | best reward |", "|---:|---:|---:|---:|"]
  for b in sorted({r["budget"] for r in rung_records}):
    rs = [r for r in rung_records if r["budget"] == b]
    ok = [r["reward"] for r in rs if r["status"] in ("ok", "cached")]
    lines.append(f"| {b} | {len(rs)} | {len(ok)} | {_fmt(max(ok) if ok else None, '.4f')} |")
  return lines + [""]


def plot_accuracy_flops(records: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]],
                        path: str, target_flops: float | None = None,
                        references: dict[str, dict[str, Any]] | None = None,
                        cost_resolution: int | None = None) -> str:
  """Validation accuracy against deploy FLOPs: all trials, the front, the target and references."""
  plt, fig, ax = figures.figure()
  ok = pareto.eligible(records)
  ax.scatter([r["flops"] / 1e6 for r in ok], [100 * r["accuracy"] for r in ok], s=18,
             color="tab:blue", alpha=0.45, label=f"trials ({len(ok)})")
  if front:
    ax.scatter([r["flops"] / 1e6 for r in front], [100 * r["accuracy"] for r in front], s=50,
               facecolor="none", edgecolor="tab:red", lw=1.5, zorder=4,
               label=f"Pareto front over accuracy, FLOPs, params ({len(front)})")
    # The front of this plane alone is a staircase; with params in play, the circles need not lie on it.
    plane = pareto.pareto_front(records, objectives=(("accuracy", "max"), ("flops", "min")))
    ax.step([r["flops"] / 1e6 for r in plane], [100 * r["accuracy"] for r in plane], where="post",
            color="tab:red", lw=1.2, label="Pareto front over accuracy, FLOPs")
  if target_flops:
    ax.axvline(target_flops / 1e6, color="gray", ls="--", lw=1.2,
               label=f"target T = {target_flops / 1e6:g}M")
  markers = {"efficientnet-b0": ("*", "tab:green"), "mnasnet-a1": ("P", "tab:purple")}
  for name, ref in (references or {}).items():
    if not usable_reference(ref) or ref.get("flops") is None:
      continue
    marker, color = markers.get(name, ("D", "tab:brown"))
    ax.scatter([ref["flops"] / 1e6], [100 * ref["accuracy"]], marker=marker, s=180, color=color,
               edgecolor="black", zorder=5, label=f"{name} (same proxy)")
  size = f"{cost_resolution}×{cost_resolution} " if cost_resolution else ""
  ax.set_xlabel(f"Deploy FLOPs (millions of multiply-adds per {size}image)")
  ax.set_ylabel("Validation accuracy (%)")
  ax.set_title("Validation accuracy vs. deploy FLOPs")
  ax.grid(alpha=0.3)
  # Outside the axes: trials fill the whole plane, and the references must never be hidden.
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
  return figures.save_figure(plt, fig, path)


def plot_controller(updates: Sequence[dict[str, Any]], path: str) -> str:
  """The controller's policy entropy and the mean reward of each update's batch."""
  from matplotlib.ticker import MaxNLocator
  plt, fig, ax = figures.figure()
  xs = [u["update"] for u in updates]
  lines = []
  ent = [(u["update"], u["entropy"]) for u in updates if u.get("entropy") is not None]
  if ent:
    lines += ax.plot(*zip(*ent), "-o", ms=3, color="tab:blue", label="policy entropy")
    ax.set_ylabel("Policy entropy (nats, summed over decisions)", color="tab:blue")
  rew = [(u["update"], u["mean_reward"]) for u in updates if u.get("mean_reward") is not None]
  if rew:
    ax2 = ax.twinx()
    lines += ax2.plot(*zip(*rew), "-s", ms=3, color="tab:orange", label="mean reward of the batch")
    ax2.set_ylabel("Mean reward (unitless)", color="tab:orange")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("Controller update")
  ax.set_title(f"Controller over {len(xs)} updates")
  ax.grid(alpha=0.3)
  if lines:
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
  return figures.save_figure(plt, fig, path)


def plot_family(family: dict[str, Any], path: str) -> str:
  """FLOPs per member against the baseline·2^φ rule, and accuracy per member where measured."""
  from matplotlib.ticker import FuncFormatter
  plt, fig, (ax1, ax2) = figures.figure(figures.FAMILY_FIGSIZE, ncols=2)
  plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 1, 20 rather than 5×10⁻¹, 10⁰, 2×10¹
  members = family["members"]
  names = [m["name"] for m in members]
  # Tick labels without the shared prefix ("efficientnet-"), so that they fit unrotated.
  prefix = os.path.commonprefix(names)
  prefix = prefix[:prefix.rfind("-") + 1] if len(names) > 1 else ""
  xs = range(len(members))
  flops = [m["flops"] / 1e9 for m in members]
  ax1.bar(xs, flops, color="tab:blue", label="FLOPs of the member (× baseline under its name)")
  base = members[0]["flops"] / members[0]["flops_ratio"]
  ax1.plot(xs, [base * 2 ** m["phi"] / 1e9 for m in members], "k--o", ms=4,
           label="baseline FLOPs · 2^φ")
  ax1.set_yscale("log")
  ax1.yaxis.set_major_formatter(plain)
  ax1.set_xticks(list(xs), [f"{n[len(prefix):]}\n×{m['flops_ratio']:.2f}"
                           for n, m in zip(names, members)], fontsize=8)
  ax1.set_xlabel(f"Family member ({prefix}…)" if prefix else "Family member")
  ax1.set_ylabel("FLOPs (billions of multiply-adds, log scale)")
  ax1.set_title(f"{family['family']} family of {family['baseline']['name']}: FLOPs")
  ax1.grid(alpha=0.3, axis="y")
  ax1.legend(loc="upper left")
  measured = [m for m in members if m.get("accuracy") is not None]
  if measured:
    ax2.plot([m["flops"] / 1e9 for m in measured], [100 * m["accuracy"] for m in measured], "-o",
             color="tab:red")
    for m in measured:
      ax2.annotate(m["name"], (m["flops"] / 1e9, 100 * m["accuracy"]), textcoords="offset points",
                   xytext=(0, 6), ha="center", fontsize=8)
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(plain)
    ax2.xaxis.set_minor_formatter(plain)
    ax2.margins(x=0.2, y=0.15)  # room for the member labels
  else:
    ax2.text(0.5, 0.5, "no member has a metrics.json yet\n(train each member with "
             "`launch.py train --out=FAMILY_DIR/NAME`)", ha="center", va="center",
             transform=ax2.transAxes)
    ax2.set_xticks([])
    ax2.set_yticks([])
  ax2.set_xlabel("FLOPs (billions of multiply-adds, log scale)")
  ax2.set_ylabel("Accuracy (%)")
  ax2.set_title("Accuracy per member (from metrics.json)")
  ax2.grid(alpha=0.3)
  return figures.save_figure(plt, fig, path)


# ----------------------------------------------------------------------------- summary
def _fmt(v: Any, spec: str) -> str:
  return "-" if v is None else format(v, spec)


def _best_vs_references(best: dict[str, Any] | None,
                        references: dict[str, dict[str, Any]]) -> list[str]:
  """The summary's section comparing the best trial with the reference networks."""
  lines = ["## Best trial vs. references (same proxy task)", ""]
  if best is None:
    lines += ["No successful trial yet.", ""]
  else:
    rows = [("best", best)] + [(n, references[n]) for n in REFERENCE_NAMES if n in references]
    rows += [(n, r) for n, r in references.items() if n not in REFERENCE_NAMES]
    lines += ["| | trial | FLOPs | params | accuracy | reward | best's FLOPs ÷ these | "
              "best's accuracy − this |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
      trial = r["trial"] if r is best else None  # references carry a placeholder trial number
      if r is not best and not usable_reference(r):
        name, r = f"{name} ({r.get('status', 'no accuracy')})", {**r, "accuracy": None,
                                                                  "reward": None}
      ratio = best["flops"] / r["flops"] if r.get("flops") else None
      delta = best["accuracy"] - r["accuracy"] if r.get("accuracy") is not None else None
      lines.append(f"| {name} | {_fmt(trial, 'd')} | {_fmt(r.get('flops'), ',')} | "
                   f"{_fmt(r.get('params'), ',')} | {_fmt(r.get('accuracy'), '.4f')} | "
                   f"{_fmt(r.get('reward'), '.4f')} | {_fmt(ratio, '.3f')} | "
                   f"{_fmt(delta, '+.4f')} |")
    lines += ["", f"Best blocks (trial {best['trial']}):", ""]
    lines += [f"    {b}" for b in best.get("blocks") or best["arch"]["blocks"]]
    lines.append("")
  return lines


def child_time_split(records: Sequence[dict[str, Any]]) -> tuple[float, float]:
  """(fixed, steady) seconds summed over the trained children that recorded the split."""
  timed = [r for r in records if r.get("status") != "cached" and "fixed_seconds" in r]
  return (sum(r["fixed_seconds"] for r in timed), sum(r["steady_seconds"] for r in timed))


@dataclasses.dataclass(frozen=True)
class SearchRun:
  """What a report reads of a search directory (and of a scaled family, when given)."""

  directory: str
  records: Sequence[dict[str, Any]]
  params: dict[str, Any]
  references: dict[str, dict[str, Any]]
  updates: Sequence[dict[str, Any]]
  family: dict[str, Any] | None = None
  rung_records: Sequence[dict[str, Any]] = ()  # every record of a multi-fidelity search

  @property
  def front(self) -> list[dict[str, Any]]:
    """The Pareto front of the children that reached the highest budget (all, without rungs)."""
    top = max((records_lib.budget_of(r) for r in self.records), default=0)
    return pareto.pareto_front([r for r in self.records if records_lib.budget_of(r) == top])

  @classmethod
  def read(cls, search_dir: str, family_dir: str | None = None) -> "SearchRun":
    family = None
    if family_dir is not None:
      from mnas_search.scaling import family as family_lib
      family = family_lib.read_family(family_dir)
    every = records_lib.read_trials(search_dir, rungs=True)
    return cls(search_dir, records_lib.final_records(every), read_params(search_dir),
               records_lib.read_references(search_dir), records_lib.read_updates(search_dir), family,
               every if any("budget" in r for r in every) else ())


def summary_markdown(run: SearchRun, plots: Sequence[str]) -> str:
  """The Markdown summary: counts, the best trial against the references, the Pareto front."""
  search_dir, records, front, params, references, updates, family = (
      run.directory, run.records, run.front, run.params, run.references, run.updates, run.family)
  counts = status_counts(records)
  lines = [f"# Search report: `{os.path.abspath(search_dir)}`", ""]
  cost, target = search_target(params)
  if target is not None:
    w = params.get("w")
    shown = f"{int(target):,}" if float(target).is_integer() else f"{target:g}"
    lines += [f"Target T: {shown} {COST_TARGETS[cost][1]} (cost: {cost}); reward "
              f"`{params.get('reward', '?')}`, w = {'the default' if w is None else w}.", ""]
  lines += ["## Trials", "", "| trials | ok | failed | timeout | cached |",
            "|---:|---:|---:|---:|---:|",
            f"| {len(records)} | {counts['ok']} | {counts['failed']} | {counts['timeout']} | "
            f"{counts['cached']} |", ""]
  if updates:
    last = updates[-1]
    lines += [f"Controller updates: {len(updates)} (last: update {last['update']}, entropy "
              f"{_fmt(last.get('entropy'), '.4f')}, mean reward "
              f"{_fmt(last.get('mean_reward'), '.4f')}).", ""]
  else:
    lines += ["Controller updates: none recorded (no updates.jsonl).", ""]
  fixed, steady = child_time_split(records)
  if fixed + steady > 0:
    lines += [f"Child time: {fixed:.1f} s fixed (build, tracing, evaluation, clean-up) + "
              f"{steady:.1f} s of steady training steps; fixed fraction "
              f"{fixed / (fixed + steady):.3f}.", ""]
  if run.rung_records:
    lines += rung_lines(run.rung_records)
  lines += _best_vs_references(records_lib.best_by_reward(records), references)
  objectives = ", ".join(f"{k} {'↑' if d == 'max' else '↓'}"
                         for k, d in pareto.default_objectives(records))
  lines += [f"## Pareto front ({objectives}; {len(front)} of "
            f"{len(pareto.eligible(records))} successful trials)", "",
            "| trial | status | FLOPs | params | accuracy | reward |",
            "|---:|---|---:|---:|---:|---:|"]
  for r in front:
    lines.append(f"| {r['trial']} | {r['status']} | {r['flops']:,} | {r['params']:,} | "
                 f"{r['accuracy']:.4f} | {r['reward']:.4f} |")
  lines.append("")
  if family is not None:
    lines += [f"## Family: {family['family']} scaling of {family['baseline']['name']}", "",
              "| member | φ | FLOPs | FLOPs ratio | 2^φ | accuracy |", "|---|---:|---:|---:|---:|---:|"]
    for m in family["members"]:
      lines.append(f"| {m['name']} | {m['phi']:g} | {m['flops']:,} | {m['flops_ratio']:.3f} | "
                   f"{2 ** m['phi']:.3f} | {_fmt(m.get('accuracy'), '.4f')} |")
    lines.append("")
  lines += ["## Plots", ""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots] + [""]
  return "\n".join(lines)


def write_report(search_dir: str, out_dir: str | None = None,
                 family_dir: str | None = None) -> dict[str, str]:
  """Writes the PNG plots and summary.md of a search.

  Args:
    search_dir: the search directory.
    out_dir: where to write; search_dir/report when None.
    family_dir: a folder written by `launch.py scale`, plotted too when given.

  Returns:
    What was written: {"reward": path, "accuracy_flops": path, "controller": path (when
    updates.jsonl has records), "rungs": path (a multi-fidelity search), "oneshot": path (a one-shot search: its oneshot.jsonl has
    records), "family": path (with family_dir), "summary": path}.
  """
  out_dir = out_dir or os.path.join(search_dir, "report")
  run = SearchRun.read(search_dir, family_dir)
  records, params, references, updates, family = (run.records, run.params, run.references,
                                                  run.updates, run.family)
  cost, target = search_target(params)
  front = run.front
  written = {"reward": plot_reward(records, os.path.join(out_dir, "reward.png"),
                                   str(params.get("reward", ""))),
             "accuracy_flops": plot_accuracy_flops(records, front,
                                                   os.path.join(out_dir, "accuracy_flops.png"),
                                                   target if cost == "flops" else None,
                                                   references, params.get("cost_resolution"))}
  if updates:
    written["controller"] = plot_controller(updates, os.path.join(out_dir, "controller.png"))
  if run.rung_records:
    written["rungs"] = plot_rungs(run.rung_records, os.path.join(out_dir, "rungs.png"))
  oneshot_png = write_oneshot_plot(search_dir, out_dir)
  if oneshot_png is not None:
    written["oneshot"] = oneshot_png
  if family is not None:
    written["family"] = plot_family(family, os.path.join(out_dir, "family.png"))
  text = summary_markdown(run, [os.path.basename(p) for p in written.values()])
  written["summary"] = os.path.join(out_dir, "summary.md")
  fileio.atomic_write_text(written["summary"], text)
  return written
