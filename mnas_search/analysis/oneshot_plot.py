"""oneshot.png: each decision's option probabilities over the controller steps of a one-shot search."""

from __future__ import annotations

import os
from typing import Any, Sequence

from mnas_search.util import figures, fileio


def read_oneshot_log(search_dir: str) -> list[dict[str, Any]]:
  """The records of search_dir/oneshot.jsonl; [] when the file is absent (a multi-trial search)."""
  return fileio.read_jsonl(os.path.join(search_dir, "oneshot.jsonl"))


def plot_oneshot(records: Sequence[dict[str, Any]], path: str,
                 decision_names: Sequence[str] | None = None) -> str:
  """Draws one small panel per decision: each option's probability against the controller step.

  Args:
    records: oneshot.jsonl records (each with controller_step and probabilities).
    path: the PNG to write.
    decision_names: panel titles (e.g. `space.decisions` names); "decision N" when None.

  Returns:
    `path`.

  Raises:
    ValueError: no records, or records of different shapes.
  """
  if not records:
    raise ValueError("plot_oneshot needs at least one oneshot.jsonl record; got none")
  shape = [len(p) for p in records[0]["probabilities"]]
  for r in records:
    if [len(p) for p in r["probabilities"]] != shape:
      raise ValueError(f"oneshot.jsonl record of controller step {r.get('controller_step')} has "
                       f"probabilities of shape {[len(p) for p in r['probabilities']]}; expected {shape}")
  n = len(shape)
  ncols = 6 if n % 6 == 0 else min(n, 6)
  nrows = (n + ncols - 1) // ncols
  plt, fig, axes = figures.figure((2.2 * ncols, 1.6 * nrows + 0.6), ncols, nrows, sharex=True,
                                  sharey=True, squeeze=False)
  xs = [r["controller_step"] for r in records]
  for d in range(nrows * ncols):
    ax = axes[d // ncols][d % ncols]
    if d >= n:
      ax.axis("off")
      continue
    for o in range(shape[d]):
      ax.plot(xs, [r["probabilities"][d][o] for r in records], lw=1, label=str(o))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(decision_names[d] if decision_names else f"decision {d}", fontsize=7)
    ax.tick_params(labelsize=6)
  fig.suptitle(f"Decision probabilities over {len(records)} controller steps (lines: option index)",
               fontsize=9)
  return figures.save_figure(plt, fig, path)


def write_oneshot_plot(search_dir: str, out_dir: str | None = None) -> str | None:
  """oneshot.png for a search directory (the decision names from its params.json's space).

  Returns:
    The PNG's path, or None when the directory has no oneshot.jsonl records.
  """
  records = read_oneshot_log(search_dir)
  if not records:
    return None
  names = None
  params_path = os.path.join(search_dir, "params.json")
  if os.path.isfile(params_path):
    import search_space
    space_name = fileio.read_json(params_path).get("space")
    if space_name in search_space.SPACES:
      names = [d.name for d in search_space.get_space(space_name).decisions]
  return plot_oneshot(records, os.path.join(out_dir or search_dir, "oneshot.png"), names)
