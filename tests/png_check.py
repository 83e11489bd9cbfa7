"""Reads a PNG back and measures what was drawn on it; shared by the plot tests."""

import numpy as np


def colored_pixels(path: str) -> int:
  """How many pixels are clearly coloured (not white, grey or black): the plotted data.

  Axes, ticks, grid lines and text are drawn in greys, so a figure with axes but no data has
  none; one 6-point marker in matplotlib's colour cycle is about 30.
  """
  import matplotlib.image
  rgb = np.asarray(matplotlib.image.imread(path), np.float64)[..., :3]
  assert rgb.std() > 0.05, f"{path} is blank (pixel std {rgb.std():.4f})"
  saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
  return int((saturation > 0.25).sum())
