"""Figures of a fixed geometry: every PNG has a known pixel size, (width, height) = inches x DPI."""

from __future__ import annotations

import os

DPI = 100
FIGSIZE = (9.0, 5.5)
FAMILY_FIGSIZE = (12.0, 5.0)


def figure(figsize=FIGSIZE, ncols: int = 1, nrows: int = 1, **subplots):
  """(pyplot, figure, axes) of the given geometry, on the Agg backend; save with `save_figure`.

  Extra keyword arguments go to `plt.subplots` (e.g. sharex, squeeze).
  """
  import matplotlib
  matplotlib.use("Agg")  # no display: figures are only written to files
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(nrows, ncols, figsize=figsize, dpi=DPI, **subplots)
  return plt, fig, axes


def save_figure(plt, fig, path: str) -> str:
  """Writes `fig` as a PNG of exactly figsize x DPI pixels, closes it and returns `path`."""
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": it would change the pixel size
  plt.close(fig)
  return path
